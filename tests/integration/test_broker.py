"""The test broker, topic management and both Kafka clients (aiokafka, Faust) end to end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kafka_helpers import ScratchBroker, consume_all, produce_records

from stream.cli import main as tympan
from stream.errors import BrokerError
from stream.kafka.admin import delete_topics, describe_topics, ensure_topics, wait_for_broker
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

ECHO_APP = Path(__file__).with_name("faust_echo_app.py")


def test_records_round_trip_in_key_order(broker: str, topics: Topics) -> None:
    sent = [(f"call-{i % 3}".encode(), f"frame-{i}".encode()) for i in range(30)]

    metadata = produce_records(broker, topics.audio, sent)
    received = consume_all(broker, topics.audio)

    assert sorted((r.key, r.value) for r in received) == sorted(sent)
    partitions = {
        key: {m.partition for (k, _), m in zip(sent, metadata, strict=True) if k == key}
        for key, _ in sent
    }
    assert all(len(p) == 1 for p in partitions.values())
    for key in partitions:
        values = [r.value for r in received if r.key == key]
        assert values == [v for k, v in sent if k == key]


def test_consume_all_waits_for_min_count(broker: str, topics: Topics) -> None:
    produce_records(broker, topics.rejected, [(b"k", b"late")])

    assert [r.value for r in consume_all(broker, topics.rejected, min_count=1)] == [b"late"]
    with pytest.raises(AssertionError, match="read 1 records, wanted at least 2"):
        consume_all(broker, topics.rejected, min_count=2, timeout_s=1.0)


def test_topic_configs_are_applied(kafka_client: KafkaClientConfig, topics: Topics) -> None:
    infos = {
        info.name: info for info in asyncio.run(describe_topics(kafka_client, list(topics.names())))
    }

    assert infos[topics.control].configs["cleanup.policy"] == "compact"
    assert infos[topics.speaker_registry].configs["cleanup.policy"] == "compact"
    assert infos[topics.audio].configs["cleanup.policy"] == "delete"
    assert infos[topics.audio].configs["retention.ms"] == str(topics.audio_retention_ms)
    assert infos[topics.audio].partitions == topics.audio_partitions
    assert infos[topics.rejected].partitions == 1
    assert {info.replication_factor for info in infos.values()} == {1}


def test_ensure_topics_is_idempotent(kafka_client: KafkaClientConfig, topics: Topics) -> None:
    report = asyncio.run(ensure_topics(kafka_client, topics))

    assert report.created == ()
    assert report.existing == topics.names()


def test_ensure_topics_reports_partition_mismatch(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    wider = replace(topics, audio_partitions=topics.audio_partitions * 2)

    with pytest.raises(BrokerError) as caught:
        asyncio.run(ensure_topics(kafka_client, wider))

    message = str(caught.value)
    assert f"topic '{topics.audio}' has {topics.audio_partitions} partitions" in message
    assert f"expected {wider.audio_partitions}" in message


def test_ensure_topics_reports_cleanup_policy_mismatch(kafka_client: KafkaClientConfig) -> None:
    wanted = Topics().with_prefix(f"test-policy-{uuid.uuid4().hex[:8]}")
    asyncio.run(_create_plain_topic(kafka_client, wanted.control))
    try:
        with pytest.raises(BrokerError, match=r"cleanup\.policy=delete, expected compact"):
            asyncio.run(ensure_topics(kafka_client, wanted))
    finally:
        asyncio.run(delete_topics(kafka_client, list(wanted.names())))


async def _create_plain_topic(client: KafkaClientConfig, name: str) -> None:
    admin = AIOKafkaAdminClient(**client.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"cleanup.policy": "delete"})]
        )
    finally:
        await admin.close()


def test_wait_for_broker_names_the_unreachable_address() -> None:
    nowhere = KafkaClientConfig(bootstrap_servers="127.0.0.1:9")

    with pytest.raises(BrokerError, match=r"127\.0\.0\.1:9 within 1 s"):
        asyncio.run(wait_for_broker(nowhere, timeout_s=1.0))


def test_topics_cli_creates_and_describes(
    broker: str, kafka_client: KafkaClientConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"test-cli-{uuid.uuid4().hex[:8]}"
    try:
        assert tympan(["topics", "create", "--broker", broker, "--prefix", prefix]) == 0
        assert tympan(["topics", "describe", "--broker", broker, "--prefix", prefix]) == 0
        assert tympan(["topics", "list", "--broker", broker, "--prefix", prefix]) == 0
    finally:
        asyncio.run(delete_topics(kafka_client, list(Topics(prefix=prefix).names())))

    out = capsys.readouterr().out
    assert f"created  {prefix}.audio.v1" in out
    assert f"{prefix}.control.v1  partitions=1 replication=1  cleanup.policy=compact" in out
    assert out.count(f"{prefix}.") == 3 * len(Topics().names())


def test_faust_agent_consumes_and_commits(
    broker: str, kafka_client: KafkaClientConfig, topics: Topics, tmp_path: Path
) -> None:
    app_id = f"{topics.prefix}-echo"
    produce_records(broker, topics.audio, [(b"call-1", b"hello")])
    log_path = tmp_path / "faust.log"
    env = dict(
        os.environ,
        TYMPAN_BROKER=broker,
        ECHO_APP_ID=app_id,
        ECHO_IN=topics.audio,
        ECHO_OUT=topics.labels,
        ECHO_DATADIR=str(tmp_path / "faust-data"),
    )
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(ECHO_APP), "worker", "--without-web", "--loglevel", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            echoed = _consume_or_explain(broker, topics.labels, log_path)
            committed = asyncio.run(_committed_offsets(kafka_client, app_id, log_path))
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    assert [(r.key, r.value) for r in echoed] == [(b"call-1", b"HELLO")]
    assert sum(committed.values()) == 1


def _consume_or_explain(broker: str, topic: str, log_path: Path) -> list:  # type: ignore[type-arg]
    try:
        return consume_all(broker, topic, min_count=1, timeout_s=25.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; faust worker log:\n{_tail(log_path)}") from exc


async def _committed_offsets(
    client: KafkaClientConfig, group_id: str, log_path: Path, timeout_s: float = 15.0
) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**client.aiokafka_kwargs())
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group_id)
            if offsets:
                return {tp.partition: meta.offset for tp, meta in offsets.items()}
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise AssertionError(
        f"group {group_id!r} committed no offset within {timeout_s:g} s; faust worker log:\n"
        f"{_tail(log_path)}"
    )


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_kafka_script_is_idempotent_and_keeps_storage(tmp_path: Path) -> None:
    scratch = ScratchBroker.on_free_ports(tmp_path / "kafka")
    try:
        assert scratch.up() == "started"
        assert scratch.up() == "running"
        cluster_id = _cluster_id(scratch.directory)
        scratch.down()
        assert scratch.run("status", check=False).returncode == 1

        assert scratch.up() == "started"
        assert _cluster_id(scratch.directory) == cluster_id
        assert asyncio.run(wait_for_broker(KafkaClientConfig(scratch.bootstrap), timeout_s=5)) == 1
    finally:
        scratch.down()
    assert not (scratch.directory / "kafka.pid").exists()


def _cluster_id(directory: Path) -> str:
    for line in (directory / "data" / "meta.properties").read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.removeprefix("cluster.id=")
    raise AssertionError(f"no cluster.id in {directory}/data/meta.properties")
