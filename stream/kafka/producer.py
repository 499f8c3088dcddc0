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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.errors import BrokerError
from stream.kafka.config import KafkaClientConfig, broker_failure
from stream.kafka.lanes import PartitionLanes, Undelivered
from stream.produce.frames import due_us, now_us
from stream.wire.frame import AudioFrame, encode_frame

log = logging.getLogger(__name__)

_ROUND_FRAMES = 1000  # the most frames gathered before they are handed over
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
    sender: PartitionLanes | None = None
    try:
        partitions = sorted(await producer.partitions_for(topic))
        sender = PartitionLanes(producer, topic, partitions, tuning.delivery_timeout_s)
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

    async def wait_for(self, frame: AudioFrame, sender: PartitionLanes) -> None:
        """Return when ``frame`` may be sent; flush the round before sleeping."""
        due = due_us(frame)
        now = now_us()
        if due > now:
            await self.send_round(sender)
            wake = max(due, now + self.linger_us)
            await asyncio.sleep((wake - now) / 1e6)
        self._due.append(due)

    async def send_round(self, sender: PartitionLanes) -> None:
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
    sender: PartitionLanes,
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
