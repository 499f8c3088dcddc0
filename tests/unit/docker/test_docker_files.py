"""docker/: the images and the compose file, checked without a Docker engine.

CI machines have no Docker daemon, so the images are not built here; instead each
Dockerfile is parsed instruction by instruction and compose.yml as YAML, and every
promise the deployment docs make is checked against the real code: the commands and
flags exist in the real ``tympan`` parser, every ``TYMPAN_*`` variable is one the code
reads, the Kafka image is the version the dev broker runs (scripts/kafka/pom.xml), the
GPU image can only hold ``onnxruntime-gpu``, no image holds the training stack.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.cli import build_parser
from stream.kafka.topics import Topics

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
COMPOSE = DOCKER / "compose.yml"
TRAINING = {"tensorflow", "tf2onnx", "keras", "tensorflow-cpu", "tensorflow-gpu"}
ONE_SHOT = {"topics", "producer"}  # services that run to completion


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of ``CMD ["a", "b"]``-style instructions, else ``None``."""
        if not self.args.startswith("["):
            return None
        return list(json.loads(self.args))


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    assert not pending, f"{path}: ends inside a continued line"
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def pip_requirements(instructions: list[Instruction]) -> list[str]:
    """Every requirement named by ``pip install`` / ``pip wheel`` in RUN instructions,
    with ``.[extra]`` / ``tympan[extra]`` expanded through pyproject.toml."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    out: list[str] = []
    for instruction in instructions:
        if instruction.keyword != "RUN":
            continue
        for words in _commands(instruction.args):
            if len(words) < 2 or Path(words[0]).name not in {"pip", "pip3"}:
                continue
            if words[1] not in {"install", "wheel"}:
                continue
            for word in _operands(words[2:]):
                name, _, extra_list = word.partition("[")
                out.append(name)
                for extra in extra_list.rstrip("]").split(","):
                    if extra:
                        assert extra in extras, f"unknown extra [{extra}] in {shlex.join(words)}"
                        out.append(f"[{extra}]")
                        out.extend(extras[extra])
    return out


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a shell line, split at ``&&``, ``||``, ``;`` and ``|``
    outside quotes."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|"}:
            out.append([])
        else:
            out[-1].append(token)
    return [words for words in out if words]


def _operands(words: list[str]) -> list[str]:
    takes_value = {"--wheel-dir", "-w", "--find-links", "-f", "--index-url", "-i", "-r"}
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in takes_value:
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


def distribution(requirement: str) -> str:
    return re.split(r"[<>=!~ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def tympan_argv(instructions: list[Instruction]) -> list[str]:
    stage = final_stage(instructions)
    entrypoint = next(i for i in reversed(stage) if i.keyword == "ENTRYPOINT").exec_form()
    cmd = next(i for i in reversed(stage) if i.keyword == "CMD").exec_form()
    assert entrypoint == ["tympan"], entrypoint
    assert cmd is not None
    return cmd


def parses(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`tympan {shlex.join(argv)}` is refused by the CLI") from exc


def known_env_vars() -> set[str]:
    """``TYMPAN_*`` names the code reads: the worker settings (derived from their
    declarations), the Kafka client and the CLI modules (written out)."""
    from stream.settings import WorkerSettings
    from stream.settings.specs import specs

    sources = [
        *(REPO / "stream" / "settings").glob("*.py"),
        REPO / "stream" / "kafka" / "config.py",
    ]
    sources += sorted((REPO / "stream" / "cli").glob("*.py"))
    found = {spec.env for spec in specs(WorkerSettings)}
    for source in sources:
        found |= set(re.findall(r"[\"'](TYMPAN_[A-Z0-9_]+)[\"']", source.read_text()))
    return found


def env_of_dockerfile(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module", params=DOCKERFILES)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    return request.param, parse_dockerfile(DOCKER / request.param)


# -- the Dockerfiles ----------------------------------------------------------------------


def test_images_run_as_a_non_root_user(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    users = [i.args for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, f"{name}: no USER in the final stage (runs as root)"
    assert users[-1].split(":")[0] not in {"root", "0"}, f"{name}: USER {users[-1]}"


def test_images_hold_no_training_stack(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    requirements = pip_requirements(instructions)
    assert requirements, f"{name}: installs nothing with pip?"
    assert "[train]" not in requirements and "[dev]" not in requirements, name
    assert not {distribution(r) for r in requirements} & TRAINING, name


def test_cpu_image_installs_the_cpu_onnxruntime_only() -> None:
    names = {distribution(r) for r in pip_requirements(parse_dockerfile(DOCKER / "Dockerfile"))}
    assert "onnxruntime" in names
    assert "onnxruntime-gpu" not in names


def test_gpu_image_installs_onnxruntime_gpu_and_never_onnxruntime() -> None:
    instructions = parse_dockerfile(DOCKER / "Dockerfile.gpu")
    names = {distribution(r) for r in pip_requirements(instructions)}
    assert "onnxruntime-gpu" in names
    assert "onnxruntime" not in names
    base = next(i.args for i in instructions if i.keyword == "FROM")
    assert base.startswith("nvidia/cuda:") and "runtime" in base, base
    assert parses(tympan_argv(instructions)).device == "cuda"


def test_images_have_a_healthcheck(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    checks = [i for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    assert checks and checks[-1].args != "NONE", f"{name}: no HEALTHCHECK"


def test_image_commands_exist_in_the_cli(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    assert parses(tympan_argv(instructions)).command == "worker"


def test_image_env_vars_are_read_by_the_code(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    used = {k for k in env_of_dockerfile(instructions) if k.startswith("TYMPAN_")}
    assert used, name
    assert used <= known_env_vars(), f"{name}: unknown {sorted(used - known_env_vars())}"


def test_build_context_is_kept_to_the_sources(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    lines = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", f"{name}.dockerignore: ignore everything, then list what to keep"
    for instruction in instructions:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            *sources, _ = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"
                top = source.split("/")[0]
                assert f"!{top}" in ignore, f"{name}: COPY {source} but {top} is ignored"


# -- compose.yml --------------------------------------------------------------------------


def test_compose_has_the_services(compose: dict[str, Any]) -> None:
    assert {"kafka", "topics", "worker", "dashboard", "producer"} <= set(compose["services"])


def test_kafka_is_the_official_image_in_kraft_mode_at_the_dev_version(
    compose: dict[str, Any],
) -> None:
    pom = ET.parse(REPO / "scripts" / "kafka" / "pom.xml").getroot()
    version = pom.findtext("{*}properties/{*}kafka.version")
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{version}"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_LOG_DIRS"] in [v.split(":")[1] for v in kafka["volumes"]]


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    images = {"tympan:cpu": "Dockerfile", "tympan:gpu": "Dockerfile.gpu"}
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        if check is None:
            dockerfile = parse_dockerfile(DOCKER / images[service["image"]])
            assert any(i.keyword == "HEALTHCHECK" for i in final_stage(dockerfile)), name
        else:
            assert not check.get("disable") and check["test"], name


def test_depends_on_waits_for_what_it_can(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for other, rule in (service.get("depends_on") or {}).items():
            assert other in services, f"{name} depends on unknown {other}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}'s health"
            if rule["condition"] == "service_completed_successfully":
                assert other in ONE_SHOT, f"{name} waits for {other} to exit"


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_workers_scale(compose: dict[str, Any], name: str) -> None:
    worker = compose["services"][name]
    assert "container_name" not in worker and "hostname" not in worker
    assert not worker.get("ports"), "a fixed host port allows one replica only"
    env = worker["environment"]
    assert env["TYMPAN_APP_ID"], "replicas share one consumer group"
    assert env["TYMPAN_WEB_HOST"] == "0.0.0.0"
    mounts = {v.split(":")[1]: v for v in worker["volumes"]}
    assert env["TYMPAN_MODEL_REPO"] in mounts, "the model repository is a volume"
    assert mounts[env["TYMPAN_MODEL_REPO"]].endswith(":ro")


def test_gpu_and_cpu_workers_share_the_consumer_group(compose: dict[str, Any]) -> None:
    cpu, gpu = compose["services"]["worker"], compose["services"]["worker-gpu"]
    assert cpu["environment"]["TYMPAN_APP_ID"] == gpu["environment"]["TYMPAN_APP_ID"]
    assert gpu["profiles"] == ["gpu"]


def test_dashboard_is_published_on_localhost_only(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["dashboard"]
    args = parses(dashboard["command"])
    assert dashboard["ports"] == [f"127.0.0.1:{args.port}:{args.port}"]
    assert str(args.port) in json.dumps(dashboard["healthcheck"]["test"])


def test_compose_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if str(service.get("image", "")).startswith("tympan:"):
            assert isinstance(service["command"], list), f"{name}: use the exec (list) form"
            assert parses(service["command"]).command == service["command"][0], name


def test_compose_env_vars_are_read_by_the_code(compose: dict[str, Any]) -> None:
    used: set[str] = set()
    for service in compose["services"].values():
        used |= {k for k in service.get("environment") or {} if k.startswith("TYMPAN_")}
    assert used <= known_env_vars(), sorted(used - known_env_vars())


def test_topic_names_agree_with_the_prefix(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prefix = services["worker"]["environment"]["TYMPAN_TOPIC_PREFIX"]
    topics = Topics().with_prefix(prefix)
    create = parses(services["topics"]["command"])
    assert create.prefix == prefix
    assert parses(services["producer"]["command"]).topic == topics.audio
    for name in ("dashboard", "worker-gpu"):
        assert services[name]["environment"]["TYMPAN_TOPIC_PREFIX"] == prefix


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """Debian's docker-compose (v1) validates the file offline; it predates the
    top-level ``name`` key, so that one key is removed for it."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (Debian package docker-compose) is not installed")
    document = yaml.safe_load(COMPOSE.read_text())
    document.pop("name", None)
    copy = tmp_path / "compose.yml"
    copy.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        ["docker-compose", "--project-directory", str(DOCKER), "-f", str(copy), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
