"""Frames gathered into one aiokafka batch per partition, each partition on its own lane.

The sending half of :func:`~stream.kafka.producer.produce_frames`: :class:`PartitionLanes`
appends records to the open batch of their partition and hands full batches over, one
task (a lane) per partition, so the pacing loop never waits for a broker round trip;
every batch remembers which frames of which streams it holds until it is acknowledged,
so a failed run names what was lost (:class:`Undelivered`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)

_MAX_IN_FLIGHT = 2000  # batches handed over but not delivered; beyond it, wait (backpressure)
_MAX_QUEUED = 16  # full batches waiting for their lane, all partitions; beyond it, wait


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Frames of one stream that the producer could not get acknowledged.

    They may or may not have reached the topic (a broker can store a batch and fail
    before it answers); what is certain is that nobody confirmed them.
    """

    stream_id: str
    partition: int
    """-1: the frames never reached the producer (still queued in ``tympan ingest``)."""
    frames: int
    first_seq: int
    last_seq: int

    def sentence(self, topic: str) -> str:
        where = (
            f"not acknowledged by topic {topic!r} partition {self.partition}"
            if self.partition >= 0
            else f"still queued for topic {topic!r}, never sent"
        )
        seqs = f"seq {self.first_seq}..{self.last_seq}"
        return f"stream {self.stream_id!r}: {self.frames} frame(s), {seqs}, {where}"


@dataclass(slots=True)
class _Batch:
    """One aiokafka batch of one partition and the frames it holds, per stream."""

    builder: Any
    partition: int
    created_s: float = field(default_factory=time.monotonic)
    frames: dict[bytes, list[int]] = field(default_factory=dict)  # key → [n, first, last seq]
    delivery: asyncio.Future[Any] | None = None

    def count(self, key: bytes, seq: int) -> None:
        held = self.frames.get(key)
        if held is None:
            self.frames[key] = [1, seq, seq]
        else:
            held[0] += 1
            held[2] = seq


class PartitionLanes:
    """Records gathered into one aiokafka batch per partition, handed over without stalls.

    aiokafka keeps one undrained batch per partition and makes ``send_batch`` wait
    while there is one (until the broker answers the request in flight), so awaiting
    it in the send loop would stall pacing for a broker round trip. Instead each
    partition has a *lane*: a task that submits that partition's batches in order,
    while the loop keeps appending to the partition's open batch; a lane that finds
    the open batch when its previous submit returns takes it along, so a slow broker
    gets bigger batches rather than a late producer.

    Kafka's default (murmur2) partitioning is computed once per stream rather than
    per record: the same partition a Java or Go producer picks for the same key.

    Every batch remembers which frames of which streams it holds until it is
    acknowledged, and every wait is bounded by ``delivery_timeout_s`` counted from the
    oldest unacknowledged batch's creation: a partition that no broker serves ends the
    run with :meth:`undelivered` naming what was lost, never a silent wait or drop.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        partitions: list[int],
        delivery_timeout_s: float = 120.0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self._partitions = partitions
        self._partitioner = DefaultPartitioner()
        self.delivery_timeout_s = delivery_timeout_s
        self.partition_of: dict[bytes, int] = {}
        self._open: dict[int, _Batch] = {}  # partition → batch being filled
        self._full: dict[int, deque[_Batch]] = {}  # partition → closed, not yet submitted
        self._submitting: dict[int, _Batch] = {}  # partition → batch its lane hands over
        self._lanes: dict[int, asyncio.Task[None]] = {}
        self._progress = asyncio.Event()  # set whenever a lane hands a batch over
        self.pending: deque[_Batch] = deque()  # submitted, not known delivered

    def add(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]], seq: int) -> None:
        partition = self.partition_of.get(key)
        if partition is None:
            partition = self._partitioner(key, self._partitions, self._partitions)
            self.partition_of[key] = partition
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = _Batch(self.producer.create_batch(), partition)
        if batch.builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
            self._full.setdefault(partition, deque()).append(self._open.pop(partition))
            self._lane(partition)
            batch = self._open[partition] = _Batch(self.producer.create_batch(), partition)
            batch.builder.append(key=key, value=value, timestamp=None, headers=headers)
        batch.count(key, seq)

    async def flush(self) -> None:
        """Start a lane for every partition with records and no lane running.

        Backpressure: when the broker takes batches more slowly than they fill (as
        fast as possible, or a broker in trouble), wait until the lanes have handed
        over all but ``_MAX_QUEUED`` full batches, so memory stays bounded.

        Raises
        ------
        TimeoutError
            A batch is unacknowledged past the delivery timeout.
        """
        for partition in list(self._open):
            self._lane(partition)
        while sum(map(len, self._full.values())) > _MAX_QUEUED:
            self._progress.clear()
            progress = asyncio.ensure_future(self._progress.wait())
            try:
                await self._wait(progress)
            finally:
                progress.cancel()
            self._check_lanes()
        await self._settle()
        self._check_deadline()
        await asyncio.sleep(0)  # let the lanes and aiokafka's sender run

    async def delivered(self) -> None:
        """Wait until every record is submitted and acknowledged (errors raised)."""
        await self.flush()
        while self._lanes:
            await self._wait(*self._lanes.values())
            self._check_lanes()
        while self.pending:
            await self._wait(self._oldest_delivery())
            self._dropacknowledged()

    def undelivered(self) -> list[Undelivered]:
        """Every stream with frames not acknowledged (yet), by stream id."""
        batches = [b for b in self.pending if not acknowledged(b)]
        batches += list(self._submitting.values())
        batches += [b for full in self._full.values() for b in full]
        batches += list(self._open.values())
        merged: dict[bytes, list[int]] = {}
        for batch in batches:
            for key, (n, first, last) in batch.frames.items():
                held = merged.setdefault(key, [0, first, last])
                held[0] += n
                held[1], held[2] = min(held[1], first), max(held[2], last)
        return [
            Undelivered(key.decode(errors="replace"), self.partition_of[key], n, first, last)
            for key, (n, first, last) in sorted(merged.items())
        ]

    def _oldest_s(self) -> float | None:
        """When the oldest batch that was handed over and is not yet acknowledged was made."""
        ages = [b.created_s for b in self.pending if not acknowledged(b)]
        ages += [b.created_s for b in self._submitting.values()]
        ages += [full[0].created_s for full in self._full.values() if full]
        return min(ages, default=None)

    def _check_deadline(self) -> None:
        oldest = self._oldest_s()
        if oldest is not None and time.monotonic() - oldest > self.delivery_timeout_s:
            raise TimeoutError(
                f"a batch stayed unacknowledged for more than {self.delivery_timeout_s:g} s "
                "(no broker took it: are the partition's leader and enough in-sync replicas up?)"
            )

    async def _wait(self, *futures: asyncio.Future[Any]) -> None:
        """Wait until one of ``futures`` is done, at most until the oldest unacknowledged
        batch is past the delivery timeout (then raise ``TimeoutError``)."""
        oldest = self._oldest_s()
        timeout = None
        if oldest is not None:
            timeout = max(0.0, oldest + self.delivery_timeout_s - time.monotonic()) + 0.01
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        self._check_deadline()

    def _lane(self, partition: int) -> None:
        lane = self._lanes.get(partition)
        if lane is not None and lane.done():
            lane.result()  # a failed submit ends the run with its error
        if lane is None or lane.done():
            self._lanes[partition] = asyncio.ensure_future(self._submit_all(partition))

    def _check_lanes(self) -> None:
        """Raise the error of a lane that failed (a broker that refuses batches)."""
        for lane in list(self._lanes.values()):
            if lane.done():
                lane.result()

    async def _submit_all(self, partition: int) -> None:
        full = self._full.setdefault(partition, deque())
        try:
            while True:
                batch = full.popleft() if full else self._open.pop(partition, None)
                if batch is None:
                    break
                batch.builder.close()
                self._submitting[partition] = batch
                batch.delivery = await self._hand_over(batch)
                del self._submitting[partition]
                self.pending.append(batch)
                self._progress.set()
        finally:
            self._progress.set()  # wake a waiting flush, also when the submit failed
        del self._lanes[partition]  # only on success: a failed lane keeps its error

    async def _hand_over(self, batch: _Batch) -> asyncio.Future[Any]:
        """``send_batch``, waiting as long as the partition's previous batch is unacknowledged.

        aiokafka gives up waiting for room after its ``request_timeout_ms`` (a leader that
        is down or frozen) with ``KafkaTimeoutError``; the batch is untouched then, so it
        is offered again: the send loop's delivery deadline decides when to give up.
        """
        while True:
            try:
                delivery: asyncio.Future[Any] = await self.producer.send_batch(
                    batch.builder, self.topic, partition=batch.partition
                )
                return delivery
            except KafkaTimeoutError:
                log.warning(
                    "topic %r partition %d: the previous batch is still unacknowledged "
                    "(its leader is down or frozen?); still waiting, up to the delivery "
                    "timeout (%g s)",
                    self.topic,
                    batch.partition,
                    self.delivery_timeout_s,
                )

    async def close(self) -> None:
        """Stop the lanes (a run that ended on an error), observing each one's outcome."""
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.cancel()
        results = await asyncio.gather(*lanes, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.debug("topic %r: a lane ended with %r", self.topic, result)

    async def _settle(self) -> None:
        """Drop acknowledged batches from the front of ``pending``; wait for the oldest
        only when too many are in flight, so pacing rarely stalls."""
        self._dropacknowledged()
        while len(self.pending) > _MAX_IN_FLIGHT:
            await self._wait(self._oldest_delivery())
            self._dropacknowledged()

    def _dropacknowledged(self) -> None:
        """Forget the acknowledged batches at the front of ``pending``; raise a failed
        one's error (the batch stays, for :meth:`undelivered`)."""
        while self.pending and self._oldest_delivery().done():
            self._oldest_delivery().result()
            self.pending.popleft()

    def _oldest_delivery(self) -> asyncio.Future[Any]:
        delivery = self.pending[0].delivery
        assert delivery is not None, "a pending batch was handed over"
        return delivery


def acknowledged(batch: _Batch) -> bool:
    delivery = batch.delivery
    return delivery is not None and delivery.done() and delivery.exception() is None
