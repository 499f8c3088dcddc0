"""Frames → Kafka: the send order of many streams and one batching aiokafka producer.

:func:`interleave` merges many streams into one send order: by the wall-clock time
each chunk is complete (real time) or round-robin (as fast as possible). It is a
single heap over the streams' iterators, not one task per stream, so a thousand
concurrent calls cost a heap push and pop per frame. :func:`produce_frames` sends any
iterable of frames with one producer, pacing them in real time if asked, and returns
:class:`ProduceStats` for the run's summary line (send-lag percentiles included).

Per-frame work is kept small because one process plays thousands of calls: payloads
are encoded once (frames are slices), the partition is computed once per stream, and
records are appended to one aiokafka ``BatchBuilder`` per partition and handed over
with one ``send_batch`` per partition per round, with no per-record future or await.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from stream.errors import BrokerError
from stream.kafka.config import KafkaClientConfig, broker_failure
from stream.produce.frames import due_us, now_us
from stream.wire.frame import AudioFrame, encode_frame

log = logging.getLogger(__name__)

_ROUND_FRAMES = 1000  # the most frames gathered before they are handed over
_MAX_IN_FLIGHT = 2000  # batches handed over but not delivered; beyond it, wait (backpressure)
_MAX_QUEUED = 16  # full batches waiting for their lane, all partitions; beyond it, wait
_STOP_S = 10.0  # the most a producer's close may take once its run has ended
_NAMED_IN_MESSAGE = 20  # streams a DeliveryError's message names (every one is logged)


def interleave(streams: Sequence[Iterable[AudioFrame]], *, realtime: bool) -> Iterator[AudioFrame]:
    """Merge many streams' frames into one send order.

    ``realtime``: by the time each chunk is complete (``capture_us`` + duration), a
    lazy heap merge; otherwise round-robin, one frame per stream in turn.
    """
    if realtime:
        return heapq.merge(*streams, key=due_us)
    return _round_robin(streams)


def _round_robin(streams: Sequence[Iterable[AudioFrame]]) -> Iterator[AudioFrame]:
    active = deque(iter(s) for s in streams)
    while active:
        it = active.popleft()
        frame = next(it, None)
        if frame is not None:
            yield frame
            active.append(it)


@dataclass(frozen=True, slots=True)
class ProducerTuning:
    """Producer settings for many small records.

    ``linger_ms`` is how long a due frame may wait so that frames of many streams
    share one batch per partition: in real time, frames that fall due within it are
    gathered and sent together (the send lag it costs is at most that); as fast as
    possible, it is aiokafka's ``linger_ms``. 10 ms rather than 2: at 1,000 real-time
    streams it cut the producer's CPU 0.31 -> 0.23 core, the broker's 0.28 -> 0.20
    and the worker's cost per stream ~9 % (fewer, larger record batches to fetch
    and parse), and the end-to-end p99 went down, not up (benchmarks/RESULTS.md).

    ``acks="all"`` with idempotence: a frame is acknowledged once every in-sync
    replica holds it (with ``min.insync.replicas=2`` on a cluster, two brokers), and a
    retry after a leader change never writes it twice or out of order. On one broker
    it costs nothing more than ``acks=1``.

    ``delivery_timeout_s`` bounds how long a frame may stay unacknowledged (Kafka's
    ``delivery.timeout.ms``, same default). aiokafka's idempotent producer retries a
    batch for ever (it never expires one), so without this bound a run whose partition
    has no usable leader -- two of three brokers down under ``min.insync.replicas=2``
    -- would wait silently for ever; past it the run ends with a
    :class:`DeliveryError` naming every stream whose frames were not acknowledged.
    A leader change (seconds) is well inside it: retries ride through it.

    ``request_timeout_ms``: how long one request may go unanswered before it is sent
    again (after a metadata refresh). 10 s rather than aiokafka's 40: a *frozen* leader
    (SIGSTOP, a stalled VM) keeps its connections open, and the controller fences it
    after ``broker.session.timeout.ms`` (9 s) and elects another; with 40 s the frames of
    its partitions waited for the old leader to thaw (a 32 s freeze on the local cluster:
    the producer ended after the freeze), with 10 s they go to the new leader (the same
    freeze: every frame delivered when the 16 s calls ended). aiokafka also gives up
    handing a batch over after this long when the partition's previous batch is still
    unacknowledged; the producer offers it again until the delivery timeout.
    """

    linger_ms: int = 10
    max_batch_size: int = 512 * 1024
    max_request_size: int = 4 * 1024 * 1024
    acks: int | str = "all"
    enable_idempotence: bool = True
    compression_type: str | None = None
    delivery_timeout_s: float = 120.0
    request_timeout_ms: int = 10_000

    def kwargs(self) -> dict[str, Any]:
        return {
            "linger_ms": self.linger_ms,
            "max_batch_size": self.max_batch_size,
            "max_request_size": self.max_request_size,
            "acks": self.acks,
            "enable_idempotence": self.enable_idempotence,
            "compression_type": self.compression_type,
            "request_timeout_ms": self.request_timeout_ms,
        }


@dataclass(frozen=True, slots=True)
class ProduceStats:
    """What a produce run sent, and how late (real time only).

    The send lag of a frame is the time it was handed to the producer minus the time
    it was due (``capture_us`` + its duration: when a live source would have it).
    """

    frames: int
    payload_bytes: int
    streams: int
    seconds: float
    max_lag_ms: float = 0.0
    """Real time only: the most a frame was sent after it was due (the loop fell behind)."""
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0

    def summary(self, topic: str) -> str:
        lag = (
            f" (send lag p50 {self.lag_p50_ms:.1f} ms, p99 {self.lag_p99_ms:.1f} ms, "
            f"max {self.max_lag_ms:.1f} ms)"
            if self.max_lag_ms
            else ""
        )
        return (
            f"produced {self.frames} frames ({_human_bytes(self.payload_bytes)}) in "
            f"{self.streams} stream(s) to {topic!r} in {self.seconds:.2f} s" + lag
        )

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dictionary (``tympan produce --json``)."""
        return {
            "frames": self.frames,
            "payload_bytes": self.payload_bytes,
            "streams": self.streams,
            "seconds": round(self.seconds, 3),
            "send_lag_p50_ms": round(self.lag_p50_ms, 3),
            "send_lag_p99_ms": round(self.lag_p99_ms, 3),
            "send_lag_max_ms": round(self.max_lag_ms, 3),
        }


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


class DeliveryError(BrokerError):
    """A produce run ended with frames that no broker acknowledged.

    ``undelivered`` names each stream, its partition, how many frames and which seqs;
    the message names the first :data:`_NAMED_IN_MESSAGE` of them and the cause.
    """

    def __init__(self, topic: str, cause: str, undelivered: Sequence[Undelivered]) -> None:
        self.topic = topic
        self.cause = cause
        self.undelivered = tuple(undelivered)
        frames = sum(u.frames for u in self.undelivered)
        named = "; ".join(u.sentence(topic) for u in self.undelivered[:_NAMED_IN_MESSAGE])
        more = len(self.undelivered) - _NAMED_IN_MESSAGE
        super().__init__(
            f"{frames} frame(s) of {len(self.undelivered)} stream(s) were not delivered to "
            f"topic {topic!r}: {cause}"
            + (f": {named}" if named else "")
            + (f"; and {more} more stream(s)" if more > 0 else "")
        )


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


async def produce_frames(
    client: KafkaClientConfig | str,
    topic: str,
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame],
    *,
    realtime: bool = False,
    restamp: bool | None = None,
    tuning: ProducerTuning | None = None,
    on_frame: Callable[[AudioFrame], None] | None = None,
) -> ProduceStats:
    """Send ``frames`` to ``topic``, keyed by stream id, and wait until all are delivered.

    Frames go out as one batch per partition per round (``send_batch``), not one
    ``send`` per record: a round is every frame that is due (real time) or up to
    ``_ROUND_FRAMES`` frames (as fast as possible).

    Parameters
    ----------
    client: a :class:`KafkaClientConfig` or a bootstrap string (``"host:port"``).
    topic: the audio topic (``Topics().audio``).
    frames: in send order (see :func:`interleave`); a sync or async iterable.
    realtime: send each frame once it is due (``capture_us`` + its duration).
    restamp: set ``capture_us`` to the send time; default ``not realtime`` (the
        "as fast as possible" mode has no meaningful capture times of its own).
    tuning: producer batching settings.
    on_frame: called after each frame is handed to the producer (progress bars).

    Raises
    ------
    DeliveryError
        Frames were not acknowledged: a batch failed, or stayed unacknowledged past
        ``tuning.delivery_timeout_s``. It names every such stream (each is also
        logged), its partition and seqs. A leader change within the timeout is not
        an error: aiokafka retries the batch on the new leader.
    BrokerError
        The broker cannot be reached; the message names it.
    FrameError
        A frame that is not valid on the wire (see :func:`encode_frame`).
    """
    config = KafkaClientConfig(bootstrap_servers=client) if isinstance(client, str) else client
    restamp = (not realtime) if restamp is None else restamp
    tuning = tuning or ProducerTuning()
    producer = AIOKafkaProducer(**config.aiokafka_kwargs(), **tuning.kwargs())
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        raise BrokerError(
            f"cannot connect a producer: {broker_failure(exc, config.bootstrap_servers)}"
        ) from exc
    sender: _BatchSender | None = None
    try:
        partitions = sorted(await producer.partitions_for(topic))
        sender = _BatchSender(producer, topic, partitions, tuning.delivery_timeout_s)
        pacing = _Pacing(tuning.linger_ms * 1000) if realtime else None
        source: AsyncIterator[AudioFrame | None] = _aiter(frames)
        live_s = None
        if isinstance(frames, AsyncIterable) and pacing is None:
            # a live source (ingest): what it gave goes out as soon as it pauses, and
            # at least every linger_ms while it keeps giving
            live_s = tuning.linger_ms / 1000
            source = _until_quiet(_aiter(frames), live_s)
        return await _send_all(sender, source, pacing, restamp, on_frame, live_s)
    except (KafkaError, TimeoutError) as exc:
        cause = (
            str(exc)
            if isinstance(exc, TimeoutError)
            else broker_failure(exc, config.bootstrap_servers)
        )
        if sender is None:
            raise BrokerError(f"sending to topic {topic!r} failed: {cause}") from exc
        raise undelivered_error(topic, cause, sender.undelivered()) from exc
    finally:
        if sender is not None:
            await sender.close()
        await _stop(producer, topic)


def undelivered_error(topic: str, cause: str, undelivered: Sequence[Undelivered]) -> DeliveryError:
    """The error that ends a run with ``undelivered`` frames; each stream is logged."""
    for one in undelivered:
        log.error("%s (%s)", one.sentence(topic), cause)
    return DeliveryError(topic, cause, undelivered)


async def _stop(producer: AIOKafkaProducer, topic: str) -> None:
    """Close ``producer``, waiting at most ``_STOP_S``: aiokafka's close waits until every
    batch it holds is acknowledged, which never happens when no broker takes them."""
    try:
        await asyncio.wait_for(producer.stop(), _STOP_S)
    except TimeoutError:
        log.warning(
            "the producer of topic %r did not close within %g s: the batches it still held "
            "(reported as not delivered) are abandoned",
            topic,
            _STOP_S,
        )


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


class _BatchSender:
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
            self._drop_acknowledged()

    def undelivered(self) -> list[Undelivered]:
        """Every stream with frames not acknowledged (yet), by stream id."""
        batches = [b for b in self.pending if not _acknowledged(b)]
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
        ages = [b.created_s for b in self.pending if not _acknowledged(b)]
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
        self._drop_acknowledged()
        while len(self.pending) > _MAX_IN_FLIGHT:
            await self._wait(self._oldest_delivery())
            self._drop_acknowledged()

    def _drop_acknowledged(self) -> None:
        """Forget the acknowledged batches at the front of ``pending``; raise a failed
        one's error (the batch stays, for :meth:`undelivered`)."""
        while self.pending and self._oldest_delivery().done():
            self._oldest_delivery().result()
            self.pending.popleft()

    def _oldest_delivery(self) -> asyncio.Future[Any]:
        delivery = self.pending[0].delivery
        assert delivery is not None, "a pending batch was handed over"
        return delivery


def _acknowledged(batch: _Batch) -> bool:
    delivery = batch.delivery
    return delivery is not None and delivery.done() and delivery.exception() is None


class _Pacing:
    """Real-time pacing: when to send, and each frame's send lag.

    A frame is sent once due; frames that fall due within ``linger_us`` of the first
    waiting one share its round, so a round costs one batch per partition however many
    streams play.
    """

    def __init__(self, linger_us: int) -> None:
        self.linger_us = max(0, linger_us)
        self._due: list[int] = []  # of this round's frames
        self.lags_us: list[int] = []

    async def wait_for(self, frame: AudioFrame, sender: _BatchSender) -> None:
        """Return when ``frame`` may be sent; flush the round before sleeping."""
        due = due_us(frame)
        now = now_us()
        if due > now:
            await self.send_round(sender)
            wake = max(due, now + self.linger_us)
            await asyncio.sleep((wake - now) / 1e6)
        self._due.append(due)

    async def send_round(self, sender: _BatchSender) -> None:
        await sender.flush()
        now = now_us()
        self.lags_us.extend(now - due for due in self._due)
        self._due.clear()

    def percentiles_ms(self) -> tuple[float, float, float]:
        """Send lag p50, p99 and max in ms (0 when nothing was sent)."""
        if not self.lags_us:
            return 0.0, 0.0, 0.0
        lags = np.maximum(np.asarray(self.lags_us, dtype=np.float64), 0) / 1000
        p50, p99 = np.percentile(lags, [50, 99])
        return float(p50), float(p99), float(lags.max())


async def _send_all(
    sender: _BatchSender,
    frames: AsyncIterator[AudioFrame | None],
    pacing: _Pacing | None,
    restamp: bool,
    on_frame: Callable[[AudioFrame], None] | None,
    live_s: float | None = None,
) -> ProduceStats:
    started = time.perf_counter()
    handed_s = started  # when gathered frames were last handed over (live sources)
    unfinished: dict[str, AudioFrame] = {}  # last frame of each stream not yet at EOS
    n_frames = n_bytes = 0
    try:
        async for frame in frames:
            if frame is None:  # the live source paused: hand over what it gave
                await sender.flush()
                handed_s = time.perf_counter()
                continue
            if pacing is not None:
                await pacing.wait_for(frame, sender)
            key, value, headers = encode_frame(frame, capture_us=now_us() if restamp else None)
            sender.add(key, value, headers, frame.seq)
            if frame.eos:
                unfinished.pop(frame.stream_id, None)
            else:
                unfinished[frame.stream_id] = frame
            n_frames += 1
            n_bytes += len(value)
            if on_frame is not None:
                on_frame(frame)
            if n_frames % _ROUND_FRAMES == 0:  # also when late: hand over while catching up
                await (sender.flush() if pacing is None else pacing.send_round(sender))
            elif live_s is not None and time.perf_counter() - handed_s >= live_s:
                await sender.flush()
                handed_s = time.perf_counter()
    except asyncio.CancelledError:  # Ctrl-C: end the streams cleanly before leaving
        await sender.delivered()  # the gathered frames first, so each EOS comes last
        await asyncio.wait_for(
            _end_streams(sender.producer, sender.topic, list(unfinished.values())),
            sender.delivery_timeout_s,
        )
        raise
    if pacing is not None:
        await pacing.send_round(sender)
    await sender.delivered()
    p50, p99, worst = pacing.percentiles_ms() if pacing is not None else (0.0, 0.0, 0.0)
    return ProduceStats(
        frames=n_frames,
        payload_bytes=n_bytes,
        streams=len(sender.partition_of),
        seconds=time.perf_counter() - started,
        max_lag_ms=worst,
        lag_p50_ms=p50,
        lag_p99_ms=p99,
    )


async def _end_streams(producer: AIOKafkaProducer, topic: str, last: list[AudioFrame]) -> None:
    """Send an empty end-of-stream frame after each of ``last`` (interrupted streams).

    Without it the worker would hold those streams' state until its idle timeout.
    """
    if not last:
        return
    log.warning("interrupted: sending end-of-stream for %d unfinished stream(s)", len(last))
    for frame in last:
        eos = replace(frame, seq=frame.seq + 1, eos=True, payload=b"", capture_us=due_us(frame))
        key, value, headers = encode_frame(eos)
        await producer.send(topic, value=value, key=key, headers=headers)
    await producer.flush()


async def _until_quiet(
    frames: AsyncIterator[AudioFrame], quiet_s: float
) -> AsyncIterator[AudioFrame | None]:
    """``frames``, with one ``None`` each time the source has had nothing for ``quiet_s``.

    A live source (``tympan ingest``) yields frames as calls send them; without this
    its frames would wait in an open batch until ``_ROUND_FRAMES`` of them gathered.
    The pending read is kept across the pause (never cancelled), so nothing is lost.
    """
    pending: asyncio.Future[AudioFrame] | None = None
    quiet: float | None = quiet_s
    while True:
        if pending is None:
            pending = asyncio.ensure_future(frames.__anext__())
        done, _ = await asyncio.wait({pending}, timeout=quiet)
        if not done:
            quiet = None  # one flush per pause; then wait for the next frame
            yield None
            continue
        try:
            frame = pending.result()
        except StopAsyncIteration:
            return
        pending, quiet = None, quiet_s
        yield frame


async def _aiter(
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame],
) -> AsyncIterator[AudioFrame]:
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield frame
    else:
        for frame in frames:
            yield frame
