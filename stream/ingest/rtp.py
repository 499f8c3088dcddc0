"""RTP and RTCP packets (RFC 3550), parsed from untrusted datagrams.

:func:`parse_rtp` checks what RFC 3550 §5.1 fixes (version 2, the CSRC list, the
header extension and the padding fit in the datagram) and returns the payload as a
zero-copy ``memoryview``; :func:`rtcp_bye_ssrcs` walks a compound RTCP packet and
returns the SSRCs that said goodbye. RTP and RTCP may share a port (RFC 5761):
:func:`is_rtcp` tells them apart by the second byte (RTCP packet types 192-223).

The work a datagram costs is bounded by the datagram and by two caps: at most
:data:`MAX_RTCP_PACKETS` sub-packets are walked and at most :data:`MAX_BYE_SSRCS` SSRCs
taken from one compound packet (a sender ends its own SSRC and, as a mixer, a few
more: RFC 3550 fits 31 in one BYE); a datagram past either cap is refused whole
(``rtcp_over_limit``), so a 64 KB BYE flood costs one short walk, not a scan per SSRC.

Both raise only :class:`~stream.ingest.errors.PacketError`, whose ``reason`` is one
of ``short_packet``, ``bad_version``, ``bad_padding``, ``bad_extension``,
``bad_csrc``, ``bad_rtcp`` and ``rtcp_over_limit``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stream.ingest.errors import PacketError

RTP_VERSION = 2
_FIXED = 12
_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
RTCP_BYE = 203
_RTCP_TYPES = range(192, 224)
MAX_RTCP_PACKETS = 32
"""Sub-packets walked in one compound RTCP datagram (SR/RR, SDES, BYE: usually 2-3)."""
MAX_BYE_SSRCS = 64
"""SSRCs one RTCP datagram may say BYE for (a BYE packet holds at most 31)."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet.

    Attributes
    ----------
    payload_type: 7-bit PT (0 = PCMU, 8 = PCMA, 96-127 dynamic).
    marker: the M bit (start of a talk spurt for audio).
    seq: 16-bit sequence number (wraps at 65536).
    timestamp: 32-bit RTP timestamp in clock-rate units (wraps at 2**32).
    ssrc: the synchronisation source: one call leg.
    csrc: contributing sources (a mixer's inputs).
    payload: the media bytes, padding removed (a view of the datagram).
    """

    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...]
    payload: memoryview


def is_rtcp(data: bytes) -> bool:
    """An RTCP packet rather than RTP (RFC 5761 §4: packet type 192-223)."""
    return len(data) >= 2 and data[1] in _RTCP_TYPES


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram.

    Raises
    ------
    PacketError
        Too short, not version 2, or a CSRC list, header extension or padding that
        does not fit in ``len(data)`` bytes; the message gives the sizes.
    """
    n = len(data)
    if n < _FIXED:
        raise PacketError("short_packet", f"RTP datagram of {n} bytes is shorter than 12")
    b0, b1, seq, timestamp, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise PacketError("bad_version", f"RTP version {b0 >> 6} is not 2")
    cc = b0 & 0x0F
    offset = _FIXED + 4 * cc
    if offset > n:
        raise PacketError("bad_csrc", f"{cc} CSRC(s) need {offset} bytes; datagram has {n}")
    csrc = struct.unpack_from(f"!{cc}I", data, _FIXED) if cc else ()
    if b0 & 0x10:
        offset = _skip_extension(data, offset)
    end = n
    if b0 & 0x20:
        pad = data[n - 1]
        if pad == 0 or offset + pad > n:
            raise PacketError(
                "bad_padding", f"padding of {pad} bytes does not fit after a {offset}-byte header"
            )
        end = n - pad
    return RtpPacket(
        payload_type=b1 & 0x7F,
        marker=bool(b1 & 0x80),
        seq=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        csrc=tuple(csrc),
        payload=memoryview(data)[offset:end],
    )


def _skip_extension(data: bytes, offset: int) -> int:
    if offset + 4 > len(data):
        raise PacketError(
            "bad_extension", f"header extension at byte {offset} runs past {len(data)} bytes"
        )
    words: int = struct.unpack_from("!H", data, offset + 2)[0]
    end = offset + 4 + 4 * words
    if end > len(data):
        raise PacketError(
            "bad_extension",
            f"header extension of {words} words at byte {offset} runs past {len(data)} bytes",
        )
    return end


def rtcp_bye_ssrcs(data: bytes) -> tuple[int, ...]:
    """SSRCs that a (compound) RTCP packet says BYE for; empty when there is no BYE.

    At most :data:`MAX_RTCP_PACKETS` sub-packets are read and :data:`MAX_BYE_SSRCS`
    SSRCs returned, so the cost is bounded whatever the datagram holds.

    Raises
    ------
    PacketError
        ``bad_rtcp``: a sub-packet's version is not 2 or its length runs past the
        datagram; ``rtcp_over_limit``: more sub-packets or BYE SSRCs than the caps.
    """
    out: list[int] = []
    offset, n, walked = 0, len(data), 0
    while offset + 4 <= n:
        walked += 1
        if walked > MAX_RTCP_PACKETS:
            raise PacketError(
                "rtcp_over_limit",
                f"compound RTCP packet of {n} bytes has more than {MAX_RTCP_PACKETS} sub-packets",
            )
        b0, pt, words = _RTCP_HEADER.unpack_from(data, offset)
        end = offset + 4 * (words + 1)
        if b0 >> 6 != RTP_VERSION or end > n:
            raise PacketError(
                "bad_rtcp",
                f"RTCP sub-packet at byte {offset} (version {b0 >> 6}, {words} words) "
                f"does not fit in {n} bytes",
            )
        if pt == RTCP_BYE:
            count = min(b0 & 0x1F, words)
            if len(out) + count > MAX_BYE_SSRCS:
                raise PacketError(
                    "rtcp_over_limit",
                    f"compound RTCP packet of {n} bytes says BYE for more than "
                    f"{MAX_BYE_SSRCS} SSRCs",
                )
            out.extend(struct.unpack_from(f"!{count}I", data, offset + 4))
        offset = end
    return tuple(out)


def build_rtp(
    *,
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
    csrc: tuple[int, ...] = (),
    extension: bytes | None = None,
    padding: int = 0,
) -> bytes:
    """One RTP packet, the inverse of :func:`parse_rtp` (load generators, tests).

    ``extension`` is the extension's body (a multiple of 4 bytes, profile ``0xBEDE``);
    ``padding`` adds that many padding bytes (the last one holds the count).
    """
    b0 = (RTP_VERSION << 6) | len(csrc) | (0x10 if extension is not None else 0)
    b0 |= 0x20 if padding else 0
    out = bytearray(
        _HEADER.pack(b0, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp, ssrc)
    )
    out += struct.pack(f"!{len(csrc)}I", *csrc)
    if extension is not None:
        out += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return bytes(out)


def build_rtcp_bye(*ssrcs: int) -> bytes:
    """An RTCP BYE packet for ``ssrcs`` (what a sender ends a call with)."""
    return struct.pack(f"!BBH{len(ssrcs)}I", 0x80 | len(ssrcs), RTCP_BYE, len(ssrcs), *ssrcs)
