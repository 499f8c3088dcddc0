"""A takeover reads a partition's last progress record from the end of the topic.

The progress topic's active segment keeps every record written since it rolled (one
per commit per partition, for days), so reading it from the beginning made the time
to take a partition over grow with the previous owner's uptime. These tests write a
history of records, foreign keys, a null value and an aborted transaction after the
last good record, and check both what is found and how much was read to find it.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition

from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.kafka.transactions import (
    PROGRESS_LOOKBACK,
    PartitionTransactions,
    committed_reader,
    last_record,
)

HISTORY = 1000  # good records of the partition, oldest first
FOREIGN = 150  # records of another key written after them


async def _write(client: KafkaClientConfig, topic: str, partition: int) -> None:
    producer = AIOKafkaProducer(**client.aiokafka_kwargs(), acks="all", linger_ms=5)
    await producer.start()
    try:
        key = str(partition).encode()
        sends = [
            await producer.send(topic, f"p-{i}".encode(), key=key, partition=partition)
            for i in range(HISTORY)
        ]
        sends += [
            await producer.send(topic, b"other", key=b"99", partition=partition)
            for _ in range(FOREIGN)
        ]
        sends.append(await producer.send(topic, None, key=key, partition=partition))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    aborted = AIOKafkaProducer(
        **client.aiokafka_kwargs(), transactional_id=f"{topic}-aborting", enable_idempotence=True
    )
    await aborted.start()
    try:
        await aborted.begin_transaction()
        await aborted.send_and_wait(topic, b"aborted", key=key, partition=partition)
        await aborted.abort_transaction()
    finally:
        await aborted.stop()


async def _last(client: KafkaClientConfig, topic: str, partition: int, key: bytes) -> tuple:
    consumer = committed_reader(client)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        found = await last_record(consumer, tp, lambda r: r.key == key and r.value is not None)
        return (None if found.record is None else found.record.value), found.records_read
    finally:
        await consumer.stop()


def test_the_last_record_is_found_from_the_end(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    asyncio.run(_write(kafka_client, topics.progress, 1))
    value, read = asyncio.run(_last(kafka_client, topics.progress, 1, b"1"))
    assert value == f"p-{HISTORY - 1}".encode()  # not the null, not the aborted one
    # the windows doubled until one held a good record: 64 + 128 + 256 at most,
    # against the whole history the old read went through
    assert read <= PROGRESS_LOOKBACK * 7
    assert read < HISTORY


def test_a_partition_without_its_record_is_read_to_the_beginning(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    asyncio.run(_write(kafka_client, topics.progress, 2))
    value, read = asyncio.run(_last(kafka_client, topics.progress, 2, b"7"))
    assert value is None
    assert read == HISTORY + FOREIGN + 1  # every committed record, the aborted one not
    assert asyncio.run(_last(kafka_client, topics.progress, 3, b"3")) == (None, 0)


def test_opening_a_partition_returns_its_last_committed_progress(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    asyncio.run(_write(kafka_client, topics.progress, 0))

    async def open_and_close() -> bytes | None:
        txns = PartitionTransactions(
            kafka_client,
            group_id=f"{topics.prefix}-group",
            audio_topic=topics.audio,
            progress_topic=topics.progress,
        )
        try:
            return await txns.open(0)
        finally:
            await txns.close([0])

    assert asyncio.run(open_and_close()) == f"p-{HISTORY - 1}".encode()
