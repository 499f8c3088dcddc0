"""docker/k8s/: the Kubernetes manifests, checked against the settings without a cluster.

No test here talks to Kubernetes or KEDA (CI has neither): the YAML is parsed and every
value that must agree with tympan's code is compared with it. The worker's environment
is handed to ``WorkerSettings.from_environ`` as the pod would see it, so a renamed or
misspelt ``TYMPAN_*`` variable, or a value the worker refuses, fails here; the KEDA
trigger must name the group and topic that settings derive from that environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.cli import build_parser
from stream.kafka.topics import Topics
from stream.settings import WorkerSettings
from stream.settings.specs import specs
from stream.worker.supervisor import SupervisorPolicy

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "docker" / "k8s"
KAFKA_ENV = {
    "TYMPAN_BROKER",
    "TYMPAN_KAFKA_SECURITY_PROTOCOL",
    "TYMPAN_KAFKA_SASL_MECHANISM",
    "TYMPAN_KAFKA_SASL_USERNAME",
    "TYMPAN_KAFKA_SASL_PASSWORD",
    "TYMPAN_KAFKA_SSL_CAFILE",
    "TYMPAN_KAFKA_SSL_CERTFILE",
    "TYMPAN_KAFKA_SSL_KEYFILE",
    "TYMPAN_KAFKA_CLIENT_ID",
}
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def kafka_env_names() -> set[str]:
    """The ``TYMPAN_*`` names ``stream.kafka.config`` reads, from its ``ENV_*`` constants."""
    from stream.kafka import config

    return {v for k, v in vars(config).items() if k.startswith("ENV_") and isinstance(v, str)}


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    """Every manifest in docker/k8s by ``<kind>/<name>``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] != "Kustomization":
                key = f"{document['kind']}/{document['metadata']['name']}"
                assert key not in out, f"{path.name}: {key} twice"
                out[key] = document
    return out


@pytest.fixture(scope="module")
def container(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [worker] = documents["Deployment/tympan-worker"]["spec"]["template"]["spec"]["containers"]
    return dict(worker)


@pytest.fixture(scope="module")
def pod_env(documents: dict[str, dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The worker's environment as the pod gets it; a value from a Secret or the
    downward API becomes a stand-in (``from-<source>``)."""
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(documents[f"ConfigMap/{source['configMapRef']['name']}"]["data"])
    for item in container["env"]:
        source = next(iter(item["valueFrom"])) if "valueFrom" in item else None
        env[item["name"]] = item["value"] if source is None else f"from-{source}"
    return env


@pytest.fixture(scope="module")
def settings(pod_env: dict[str, str]) -> WorkerSettings:
    return WorkerSettings.from_environ(pod_env)


@pytest.fixture(scope="module")
def trigger(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [kafka] = documents["ScaledObject/tympan-worker"]["spec"]["triggers"]
    assert kafka["type"] == "kafka"
    return dict(kafka)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert "namespace" not in kustomization, "namespace-agnostic: -n at apply time"


def test_manifests_name_no_namespace(documents: dict[str, dict[str, Any]]) -> None:
    for key, document in documents.items():
        assert "namespace" not in document["metadata"], key


def test_every_tympan_variable_is_a_setting(pod_env: dict[str, str]) -> None:
    known = {spec.env for spec in specs(WorkerSettings)} | kafka_env_names()
    used = {name for name in pod_env if name.startswith("TYMPAN_")}
    assert used - KAFKA_ENV <= {spec.env for spec in specs(WorkerSettings)}
    assert used <= known, f"not read by the worker: {sorted(used - known)}"


def test_the_worker_accepts_the_environment(settings: WorkerSettings) -> None:
    assert settings.processes == 1, "one process per pod: Kubernetes is the supervisor"
    assert settings.web_host == "0.0.0.0", "probes and Prometheus reach the pod's IP"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_username == "from-secretKeyRef"


def test_the_command_exists_and_creates_no_topics(container: dict[str, Any]) -> None:
    args = build_parser().parse_args(container["args"])
    assert args.command == "worker"
    assert not args.create_topics, "topics are created by an admin, not by the workers"


def test_probes_and_metrics_are_on_the_web_port(
    documents: dict[str, dict[str, Any]], container: dict[str, Any], settings: WorkerSettings
) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.web_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/metrics", probe
        assert ports.get(check["port"], check["port"]) == settings.web_port, probe
    annotations = documents["Deployment/tympan-worker"]["spec"]["template"]["metadata"]
    assert annotations["annotations"]["prometheus.io/port"] == str(settings.web_port)


def test_the_grace_period_outlasts_the_stop_timeout(documents: dict[str, dict[str, Any]]) -> None:
    pod = documents["Deployment/tympan-worker"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > SupervisorPolicy().stop_timeout_s


def test_runs_as_non_root_on_a_read_only_root(
    documents: dict[str, dict[str, Any]],
    container: dict[str, Any],
    pod_env: dict[str, str],
    settings: WorkerSettings,
) -> None:
    pod = documents["Deployment/tympan-worker"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[str(settings.data_dir)]], "the data dir is writable"
    numba = Path(pod_env["NUMBA_CACHE_DIR"])
    assert any(numba.is_relative_to(m) for m in mounts if "emptyDir" in volumes[mounts[m]]), (
        "librosa imports only where numba can write its cache"
    )
    cafile = Path(str(settings.kafka.ssl_cafile))
    assert "secret" in volumes[mounts[str(cafile.parent)]]


def test_keda_scales_the_group_the_workers_join(
    documents: dict[str, dict[str, Any]], trigger: dict[str, Any], settings: WorkerSettings
) -> None:
    scaled = documents["ScaledObject/tympan-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "tympan-worker"
    assert trigger["metadata"]["consumerGroup"] == settings.group_id
    assert trigger["metadata"]["topic"] == Topics().with_prefix(settings.topic_prefix).audio
    assert trigger["metadata"]["bootstrapServers"] == settings.kafka.bootstrap_servers


def test_keda_stops_at_one_worker_per_audio_partition(
    documents: dict[str, dict[str, Any]],
) -> None:
    scaled = documents["ScaledObject/tympan-worker"]["spec"]
    assert scaled["maxReplicaCount"] == Topics().audio_partitions
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


def test_keda_authenticates_as_the_worker(
    documents: dict[str, dict[str, Any]], container: dict[str, Any], trigger: dict[str, Any]
) -> None:
    auth = documents[f"TriggerAuthentication/{trigger['authenticationRef']['name']}"]
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    secrets = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    for parameter, env in (
        ("username", "TYMPAN_KAFKA_SASL_USERNAME"),
        ("password", "TYMPAN_KAFKA_SASL_PASSWORD"),
    ):
        assert (refs[parameter]["name"], refs[parameter]["key"]) == (
            secrets[env]["name"],
            secrets[env]["key"],
        ), parameter
    assert {"sasl", "tls", "ca"} <= set(refs), "SASL_SSL needs the mechanism, TLS and the CA"


def test_the_secret_command_in_the_manifest_matches_the_settings(
    settings: WorkerSettings,
) -> None:
    """worker.yaml's ``kubectl create secret`` gives KEDA the worker's mechanism."""
    text = (K8S / "worker.yaml").read_text()
    assert f"--from-literal=sasl={KEDA_SASL[settings.kafka.sasl_mechanism]}" in text
    assert "--from-literal=tls=enable" in text
    assert "--from-file=ca.pem=" in text


def test_the_topic_table_in_the_docs_is_topics_specs() -> None:
    """docs/kubernetes.md tells a platform team which topics to create: exactly
    ``Topics.specs()`` on a three-broker cluster, configs included."""
    rows = {}
    for line in (REPO / "docs" / "kubernetes.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`tympan."):
            configs = re.findall(r"`([a-z.]+=[^`]+)`", cells[2])
            rows[cells[0].strip("`")] = (int(cells[1]), dict(c.split("=", 1) for c in configs))
    expected = {
        spec.name: (spec.partitions, dict(spec.configs)) for spec in Topics().for_cluster(3).specs()
    }
    assert rows == expected


def test_string_maps_hold_strings(
    documents: dict[str, dict[str, Any]], trigger: dict[str, Any]
) -> None:
    """A ConfigMap's data and a KEDA trigger's metadata are string maps: the API server
    refuses an unquoted number (``TYMPAN_PROCESSES: 1``) there."""
    data = documents["ConfigMap/tympan-worker"]["data"]
    assert all(isinstance(v, str) for v in data.values()), data
    assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger["metadata"]
    assert int(trigger["metadata"]["lagThreshold"]) > 0
