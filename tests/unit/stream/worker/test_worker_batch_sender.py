"""BatchSender: the events sent in one turn of the event loop leave as one producer
batch per partition, in order; a batch's outcome (acknowledged or failed) reaches
every event in it; what cannot be batched goes through the plain send.

The producer is a small fake of Faust's producer service around aiokafka's real
``BatchBuilder`` (no broker: the unit is the grouping, not Kafka)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import TP

from stream.worker.producer import MAX_RECORD_BYTES, BatchSender

BATCH_BYTES = 64 * 1024


class RecordingBuilder(BatchBuilder):
    """aiokafka's BatchBuilder, remembering the keys appended (to check order)."""

    def __init__(self) -> None:
        super().__init__(BATCH_BYTES, 0, is_transactional=False)
        self.keys: list[bytes] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any = ()) -> Any:
        meta = super().append(timestamp=timestamp, key=key, value=value, headers=list(headers))
        if meta is not None:
            self.keys.append(key)
        return meta


class Producer:
    """Faust's producer as BatchSender uses it: ``send``, ``key_partition`` and the
    aiokafka producer's ``create_batch`` / ``send_batch``."""

    def __init__(self) -> None:
        self.plain: list[tuple[str, bytes]] = []
        self.batches: list[tuple[str, int, list[bytes]]] = []
        self.deliveries: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *args: Any) -> asyncio.Future[Any]:
        self.plain.append((topic, key))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result("plain")
        return fut

    def key_partition(self, topic: str, key: bytes) -> TP:
        return TP(topic, int(key.decode().rsplit("-", 1)[1]) % 2)

    def _ensure_producer(self) -> Producer:
        return self

    def create_batch(self) -> RecordingBuilder:
        return RecordingBuilder()

    async def send_batch(self, batch: RecordingBuilder, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch.keys))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


async def _warm(sender: BatchSender, topic: str) -> None:
    """The first record of a topic goes through the plain send (topic metadata)."""
    await sender.send(topic, b"warm-0", b"{}")


def test_one_loop_turn_is_one_batch_per_partition_in_order() -> None:
    async def go() -> tuple[Producer, list[Any]]:
        producer = Producer()
        sender = BatchSender(producer)
        await _warm(sender, "labels")
        futures = [await sender.send("labels", f"s-{i}".encode(), b"{}") for i in (0, 1, 2, 4, 3)]
        await asyncio.sleep(0)  # the loop turn ends: batches are handed over
        await sender.join()
        return producer, futures

    producer, futures = asyncio.run(go())
    assert producer.plain == [("labels", b"warm-0")]
    assert producer.batches == [
        ("labels", 0, [b"s-0", b"s-2", b"s-4"]),
        ("labels", 1, [b"s-1", b"s-3"]),
    ]
    assert futures[0] is futures[2] is futures[3] and futures[1] is futures[4]
    assert futures[0] is not futures[1]


def test_a_batch_outcome_reaches_every_event_in_it() -> None:
    async def go() -> list[Any]:
        producer = Producer()
        sender = BatchSender(producer)
        await _warm(sender, "labels")
        futures = [await sender.send("labels", f"s-{i}".encode(), b"{}") for i in range(4)]
        await sender.join()
        even, odd = producer.deliveries
        even.set_result("meta")
        odd.set_exception(RuntimeError("broker refused the batch"))
        return await asyncio.gather(*futures, return_exceptions=True)

    outcomes = asyncio.run(go())
    assert outcomes[0] == outcomes[2] == "meta"
    assert all(isinstance(o, RuntimeError) for o in (outcomes[1], outcomes[3]))


def test_a_full_batch_is_handed_over_and_a_new_one_started() -> None:
    async def go() -> Producer:
        producer = Producer()
        sender = BatchSender(producer)
        await _warm(sender, "labels")
        for i in range(0, 160, 2):  # partition 0 only, 1 KiB each: two batches
            await sender.send("labels", f"s-{i}".encode(), b"x" * 1024)
        await sender.join()
        return producer

    producer = asyncio.run(go())
    keys = [k for _, _, ks in producer.batches for k in ks]
    assert len(producer.batches) == 2
    assert keys == [f"s-{i}".encode() for i in range(0, 160, 2)]


def test_a_record_bigger_than_a_batch_goes_through_the_plain_send() -> None:
    async def go() -> tuple[Producer, Any]:
        producer = Producer()
        sender = BatchSender(producer)
        await _warm(sender, "rejected")
        fut = await sender.send("rejected", b"s-0", b"x" * (MAX_RECORD_BYTES + 1))
        await sender.join()
        return producer, await fut

    producer, outcome = asyncio.run(go())
    assert producer.plain[-1] == ("rejected", b"s-0") and outcome == "plain"
    assert producer.batches == []
