"""Cutting one stream's samples into :class:`~stream.wire.AudioFrame` chunks.

The payload is encoded once and frames are slices of it, so the per-frame work is a
slice and a small dataclass. Arrays, encoded payloads and raw PCM read from a byte
stream (stdin) all come out as the same frames: ``seq`` counts chunks, ``capture_us``
is the start time plus the offset of the chunk's first sample, the last one is ``eos``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

import numpy.typing as npt

from stream.audio.convert import float32_to_payload
from stream.errors import ConfigError
from stream.wire.frame import AudioFrame, Encoding

log = logging.getLogger(__name__)


def now_us() -> int:
    """Wall-clock time in integer microseconds since the Unix epoch (``capture-us``)."""
    return time.time_ns() // 1000


def chunk_samples(sr: int, chunk_ms: float) -> int:
    """Samples per channel in a chunk of ``chunk_ms`` at ``sr`` (at least 1)."""
    if chunk_ms <= 0:
        raise ConfigError(f"chunk_ms must be positive, got {chunk_ms}")
    return max(1, round(sr * chunk_ms / 1000))


def frames_from_payload(
    payload: bytes,
    sr: int,
    *,
    stream_id: str,
    encoding: Encoding = Encoding.PCM_S16LE,
    channels: int = 1,
    chunk_ms: float = 100,
    start_us: int | None = None,
) -> Iterator[AudioFrame]:
    """Cut an already encoded payload into frames; the last one carries ``eos``.

    Frame ``seq`` covers samples ``[seq*k, (seq+1)*k)`` with ``k =
    chunk_samples(sr, chunk_ms)``; its ``capture_us`` is ``start_us`` plus the offset
    of its first sample. An empty payload gives one empty end-of-stream frame.
    """
    start = now_us() if start_us is None else start_us
    encoding = Encoding(encoding)
    step = chunk_samples(sr, chunk_ms)
    block = encoding.sample_width * channels
    step_bytes = step * block
    total = len(payload) - len(payload) % block
    n_frames = max(1, -(-total // step_bytes))
    for seq in range(n_frames):
        offset = seq * step_bytes
        yield AudioFrame(
            stream_id=stream_id,
            seq=seq,
            sample_rate=sr,
            encoding=encoding,
            channels=channels,
            capture_us=start + (seq * step * 1_000_000) // sr,
            eos=seq == n_frames - 1,
            payload=payload[offset : min(offset + step_bytes, total)],
        )


def frames_from_array(
    samples: npt.ArrayLike,
    sr: int,
    *,
    stream_id: str,
    encoding: Encoding = Encoding.PCM_S16LE,
    chunk_ms: float = 100,
    start_us: int | None = None,
) -> Iterator[AudioFrame]:
    """Frames of float32 mono ``samples`` ``[shape=(n,)]`` at ``sr``, encoded as ``encoding``.

    No resampling: ``sr`` is both the samples' rate and the frames' rate (use
    :func:`stream.audio.load_audio` with ``sr=`` or :class:`StreamResampler` first).
    """
    payload = float32_to_payload(samples, encoding)
    return frames_from_payload(
        payload, sr, stream_id=stream_id, encoding=encoding, chunk_ms=chunk_ms, start_us=start_us
    )


def due_us(frame: AudioFrame) -> int:
    """When a real source would have the whole chunk: its last sample's capture time."""
    return frame.capture_us + (frame.n_samples * 1_000_000) // frame.sample_rate


async def frames_from_reader(
    reader: BinaryIO,
    sr: int,
    *,
    stream_id: str,
    encoding: Encoding,
    channels: int = 1,
    chunk_ms: float = 100,
    start_us: int | None = None,
) -> AsyncIterator[AudioFrame]:
    """Frames of raw interleaved samples read from ``reader`` (already in ``encoding``).

    Reads happen in a worker thread, so a live source (``arecord | tympan produce -``)
    never blocks the producer's event loop. The chunk read before end-of-file carries
    ``eos``; a trailing partial sample is dropped with a warning.
    """
    loop = asyncio.get_running_loop()
    start = now_us() if start_us is None else start_us
    step = chunk_samples(sr, chunk_ms)
    block = Encoding(encoding).sample_width * channels
    step_bytes = step * block
    current = await loop.run_in_executor(None, reader.read, step_bytes)
    for seq in itertools.count():
        following = await loop.run_in_executor(None, reader.read, step_bytes) if current else b""
        last = not following
        usable = len(current) - len(current) % block
        if usable != len(current):
            log.warning(
                "stream %r: dropping %d trailing byte(s) that do not make a whole sample",
                stream_id,
                len(current) - usable,
            )
        yield AudioFrame(
            stream_id=stream_id,
            seq=seq,
            sample_rate=sr,
            encoding=Encoding(encoding),
            channels=channels,
            capture_us=start + (seq * step * 1_000_000) // sr,
            eos=last,
            payload=current[:usable],
        )
        if last:
            return
        current = following
