"""Frames → Kafka: the send order of many streams and one batching aiokafka producer.

:func:`interleave` merges many streams into one send order: by the wall-clock time
each chunk is complete (real time) or round-robin (as fast as possible). It is a
single heap over the streams' iterators, not one task per stream, so a thousand
concurrent calls cost a heap push and pop per frame. :func:`produce_frames` sends any
iterable of frames with one producer, pacing them in real time if asked, and returns
:class:`ProduceStats` for the run's summary line.
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

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from stream.errors import BrokerError
from stream.kafka_client import KafkaClientConfig
from stream.produce.frames import due_us, now_us
from stream.wire.frame import AudioFrame, encode_frame

log = logging.getLogger(__name__)

_SETTLE_EVERY = 1000  # delivered records are checked every this many frames
_MAX_IN_FLIGHT = 50_000  # beyond this, wait for delivery (backpressure)
_EARLY_US = 1000  # frames due within this many µs are sent without sleeping


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
    """aiokafka producer settings for many small records.

    ``linger_ms`` lets records of many streams share a batch (one request per
    partition per few ms instead of one per frame) at the cost of that much latency.
    """

    linger_ms: int = 5
    max_batch_size: int = 512 * 1024
    max_request_size: int = 4 * 1024 * 1024
    acks: int | str = 1
    compression_type: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "linger_ms": self.linger_ms,
            "max_batch_size": self.max_batch_size,
            "max_request_size": self.max_request_size,
            "acks": self.acks,
            "compression_type": self.compression_type,
        }


@dataclass(frozen=True, slots=True)
class ProduceStats:
    """What a produce run sent."""

    frames: int
    payload_bytes: int
    streams: int
    seconds: float
    max_lag_ms: float = 0.0
    """Real time only: the most a frame was sent after it was due (the loop fell behind)."""

    def summary(self, topic: str) -> str:
        return (
            f"produced {self.frames} frames ({_human_bytes(self.payload_bytes)}) in "
            f"{self.streams} stream(s) to {topic!r} in {self.seconds:.2f} s"
            + (f" (max lag {self.max_lag_ms:.1f} ms)" if self.max_lag_ms else "")
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

    Parameters
    ----------
    client: a :class:`KafkaClientConfig` or a bootstrap string (``"host:port"``).
    topic: the audio topic (``Topics().audio``).
    frames: in send order (see :func:`interleave`); a sync or async iterable.
    realtime: sleep until each frame is due (``capture_us`` + its duration).
    restamp: set ``capture_us`` to the send time; default ``not realtime`` (the
        "as fast as possible" mode has no meaningful capture times of its own).
    tuning: producer batching settings.
    on_frame: called after each frame is handed to the producer (progress bars).

    Raises
    ------
    BrokerError
        The broker cannot be reached or refuses records; the message names it.
    FrameError
        A frame that is not valid on the wire (see :func:`encode_frame`).
    """
    config = KafkaClientConfig(bootstrap_servers=client) if isinstance(client, str) else client
    restamp = (not realtime) if restamp is None else restamp
    producer = AIOKafkaProducer(**config.aiokafka_kwargs(), **(tuning or ProducerTuning()).kwargs())
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        raise BrokerError(
            f"cannot connect a producer to {config.bootstrap_servers}: {exc!r} "
            f"(is the broker up? scripts/kafka.sh up)"
        ) from exc
    try:
        return await _send_all(producer, topic, _aiter(frames), realtime, restamp, on_frame)
    except KafkaError as exc:
        raise BrokerError(
            f"sending to topic {topic!r} on {config.bootstrap_servers} failed: {exc!r}"
        ) from exc
    finally:
        await producer.stop()


async def _send_all(
    producer: AIOKafkaProducer,
    topic: str,
    frames: AsyncIterator[AudioFrame],
    realtime: bool,
    restamp: bool,
    on_frame: Callable[[AudioFrame], None] | None,
) -> ProduceStats:
    started = time.perf_counter()
    pending: deque[asyncio.Future[Any]] = deque()
    # Kafka's default (murmur2) partitioning, computed once per stream rather than per
    # record: the same partition a Java or Go producer picks for the same key.
    partitioner = DefaultPartitioner()
    partitions = sorted(await producer.partitions_for(topic))
    partition_of: dict[str, int] = {}
    unfinished: dict[str, AudioFrame] = {}  # last frame of each stream not yet at EOS
    n_frames = n_bytes = 0
    max_lag_us = 0
    try:
        async for frame in frames:
            if realtime:
                lag_us = now_us() - due_us(frame)
                if lag_us < -_EARLY_US:
                    await asyncio.sleep(-lag_us / 1e6)
                else:
                    max_lag_us = max(max_lag_us, lag_us)
            key, value, headers = encode_frame(frame, capture_us=now_us() if restamp else None)
            partition = partition_of.get(frame.stream_id)
            if partition is None:
                partition = partition_of[frame.stream_id] = partitioner(key, partitions, partitions)
            pending.append(
                await producer.send(
                    topic, value=value, key=key, partition=partition, headers=headers
                )
            )
            if frame.eos:
                unfinished.pop(frame.stream_id, None)
            else:
                unfinished[frame.stream_id] = frame
            n_frames += 1
            n_bytes += len(value)
            if on_frame is not None:
                on_frame(frame)
            if n_frames % _SETTLE_EVERY == 0:
                await _settle(pending)
    except asyncio.CancelledError:  # Ctrl-C: end the streams cleanly before leaving
        await _end_streams(producer, topic, list(unfinished.values()))
        raise
    await producer.flush()
    await asyncio.gather(*pending)
    return ProduceStats(
        frames=n_frames,
        payload_bytes=n_bytes,
        streams=len(partition_of),
        seconds=time.perf_counter() - started,
        max_lag_ms=max_lag_us / 1000,
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


async def _settle(pending: deque[asyncio.Future[Any]]) -> None:
    """Drop delivered records from the front of ``pending`` (raising a failed one's error);
    wait for the oldest only when too many are in flight, so pacing rarely stalls."""
    while pending and pending[0].done():
        pending.popleft().result()
    while len(pending) > _MAX_IN_FLIGHT:
        await pending.popleft()


async def _aiter(
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame],
) -> AsyncIterator[AudioFrame]:
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield frame
    else:
        for frame in frames:
            yield frame
