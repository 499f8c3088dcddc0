"""Topic names, partition counts and configs; KafkaClientConfig validation and rendering."""

from __future__ import annotations

import io
import ssl
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from stream.cli.topics import confirm_delete
from stream.errors import ConfigError
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topic_audit import TopicInfo, advise
from stream.kafka.topics import Topics, prefixed


def test_default_names_are_versioned_under_tympan() -> None:
    topics = Topics()

    assert topics.names() == (
        "tympan.audio.v1",
        "tympan.labels.v1",
        "tympan.speakers.v1",
        "tympan.summaries.v1",
        "tympan.rejected.v1",
        "tympan.control.v1",
        "tympan.control-status.v1",
        "tympan.speaker-registry.v1",
        "tympan.progress.v1",
    )
    assert topics.audio == "tympan.audio.v1"
    assert topics.speaker_registry == "tympan.speaker-registry.v1"


def test_with_prefix_renames_every_topic_and_keeps_the_layout() -> None:
    base = Topics(audio_partitions=4)
    test = base.with_prefix("test-abc")

    assert all(name.startswith("test-abc.") for name in test.names())
    assert [s.partitions for s in test.specs()] == [s.partitions for s in base.specs()]
    assert base.prefix == "tympan"


def test_topics_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        Topics().prefix = "other"  # type: ignore[misc]


def test_audio_has_eight_partitions_and_bounded_retention() -> None:
    audio = Topics().for_cluster(1).spec("tympan.audio.v1")

    assert audio.partitions == 8
    assert audio.configs["cleanup.policy"] == "delete"
    assert int(audio.configs["retention.ms"]) == Topics().audio_retention_ms
    assert not audio.compacted
    # idle streams close by the records' Kafka time: the broker's, not a producer's
    assert audio.configs["message.timestamp.type"] == "LogAppendTime"
    assert audio.new_topic().topic_configs["message.timestamp.type"] == "LogAppendTime"


def test_control_registry_and_progress_are_compacted_and_nothing_else() -> None:
    topics = Topics()
    compacted = {spec.name for spec in topics.specs() if spec.compacted}

    assert compacted == {
        topics.control,
        topics.control_status,
        topics.speaker_registry,
        topics.progress,
    }


def test_progress_has_a_partition_per_audio_partition() -> None:
    # exactly-once: audio partition p's transaction writes progress partition p
    topics = Topics(audio_partitions=5)

    assert topics.spec(topics.progress).partitions == 5


def test_only_an_exactly_once_worker_uses_the_progress_topic() -> None:
    topics = Topics().with_prefix("p")

    plain = topics.for_worker(transactional=False)
    transactional = topics.for_worker(transactional=True)

    assert transactional == topics.names()
    assert plain == tuple(n for n in topics.names() if n != "p.progress.v1")


def test_specs_carry_the_replication_factor() -> None:
    assert {s.replication_factor for s in Topics(replication_factor=3).specs()} == {3}


def test_new_topic_renders_for_the_admin_client() -> None:
    spec = Topics().for_cluster(1).spec("tympan.control.v1")
    new = spec.new_topic()

    assert (new.name, new.num_partitions, new.replication_factor) == (spec.name, 1, 1)
    assert new.topic_configs == {"cleanup.policy": "compact"}


@pytest.mark.parametrize("prefix", ["", "has space", "slash/y", "x" * 240])
def test_illegal_prefix_is_a_config_error_naming_it(prefix: str) -> None:
    with pytest.raises(ConfigError, match="topic prefix"):
        Topics(prefix=prefix)


@pytest.mark.parametrize(
    ("field", "value"),
    [("audio_partitions", 0), ("result_partitions", -1), ("replication_factor", 0)],
)
def test_counts_below_one_are_config_errors(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"{field} must be at least 1, got {value}"):
        replace(Topics(), **{field: value})


def test_unknown_topic_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'tympan\.nope\.v1' is not one of"):
        Topics().spec("tympan.nope.v1")


# --- KafkaClientConfig ------------------------------------------------------------


def test_plaintext_kwargs_have_no_credentials() -> None:
    kwargs = KafkaClientConfig(bootstrap_servers="a:9092, b:9093").aiokafka_kwargs()

    assert kwargs == {
        "bootstrap_servers": ["a:9092", "b:9093"],
        "client_id": "tympan",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_plaintext_kwargs_use_aiokafkas_names() -> None:
    config = KafkaClientConfig(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password="s3cret",
    )
    kwargs = config.aiokafka_kwargs()

    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "alice"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert "ssl_context" not in kwargs


def test_password_is_not_in_repr() -> None:
    config = KafkaClientConfig(
        security_protocol="SASL_PLAINTEXT", sasl_username="alice", sasl_password="s3cret"
    )

    assert "s3cret" not in repr(config)


def test_ssl_kwargs_carry_a_verifying_context() -> None:
    kwargs = KafkaClientConfig(security_protocol="SSL").aiokafka_kwargs()

    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_sasl_without_username_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SASL_SSL needs sasl_username"):
        KafkaClientConfig(security_protocol="SASL_SSL", sasl_password="x")


def test_sasl_without_password_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs sasl_password for user 'bob'"):
        KafkaClientConfig(security_protocol="SASL_PLAINTEXT", sasl_username="bob")


def test_credentials_without_sasl_protocol_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="security_protocol is PLAINTEXT"):
        KafkaClientConfig(sasl_username="bob", sasl_password="x")


def test_tls_files_without_tls_protocol_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ssl_cafile given but security_protocol is PLAINTEXT"):
        KafkaClientConfig(ssl_cafile="/etc/ca.pem")


def test_keyfile_without_certfile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ssl_keyfile '/k\.pem' given without ssl_certfile"):
        KafkaClientConfig(security_protocol="SSL", ssl_keyfile="/k.pem")


def test_missing_cafile_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    config = KafkaClientConfig(security_protocol="SSL", ssl_cafile=str(missing))

    with pytest.raises(ConfigError, match=f"ssl_cafile '{missing}' does not exist"):
        config.ssl_context()


@pytest.mark.parametrize("value", ["KERBEROS", "plaintext"])
def test_unknown_security_protocol_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=f"security_protocol '{value}' is not one of"):
        KafkaClientConfig(security_protocol=value)  # type: ignore[arg-type]


def test_unknown_sasl_mechanism_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sasl_mechanism 'GSSAPI' is not one of"):
        KafkaClientConfig(sasl_mechanism="GSSAPI")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bootstrap", ["", " , ", "localhost", "host:notaport", "host:0", "host:70000", "kafka://h:9092"]
)
def test_bad_bootstrap_is_a_config_error(bootstrap: str) -> None:
    with pytest.raises(ConfigError, match="bootstrap"):
        KafkaClientConfig(bootstrap_servers=bootstrap)


def test_faust_settings_plaintext() -> None:
    settings = KafkaClientConfig(bootstrap_servers="h1:9092,h2:9093").faust_settings()

    assert settings == {"broker": "kafka://h1:9092;kafka://h2:9093", "broker_client_id": "tympan"}


def test_faust_settings_sasl_ssl_carry_credentials() -> None:
    import faust
    from faust.types.auth import AuthProtocol, SASLMechanism

    config = KafkaClientConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
        sasl_password="s3cret",
    )
    credentials = config.faust_settings()["broker_credentials"]

    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_256
    assert (credentials.username, credentials.password) == ("alice", "s3cret")
    assert isinstance(credentials.ssl_context, ssl.SSLContext)


def test_faust_settings_ssl_carry_ssl_credentials() -> None:
    import faust

    credentials = KafkaClientConfig(security_protocol="SSL").faust_settings()["broker_credentials"]

    assert isinstance(credentials, faust.SSLCredentials)


def test_from_environ_reads_broker_and_sasl() -> None:
    environ = {
        "TYMPAN_BROKER": "k1:9092",
        "TYMPAN_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "TYMPAN_KAFKA_SASL_MECHANISM": "scram-sha-256",
        "TYMPAN_KAFKA_SASL_USERNAME": "alice",
        "TYMPAN_KAFKA_SASL_PASSWORD": "pw",
        "TYMPAN_KAFKA_SSL_CAFILE": "",
    }

    config = KafkaClientConfig.from_environ(environ)

    assert config == KafkaClientConfig(
        bootstrap_servers="k1:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
        sasl_password="pw",
    )


def test_from_environ_flag_wins_and_defaults_apply() -> None:
    config = KafkaClientConfig.from_environ(
        {"TYMPAN_BROKER": "env:9092"}, bootstrap_servers="flag:9092", default_client_id="cli"
    )

    assert (config.bootstrap_servers, config.client_id) == ("flag:9092", "cli")
    assert KafkaClientConfig.from_environ({}) == KafkaClientConfig()


class _Terminal(io.StringIO):
    """Typed answers on a terminal (``isatty`` is what confirm_delete looks at)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("typed", "deleted"), [("y\n", True), ("yes\n", True), ("\n", False)])
def test_topics_delete_asks_on_a_terminal(typed: str, deleted: bool) -> None:
    out = io.StringIO()
    assert confirm_delete(["p.audio.v1"], yes=False, stdin=_Terminal(typed), out=out) is deleted
    assert "p.audio.v1" in out.getvalue()


def test_topics_delete_refuses_without_a_terminal_unless_yes() -> None:
    out = io.StringIO()
    assert confirm_delete(["p.audio.v1"], yes=False, stdin=io.StringIO("y\n"), out=out) is False
    assert "--yes" in out.getvalue()
    assert confirm_delete(["p.audio.v1"], yes=True, stdin=io.StringIO(""), out=out) is True


def test_prefixed_keeps_to_its_own_prefix() -> None:
    names = ["tympan.audio.v1", "tympan2.audio.v1", "tympan-x.audio.v1", "other.tympan.v1"]
    assert prefixed(names, "tympan") == ["tympan.audio.v1"]


def test_the_topics_module_needs_no_cli() -> None:
    """Topics are the Kafka side's: importing them loads no command-line code."""
    import subprocess
    import sys

    code = (
        "import sys, stream.kafka.topics; "
        "print([m for m in sys.modules if m.startswith('stream.cli')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("brokers", "replicas"), [(1, 1), (2, 2), (3, 3), (7, 3)])
def test_the_default_replication_follows_the_cluster(brokers: int, replicas: int) -> None:
    specs = Topics().for_cluster(brokers).specs()

    assert {spec.replication_factor for spec in specs} == {replicas}
    insync = {spec.configs.get("min.insync.replicas") for spec in specs}
    assert insync == ({"2"} if replicas >= 3 else {None})


def test_an_explicit_replication_factor_is_kept_on_any_cluster() -> None:
    topics = Topics(replication_factor=2)

    assert topics.for_cluster(9) is topics
    assert {spec.replication_factor for spec in topics.specs()} == {2}


def test_an_undecided_replication_factor_creates_nothing() -> None:
    spec = Topics().spec("tympan.audio.v1")

    assert spec.replication_factor == -1
    assert "min.insync.replicas" not in spec.configs
    with pytest.raises(ConfigError, match="decided for a cluster"):
        spec.new_topic()


def test_advice_names_missing_replicas_insync_and_lagging_partitions() -> None:
    topics = Topics().for_cluster(3)
    spec = topics.spec(topics.labels)
    thin = TopicInfo(spec.name, spec.partitions, 1, {"cleanup.policy": "delete"}, 0)
    lagging = TopicInfo(spec.name, spec.partitions, 3, dict(spec.configs), 2)

    (replicas, insync) = advise([spec], [thin])
    (behind,) = advise([spec], [lagging])

    assert f"topic {spec.name!r} has 1 replica(s) per partition" in replicas
    assert "kafka-reassign-partitions.sh" in replicas
    assert "min.insync.replicas=(broker default)" in insync
    assert "--add-config min.insync.replicas=2" in insync
    assert "2 under-replicated partition(s)" in behind
    assert advise([spec], [TopicInfo(spec.name, spec.partitions, 3, dict(spec.configs))]) == ()
