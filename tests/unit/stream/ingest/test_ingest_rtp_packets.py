"""RTP/RTCP parsing (RFC 3550): every header feature, and no crash on any datagram."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.ingest.errors import PacketError
from stream.ingest.rtp import build_rtcp_bye, build_rtp, is_rtcp, parse_rtp, rtcp_bye_ssrcs


def test_round_trip_with_csrc_extension_padding_and_marker() -> None:
    data = build_rtp(
        payload_type=0,
        seq=65535,
        timestamp=2**32 - 1,
        ssrc=0xDEADBEEF,
        payload=b"\x7f" * 160,
        marker=True,
        csrc=(1, 2, 3),
        extension=b"\x10\xff\x00\x00",
        padding=4,
    )
    p = parse_rtp(data)
    assert (p.payload_type, p.marker, p.seq, p.timestamp, p.ssrc) == (
        0,
        True,
        65535,
        2**32 - 1,
        0xDEADBEEF,
    )
    assert p.csrc == (1, 2, 3)
    assert bytes(p.payload) == b"\x7f" * 160  # extension skipped, padding removed
    assert not is_rtcp(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00", "short_packet"),
        (b"\x40" + bytes(11), "bad_version"),
        (b"\x8f" + bytes(11), "bad_csrc"),  # 15 CSRCs announced, none present
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x09", "bad_extension"),
        (b"\xa0" + bytes(11) + b"\x00\x00\x00\x40", "bad_padding"),
        (b"\xa0" + bytes(11) + b"\x00\x00\x00\x00", "bad_padding"),
    ],
)
def test_malformed_datagrams_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PacketError) as info:
        parse_rtp(data)
    assert info.value.reason == reason


def test_bye_in_a_compound_packet_names_its_ssrcs() -> None:
    sender_report = b"\x80\xc8\x00\x06" + bytes(24)
    data = sender_report + build_rtcp_bye(7, 9)
    assert is_rtcp(data)
    assert rtcp_bye_ssrcs(data) == (7, 9)
    assert rtcp_bye_ssrcs(sender_report) == ()


def test_rtcp_whose_length_runs_past_the_datagram_is_refused() -> None:
    with pytest.raises(PacketError) as info:
        rtcp_bye_ssrcs(b"\x81\xcb\x00\x05\x00\x00\x00\x07")
    assert info.value.reason == "bad_rtcp"


@given(st.binary(max_size=300))
def test_any_datagram_parses_or_raises_packet_error(data: bytes) -> None:
    try:
        if is_rtcp(data):
            rtcp_bye_ssrcs(data)
        else:
            parse_rtp(data)
    except PacketError:
        pass
