"""Produce and consume raw records in integration tests, against the real broker.

Import from tests as ``from kafka_helpers import consume_all, produce_records`` (pytest
puts ``tests/integration`` on ``sys.path`` because its conftest lives there).

Each helper has a synchronous form for plain ``def test_...`` functions (it runs its own
event loop) and an ``*_async`` form for code already inside a loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from stream.errors import BrokerError
from stream.kafka.admin import describe_topics
from stream.kafka.config import KafkaClientConfig

Bootstrap = str | KafkaClientConfig
KeyValue = tuple[bytes | None, bytes | None]


def client_config(bootstrap: Bootstrap) -> KafkaClientConfig:
    if isinstance(bootstrap, KafkaClientConfig):
        return bootstrap
    return KafkaClientConfig(bootstrap_servers=bootstrap, client_id="tympan-tests")


def produce_records(
    bootstrap: Bootstrap,
    topic: str,
    records: Iterable[KeyValue],
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> list[Any]:
    """Send ``(key, value)`` pairs to ``topic`` in order and wait until all are acked.

    Returns the ``RecordMetadata`` of each record (``.partition``, ``.offset``).
    Records with the same key land on the same partition (Kafka's default
    partitioner), so their order is kept.
    """
    return asyncio.run(
        produce_records_async(bootstrap, topic, records, partition=partition, headers=headers)
    )


async def produce_records_async(
    bootstrap: Bootstrap,
    topic: str,
    records: Iterable[KeyValue],
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> list[Any]:
    producer = AIOKafkaProducer(**client_config(bootstrap).aiokafka_kwargs(), acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, value, key=key, partition=partition, headers=list(headers or [])
            )
            for key, value in records
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


def consume_all(
    bootstrap: Bootstrap,
    topic: str,
    *,
    min_count: int | None = None,
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning, without a consumer group.

    With ``min_count=None`` it reads everything that was in the topic when it was
    called (up to the end offsets of that moment) and returns. With ``min_count`` it
    reads until at least that many records arrived -- for output another process is
    still writing -- and fails the test (``AssertionError`` naming the topic and the
    counts) if they do not arrive within ``timeout_s``.

    Records come back ordered by partition, then offset.
    """
    return asyncio.run(
        consume_all_async(bootstrap, topic, min_count=min_count, timeout_s=timeout_s)
    )


async def consume_all_async(
    bootstrap: Bootstrap,
    topic: str,
    *,
    min_count: int | None = None,
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    client = client_config(bootstrap)
    partitions = await _partitions(client, topic)
    consumer = AIOKafkaConsumer(
        **client.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        return await _drain(consumer, topic, end, min_count, timeout_s)
    finally:
        await consumer.stop()


async def _partitions(client: KafkaClientConfig, topic: str) -> list[TopicPartition]:
    try:
        (info,) = await describe_topics(client, [topic])
    except BrokerError as exc:
        raise AssertionError(f"cannot read topic {topic!r}: {exc}") from exc
    return [TopicPartition(topic, p) for p in range(info.partitions)]


async def _drain(
    consumer: AIOKafkaConsumer,
    topic: str,
    end: dict[TopicPartition, int],
    min_count: int | None,
    timeout_s: float,
) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while not await _done(consumer, records, end, min_count):
        if time.monotonic() >= deadline:
            wanted = f"at least {min_count}" if min_count is not None else "all records"
            raise AssertionError(
                f"topic {topic!r}: read {len(records)} records, wanted {wanted} "
                f"within {timeout_s:g} s"
            )
        batch = await consumer.getmany(timeout_ms=200)
        for partition_records in batch.values():
            records.extend(partition_records)
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def _done(
    consumer: AIOKafkaConsumer,
    records: list[ConsumerRecord[bytes, bytes]],
    end: dict[TopicPartition, int],
    min_count: int | None,
) -> bool:
    if min_count is not None:
        return len(records) >= min_count
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True


REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"


@dataclass(frozen=True)
class ScratchBroker:
    """A second broker, run by ``scripts/kafka.sh`` on its own ports and directory.

    For tests that stop or restart a broker (the shared one on 9092 must stay up).
    Start-up takes seconds and about 0.5 GB of memory: use it sparingly.
    """

    directory: Path
    port: int

    @classmethod
    def on_free_ports(cls, directory: Path) -> ScratchBroker:
        """A broker on a free port whose successor (the controller port) is free too."""
        while True:
            port = _free_port()
            if port < 65535 and _port_free(port + 1):
                return cls(directory, port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``scripts/kafka.sh ARGS`` for this broker; stdout/stderr captured as text."""
        env = dict(
            os.environ,
            TYMPAN_KAFKA_PORT=str(self.port),
            TYMPAN_KAFKA_CONTROLLER_PORT=str(self.port + 1),
            TYMPAN_KAFKA_DIR=str(self.directory),
        )
        done = subprocess.run(
            [str(KAFKA_SH), *args], env=env, capture_output=True, text=True, timeout=180
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"scripts/kafka.sh {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
            )
        return done

    def up(self) -> str:
        """Start it (or find it running); returns ``started`` or ``running``."""
        return self.run("up", "--porcelain").stdout.strip()

    def down(self) -> None:
        self.run("down")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
