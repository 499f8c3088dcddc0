"""The exactly-once output (``stream.kafka.transactions``) on the real broker: one
transaction carries a partition's records, its progress record and its group offset;
a reader that reads ``read_committed`` sees only committed transactions; the next
owner of a partition reads the last committed progress record and fences the
previous owner, whose transaction then can neither be committed nor seen."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.kafka.transactions import PartitionTransactions


def _owner(client: KafkaClientConfig, topics: Topics, group: str) -> PartitionTransactions:
    return PartitionTransactions(
        client, group_id=group, audio_topic=topics.audio, progress_topic=topics.progress
    )


async def _committed_labels(client: KafkaClientConfig, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        **client.aiokafka_kwargs(), isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(Topics().result_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        while any([(await consumer.position(tp)) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
        return values
    finally:
        await consumer.stop()


async def _group_offset(client: KafkaClientConfig, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(**client.aiokafka_kwargs(), group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


def test_a_partition_owner_commits_events_progress_and_offset_together(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    group = f"{topics.prefix}-worker"

    async def main() -> tuple[bytes | None, list[bytes], int | None]:
        first = _owner(kafka_client, topics, group)
        assert await first.open(3) is None  # nothing committed yet
        await first.send(3, topics.labels, b"s", b"one")
        await first.commit(3, b"progress-1", 17)
        two = await first.send(3, topics.labels, b"s", b"two")  # open when it is fenced
        second = _owner(kafka_client, topics, group)
        progress = await second.open(3)  # the fence
        with pytest.raises(Exception):  # noqa: B017 (aiokafka raises its own fenced errors)
            await first.commit(3, b"progress-2", 30)
        await asyncio.wait([two])  # its outcome is read, whatever it is
        with pytest.raises(RuntimeError, match="partition 4"):
            await second.send(4, topics.labels, b"s", b"not ours")
        await second.close([3])
        await first.close([3])
        labels = await _committed_labels(kafka_client, topics.labels)
        offset = await _group_offset(kafka_client, group, TopicPartition(topics.audio, 3))
        return progress, labels, offset

    progress, labels, offset = asyncio.run(main())
    # the fenced producer leaves aiokafka-internal futures failed and unread; collect
    # them here, not in the middle of a later import (CPython 3.11.7 then fails to
    # compile with "AST constructor recursion depth mismatch")
    gc.collect()
    assert progress == b"progress-1"
    assert labels == [b"one"]  # "two" was in the fenced transaction
    assert offset == 17
