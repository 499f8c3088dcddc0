"""The dashboard's Kafka reader on the real broker with a poison record (issue 11
finding 9): with ``--from-beginning`` a record of ``[`` x 100,000 on a result topic
used to raise ``RecursionError``, restart the reader from the beginning, and loop.
It must be counted as unparsable once and the events after it shown."""

from __future__ import annotations

import asyncio
import json
import time

from kafka_helpers import produce_records

from stream.dashboard.server import DashboardConfig, ReaderStatus, read_forever
from stream.dashboard.state import DashboardState
from stream.events import LabelEvent, ModelRef, WindowSpan
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

DEEP = b"[" * 100_000


def _label(stream_id: str, index: int) -> bytes:
    span = WindowSpan(index, index * 8000, index * 8000 + 16000, 16000)
    event = LabelEvent(
        f"id-{stream_id}-{index}",
        stream_id,
        span,
        "speech",
        0.9,
        (("speech", 0.9),),
        ModelRef("scene", "1"),
        latency_ms=5.0,
    )
    return json.dumps(event.to_dict()).encode()


def test_from_beginning_counts_a_deep_record_once_and_reads_on(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    records = [(b"call", _label("call", 0)), (b"call", DEEP), (b"call", _label("call", 1))]
    produce_records(kafka_client, topics.labels, records, partition=0)
    config = DashboardConfig(client=kafka_client, topics=topics, from_beginning=True)
    state, status = DashboardState(started_s=time.time()), ReaderStatus()

    async def scenario() -> None:
        task = asyncio.create_task(read_forever(config, state, status))
        try:
            for _ in range(300):
                view = state.streams.get("call")
                if status.records >= 3 and view is not None and view.windows == 2:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # a looping reader would count the records again
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert state.unparsable["labels"] == 1
    assert state.streams["call"].windows == 2
    assert status.records == 3 and status.error is None


def test_a_batch_the_client_cannot_read_is_counted_once_and_the_events_around_it_shown(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    """Issue 23: a header name that is not UTF-8 in an lz4 batch used to raise inside
    ``getmany`` (the reader restarted and met it again, forever). The guard skips that
    record by offset, counts it as unparsable and serves the events beside it, which
    arrive gzip- and zstd-compressed."""
    from tests.support.record_batches import (
        BAD_NAME_MARK,
        build_batch,
        compress,
        produce_batch,
        with_bad_name,
    )

    broker = kafka_client.bootstrap_servers
    bad = with_bad_name(
        build_batch(
            0,
            [
                (b"call", _label("call", 0), []),
                (b"call", _label("call", 1), [(BAD_NAME_MARK, b"x")]),
                (b"call", _label("call", 2), []),
            ],
        )
    )

    async def produce() -> None:
        await produce_batch(broker, topics.labels, 0, compress(bad, 3))  # lz4
        await produce_batch(
            broker,
            topics.labels,
            0,
            compress(build_batch(0, [(b"call", _label("call", 3), [])]), 1),
        )
        await produce_batch(
            broker,
            topics.labels,
            0,
            compress(build_batch(0, [(b"call", _label("call", 4), [])]), 4),
        )

    asyncio.run(produce())
    config = DashboardConfig(client=kafka_client, topics=topics, from_beginning=True)
    state, status = DashboardState(started_s=time.time()), ReaderStatus()

    async def scenario() -> None:
        task = asyncio.create_task(read_forever(config, state, status))
        try:
            for _ in range(300):
                view = state.streams.get("call")
                if view is not None and view.windows == 4:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # a looping reader would count the records again
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert state.unparsable["labels"] == 1
    assert state.streams["call"].windows == 4
    assert status.records == 4 and status.error is None
