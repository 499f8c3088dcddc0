"""Frames of every ingested stream → one bounded queue → one Kafka producer.

The queue is the only place frames wait, and it is bounded: a WebSocket session
``await``\\ s :meth:`FrameSink.put`, so a slow broker stops the socket being read
(TCP pushes back to the sender); RTP cannot be paused, so :meth:`FrameSink.offer`
drops the frame when the queue is full and counts it (the seq gap becomes a flagged
gap on the worker). Sending reuses :func:`stream.produce.produce_frames` (the
batching producer, Kafka's partitioning, delivery checks), fed as an async iterable.

The queue is shared by every call, and the producer raises on a frame that is not
valid on the wire, which would end every call. So a frame is checked against the
wire format (:func:`~stream.wire.frame.encode_frame`, the very check the producer
runs) *before* it is queued: :meth:`FrameSink.put` and :meth:`FrameSink.offer` raise
:class:`~stream.ingest.errors.PacketError` (``bad_frame``) to the one call that made
it, and the producer only ever sees frames that passed (encoding is deterministic,
and frames are sent with the capture times they were checked with).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from stream.ingest.errors import PacketError
from stream.ingest.metrics import IngestMetrics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.lanes import Undelivered
from stream.kafka.producer import (
    DeliveryError,
    ProducerTuning,
    ProduceStats,
    produce_frames,
    undelivered_error,
)
from stream.produce.frames import now_us
from stream.wire.frame import AudioFrame, encode_frame

_DONE = None


def check_frame(frame: AudioFrame) -> None:
    """Refuse a frame the producer would refuse, before it reaches the shared queue.

    Raises
    ------
    PacketError
        ``bad_frame``, with the wire format's reason and message (any exception the
        encoder raises, a ``FrameError`` or otherwise, becomes this one).
    """
    try:
        encode_frame(frame)
    except Exception as exc:
        reason = getattr(exc, "reason", type(exc).__name__)
        raise PacketError(
            "bad_frame",
            f"stream {frame.stream_id[:60]!r} seq {frame.seq}: not valid on the wire "
            f"({reason}): {exc}",
        ) from exc


class FrameSink:
    """A bounded queue of frames drained by :meth:`run` into the audio topic."""

    def __init__(self, metrics: IngestMetrics, *, max_frames: int = 10_000) -> None:
        self._queue: asyncio.Queue[tuple[AudioFrame, int] | None] = asyncio.Queue(max_frames)
        self._metrics = metrics
        self._closed = False
        self._queued_us = 0  # when the frame being sent was queued

    def offer(self, frame: AudioFrame) -> bool:
        """Queue ``frame`` without waiting; ``False`` (and counted) when the queue is full.

        Raises
        ------
        PacketError
            ``bad_frame``: ``frame`` is not valid on the wire (see :func:`check_frame`).
        """
        check_frame(frame)
        try:
            self._queue.put_nowait((frame, now_us()))
        except asyncio.QueueFull:
            self._metrics.frames_dropped.inc()
            return False
        return True

    async def put(self, frame: AudioFrame) -> None:
        """Queue ``frame``, waiting while the queue is full (backpressure).

        Raises
        ------
        PacketError
            ``bad_frame``: ``frame`` is not valid on the wire (see :func:`check_frame`).
        """
        check_frame(frame)
        await self._queue.put((frame, now_us()))

    async def close(self) -> None:
        """No more frames: :meth:`run` returns once the queued ones are delivered."""
        if not self._closed:
            self._closed = True
            await self._queue.put(_DONE)

    async def _frames(self) -> AsyncIterator[AudioFrame]:
        while (item := await self._queue.get()) is not _DONE:
            frame, self._queued_us = item
            yield frame

    def _observe(self, frame: AudioFrame) -> None:
        self._metrics.added_latency_ms.observe((now_us() - self._queued_us) / 1000)

    async def run(
        self, client: KafkaClientConfig, topic: str, tuning: ProducerTuning | None = None
    ) -> ProduceStats:
        """Send queued frames until :meth:`close`; capture times are kept as stamped.

        Raises
        ------
        DeliveryError
            The producer gave up on frames (see :func:`produce_frames`); it also names
            the frames still queued here, which will never be sent, and every one of
            them is counted in ``tympan_ingest_frames_undelivered``.
        """
        try:
            return await produce_frames(
                client,
                topic,
                self._frames(),
                realtime=False,
                restamp=False,
                tuning=tuning,
                on_frame=self._observe,
            )
        except DeliveryError as exc:
            queued = self._abandon()
            every = (*exc.undelivered, *queued)
            self._metrics.frames_undelivered.inc(sum(u.frames for u in every))
            if not queued:
                raise
            undelivered_error(topic, exc.cause, queued)  # logs each stream
            raise DeliveryError(topic, exc.cause, every) from exc

    def _abandon(self) -> list[Undelivered]:
        """Empty the queue (the producer is gone): what it held, per stream."""
        held: dict[str, list[int]] = {}
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                continue
            frame = item[0]
            n = held.setdefault(frame.stream_id, [0, frame.seq, frame.seq])
            n[0] += 1
            n[1], n[2] = min(n[1], frame.seq), max(n[2], frame.seq)
        return [Undelivered(sid, -1, n, first, last) for sid, (n, first, last) in held.items()]
