"""RTP payload formats → wire encodings, in one registry (the shape of httpx's decoders).

G.711 goes on the audio topic as sent (``mulaw``/``alaw`` are wire encodings), so a
PCMU packet costs a copy and no decoding. L16 (RFC 3551 §4.5.11) is big-endian on
the line and little-endian on the wire: one vectorised numpy byte swap per packet.
A format converts a payload to wire bytes and knows the silence byte to fill holes
with. To add a codec (say Opus, which needs per-stream decoder state), add a class
with ``to_wire`` and put it in the table :func:`payload_formats` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from stream.errors import ConfigError
from stream.wire.frame import MAX_CHANNELS, MAX_RATE, MIN_RATE, Encoding

PT_PCMU = 0
PT_PCMA = 8
_DYNAMIC = range(96, 128)


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    """How the payload of one RTP payload type becomes wire samples.

    Attributes
    ----------
    name: the RTP encoding name (``PCMU``, ``PCMA``, ``L16``).
    encoding: the wire encoding of the converted bytes.
    sr: the RTP clock rate, which is the sample rate for these formats.
    channels: interleaved channels.
    """

    name: str
    encoding: Encoding
    sr: int
    channels: int = 1

    @property
    def block(self) -> int:
        """Bytes of one sample of every channel (one RTP timestamp tick)."""
        return self.encoding.sample_width * self.channels

    @property
    def silence(self) -> bytes:
        """One block of digital silence in the wire encoding (μ-law +0, A-law +8)."""
        byte = {Encoding.MULAW: b"\xff", Encoding.ALAW: b"\xd5"}.get(self.encoding, b"\x00")
        return byte * self.block

    def to_wire(self, payload: memoryview) -> bytes:
        """The payload as wire bytes (whole samples only: a trailing partial one is cut)."""
        usable = len(payload) - len(payload) % self.block
        if self.name == "L16":
            return np.frombuffer(payload[:usable], dtype=">i2").astype("<i2").tobytes()
        return bytes(payload[:usable])


PCMU = PayloadFormat("PCMU", Encoding.MULAW, 8000)
PCMA = PayloadFormat("PCMA", Encoding.ALAW, 8000)


def parse_l16(spec: str) -> tuple[int, PayloadFormat]:
    """``"PT:RATE[:CHANNELS]"`` (``--l16 96:16000``) → ``(pt, format)``.

    Raises
    ------
    ConfigError
        The payload type is not dynamic (96-127), or the rate or channels cannot go on
        the wire; the message quotes ``spec``.
    """
    parts = spec.split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--l16 {spec!r} is not PT:RATE[:CHANNELS], e.g. 96:16000")
    pt, sr = int(parts[0]), int(parts[1])
    channels = int(parts[2]) if len(parts) == 3 else 1
    if pt not in _DYNAMIC:
        raise ConfigError(f"--l16 {spec!r}: payload type {pt} is not dynamic (96-127)")
    if not MIN_RATE <= sr <= MAX_RATE:
        raise ConfigError(f"--l16 {spec!r}: rate {sr} Hz is outside {MIN_RATE}..{MAX_RATE}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ConfigError(f"--l16 {spec!r}: {channels} channels is outside 1..{MAX_CHANNELS}")
    return pt, PayloadFormat("L16", Encoding.PCM_S16LE, sr, channels)


def payload_formats(l16: Iterable[str] = ()) -> Mapping[int, PayloadFormat]:
    """The payload types ``tympan ingest rtp`` accepts: 0, 8 and each ``--l16`` spec."""
    table = {PT_PCMU: PCMU, PT_PCMA: PCMA}
    for spec in l16:
        pt, fmt = parse_l16(spec)
        table[pt] = fmt
    return table
