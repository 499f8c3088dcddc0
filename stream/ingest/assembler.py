"""Bytes of one stream, in order and without loss (a WebSocket) → fixed-length frames.

The TCP-borne protocols need no jitter buffer: media arrives in order, so frames are
cut every ``chunk_ms`` from the concatenated payloads, and the last (possibly short)
frame carries ``eos``. ``capture_us`` is anchored at the first media's arrival plus
the offset of the frame's first sample, as for RTP. Every frame carries the stream's
``attributes`` (custom parameters), so they reach the events whichever frame opens the
stream on the worker, and the call session's ``instance``, so a call id used again is a
new stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.produce.frames import chunk_samples
from stream.wire.frame import Attributes, AudioFrame, Encoding


@dataclass(slots=True)
class ChunkAssembler:
    """Cuts one stream's payload bytes into frames of ``chunk_ms``."""

    stream_id: str
    encoding: Encoding
    sr: int
    channels: int
    chunk_ms: float
    anchor_us: int
    attributes: Attributes = ()
    instance: str | None = None  # the call session's instance header
    seq: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _step: int = 0

    def __post_init__(self) -> None:
        self._step = (
            chunk_samples(self.sr, self.chunk_ms) * self.encoding.sample_width * self.channels
        )

    def feed(self, data: bytes) -> list[AudioFrame]:
        """Append ``data``; return the frames it completes."""
        self._buf += data
        out = []
        while len(self._buf) >= self._step:
            out.append(self._frame(bytes(self._buf[: self._step]), eos=False))
            del self._buf[: self._step]
        return out

    def close(self) -> AudioFrame:
        """The end-of-stream frame: what is left (whole samples), possibly nothing."""
        block = self.encoding.sample_width * self.channels
        usable = len(self._buf) - len(self._buf) % block
        frame = self._frame(bytes(self._buf[:usable]), eos=True)
        self._buf.clear()
        return frame

    def _frame(self, payload: bytes, *, eos: bool) -> AudioFrame:
        block = self.encoding.sample_width * self.channels
        offset = self.seq * (self._step // block)
        frame = AudioFrame(
            stream_id=self.stream_id,
            seq=self.seq,
            sample_rate=self.sr,
            encoding=self.encoding,
            channels=self.channels,
            capture_us=self.anchor_us + offset * 1_000_000 // self.sr,
            eos=eos,
            payload=payload,
            attributes=self.attributes,
            instance=self.instance,
        )
        self.seq += 1
        return frame
