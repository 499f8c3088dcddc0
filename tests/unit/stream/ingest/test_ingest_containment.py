"""One bad call, message or datagram never ends another call (issue 23, point 7).

Without a broker: the WebSocket sessions and the RTP core are driven with the bytes a
sender would send, and every frame they give is checked against the wire format
(:func:`stream.ingest.sink.check_frame`, what the shared producer would refuse).
Structured and random generators (hypothesis) show that any input ends as a
:class:`PacketError` refusal for that call or datagram, never as an unforeseen
exception (``tympan_ingest_errors_total`` stays 0) and never as a frame the producer
would refuse. ``tests/integration/faults/test_ingest_fuzz.py`` does the same against
the real ``tympan ingest`` process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.ingest.admission import Admission, AdmissionPolicy
from stream.ingest.errors import PacketError
from stream.ingest.metrics import IngestMetrics
from stream.ingest.payloads import payload_formats
from stream.ingest.rtp import (
    MAX_BYE_SSRCS,
    MAX_RTCP_PACKETS,
    RTCP_BYE,
    build_rtcp_bye,
    build_rtp,
    rtcp_bye_ssrcs,
)
from stream.ingest.rtp_endpoint import RtpIngest, RtpSettings
from stream.ingest.sink import check_frame
from stream.ingest.streamid import RTP_FIELDS, WS_FIELDS, StreamIdTemplate
from stream.ingest.ws_protocols import PcmSession, SessionContext, TwilioSession
from stream.wire import AudioFrame, Encoding

T0 = 1_700_000_000_000_000
WIDE = "\U0001f600"  # 4 UTF-8 bytes


def context(template: str = "{stream_sid}") -> SessionContext:
    return SessionContext(
        StreamIdTemplate.parse(template, WS_FIELDS), 100.0, "10.0.0.1", lambda: T0
    )


def start(sid: str, **extra: Any) -> str:
    return json.dumps({"event": "start", "start": {"streamSid": sid, **extra}})


def media(payload: bytes, track: str = "inbound") -> str:
    body = {"track": track, "payload": base64.b64encode(payload).decode()}
    return json.dumps({"event": "media", "media": body})


def refusal(call: Any, *args: Any) -> str:
    with pytest.raises(PacketError) as info:
        call(*args)
    return info.value.reason


# -- stream ids over the wire format's 255 bytes are refused at the handshake -----------


def test_a_128_character_stream_sid_of_512_bytes_is_refused_at_start() -> None:
    session = TwilioSession(context())
    assert refusal(session.text, start(WIDE * 128)) == "bad_stream_id"
    assert session.close() == []  # nothing was opened: nothing to end


def test_a_stream_sid_that_fits_only_without_its_track_suffix_is_refused() -> None:
    sid = "a" * 250  # 250 bytes; "-outbound" makes it 259
    session = TwilioSession(context())
    with pytest.raises(PacketError):  # 250 chars is over the 128 a Twilio sid may have
        session.text(start(sid, tracks=["inbound", "outbound"]))
    wide = TwilioSession(context("{stream_sid}{stream_sid}"))
    assert refusal(wide.text, start("b" * 125, tracks=["inbound", "outbound"])) == "bad_stream_id"


def test_a_lone_surrogate_in_a_stream_id_is_refused_not_raised() -> None:
    message = '{"event": "start", "start": {"streamSid": "MZ\\ud800"}}'
    assert refusal(TwilioSession(context()).text, message) == "bad_stream_id"
    header = '{"stream_id": "mic\\udfff", "sample_rate": 16000}'
    assert refusal(PcmSession(context()).text, header) == "bad_stream_id"


def test_a_pcm_header_whose_id_is_over_255_bytes_is_refused() -> None:
    header = json.dumps({"stream_id": WIDE * 100, "sample_rate": 16000})
    assert refusal(PcmSession(context()).text, header) == "bad_stream_id"
    ok = PcmSession(context())
    ok.text(json.dumps({"stream_id": WIDE * 63, "sample_rate": 16000}))  # 252 bytes
    assert ok.stream_ids == [WIDE * 63]


def test_an_rtp_stream_whose_id_would_be_too_long_is_refused_and_others_go_on() -> None:
    frames: list[AudioFrame] = []
    template = "{remote_host}-" * 5 + "{ssrc}"  # fine for 192.0.2.7, not for a long IPv6
    ingest = RtpIngest(RtpSettings(stream_id_template=template), IngestMetrics(), frames.append)
    long_host = "2001:db8:1234:5678:9abc:def0:1234:5678%" + "x" * 40
    ingest.datagram(pcmu(1, 0), (long_host, 5000), 40000, T0)
    ingest.datagram(pcmu(2, 0), ("10.0.0.1", 5000), 40000, T0)
    assert [k[0] for k in ingest.streams] == [2]
    assert sample(ingest.metrics, "tympan_ingest_malformed_total", reason="bad_stream_id") == 1


# -- samples are validated in the session ------------------------------------------------


def test_a_nan_split_across_two_binary_messages_is_refused_at_the_second() -> None:
    session = PcmSession(context())
    session.text(json.dumps({"stream_id": "f32", "encoding": "pcm_f32le", "sample_rate": 16000}))
    nan = struct.pack("<f", float("nan"))
    assert session.binary(bytes(4) + nan[:2]) == []  # the split float is not complete yet
    assert refusal(session.binary, nan[2:] + bytes(2)) == "non_finite"


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("split", [0, 1, 2, 3])
def test_every_split_of_a_non_finite_sample_is_refused(value: float, split: int) -> None:
    session = PcmSession(context())
    session.text(json.dumps({"stream_id": "f", "encoding": "pcm_f32le", "sample_rate": 8000}))
    data = struct.pack("<3f", 0.5, value, 0.25)
    with pytest.raises(PacketError) as info:
        for part in (data[: 4 + split], data[4 + split :]):
            for frame in session.binary(part):
                check_frame(frame)
    assert info.value.reason == "non_finite"


def test_custom_parameters_with_lone_surrogates_never_raise() -> None:
    session = TwilioSession(context())
    session.text(
        '{"event": "start", "start": {"streamSid": "MZ1", "customParameters": '
        '{"queue": "\\ud800sales"}}}'
    )
    frames = session.text(media(b"\xff" * 800)) + session.close()
    for frame in frames:
        check_frame(frame)
    assert frames[0].attributes == (("queue", "?sales"),)


def test_check_frame_refuses_what_the_producer_would() -> None:
    bad = AudioFrame("s" * 300, 0, 8000, Encoding.MULAW, 1, T0, False, b"\xff")
    assert refusal(check_frame, bad) == "bad_frame"
    nan = AudioFrame("s", 0, 8000, Encoding.PCM_F32LE, 1, T0, False, struct.pack("<f", 1e400))
    assert refusal(check_frame, nan) == "bad_frame"
    check_frame(AudioFrame("s", 0, 8000, Encoding.MULAW, 1, T0, False, b"\xff"))


# -- structured and random WebSocket messages --------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=300),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def _twilio_message() -> st.SearchStrategy[str]:
    sid = st.one_of(
        st.text(min_size=0, max_size=140),
        st.just(WIDE * 128),
        _json_values,
    )
    starts = st.builds(
        lambda s, tracks, params, fmt: json.dumps(
            {
                "event": "start",
                "start": {
                    "streamSid": s,
                    "tracks": tracks,
                    "customParameters": params,
                    "mediaFormat": fmt,
                },
            }
        ),
        sid,
        st.one_of(st.just(["inbound"]), st.just(["inbound", "outbound"]), _json_values),
        st.one_of(st.dictionaries(st.text(max_size=70), _json_scalars, max_size=40), _json_values),
        st.one_of(
            st.just({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}),
            _json_values,
        ),
    )
    medias = st.builds(
        lambda payload, track: json.dumps(
            {"event": "media", "media": {"track": track, "payload": payload}}
        ),
        st.one_of(
            st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()), _json_values
        ),
        st.one_of(st.sampled_from(["inbound", "outbound"]), _json_values),
    )
    others = st.builds(lambda e: json.dumps({"event": e}), _json_values)
    return st.one_of(
        starts,
        medias,
        others,
        st.just(json.dumps({"event": "stop"})),
        st.text(max_size=200),
        _json_values.map(json.dumps),
    )


def _drive(session: TwilioSession | PcmSession, messages: list[str | bytes]) -> list[str]:
    """Feed ``messages`` as the server does: stop at the first refusal; check each frame."""
    reasons = []
    try:
        for message in messages:
            if session.stopped:
                break
            out = session.text(message) if isinstance(message, str) else session.binary(message)
            for frame in out:
                check_frame(frame)
    except PacketError as exc:
        reasons.append(exc.reason)
    for frame in session.close():
        check_frame(frame)
    return reasons


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.lists(_twilio_message(), max_size=12))
def test_any_twilio_message_sequence_is_served_or_refused(messages: list[str]) -> None:
    _drive(TwilioSession(context()), list(messages))


@_FUZZ
@given(
    st.fixed_dictionaries(
        {
            "stream_id": st.one_of(st.text(max_size=140), st.just(WIDE * 70), _json_values),
            "encoding": st.one_of(st.sampled_from([e.value for e in Encoding]), _json_values),
            "sample_rate": st.one_of(st.sampled_from([8000, 16000, 48000]), _json_values),
            "channels": st.one_of(st.integers(1, 8), _json_values),
            "parameters": st.one_of(
                st.dictionaries(st.text(max_size=70), _json_scalars), _json_values
            ),
        }
    ),
    st.lists(
        st.one_of(
            st.binary(max_size=700),
            st.lists(st.floats(width=32), min_size=1, max_size=50).map(
                lambda xs: struct.pack(f"<{len(xs)}f", *xs)
            ),
            st.sampled_from([json.dumps({"event": "stop"}), "{}", "not json"]),
        ),
        max_size=10,
    ),
)
def test_any_pcm_header_and_messages_are_served_or_refused(
    header: dict[str, Any], messages: list[str | bytes]
) -> None:
    _drive(PcmSession(context()), [json.dumps(header), *messages])


# -- RTP and RTCP -------------------------------------------------------------------------


def pcmu(ssrc: int, i: int) -> bytes:
    return build_rtp(payload_type=0, seq=i, timestamp=160 * i, ssrc=ssrc, payload=b"\x01" * 160)


def sample(metrics: IngestMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def checked_ingest(**kw: Any) -> tuple[RtpIngest, list[AudioFrame]]:
    frames: list[AudioFrame] = []

    def emit(frame: AudioFrame) -> None:
        check_frame(frame)
        frames.append(frame)

    return RtpIngest(RtpSettings(**kw), IngestMetrics(), emit), frames


def test_a_bye_flood_datagram_is_refused_after_a_bounded_walk() -> None:
    one = struct.pack("!BBH", 0x80 | 31, RTCP_BYE, 31) + struct.pack("!31I", *range(31))
    flood = one * (65000 // len(one))  # ~15,800 SSRCs in one 64 KB datagram
    assert refusal(rtcp_bye_ssrcs, flood) == "rtcp_over_limit"
    many = b"\x80\xc9\x00\x00" * (MAX_RTCP_PACKETS + 1)  # empty receiver reports
    assert refusal(rtcp_bye_ssrcs, many) == "rtcp_over_limit"
    assert rtcp_bye_ssrcs(b"\x80\xc9\x00\x00" * (MAX_RTCP_PACKETS - 1) + build_rtcp_bye(5)) == (5,)
    assert len(rtcp_bye_ssrcs(one + one)) == 62 <= MAX_BYE_SSRCS


def test_a_bye_ends_exactly_the_streams_of_that_ssrc_and_host_among_thousands() -> None:
    ingest, frames = checked_ingest()
    for s in range(2000):
        ingest.datagram(pcmu(s, 0), (f"10.0.{s % 4}.1", 5000), 40000, T0)
    bye = build_rtcp_bye(*range(0, 62, 2)) + build_rtcp_bye(*range(62, 124, 2))
    ingest.datagram(bye, ("10.0.0.1", 5001), 40001, T0)
    ended = {f.stream_id for f in frames if f.eos}
    assert ended == {f"rtp-{s:08x}-40000" for s in range(0, 124, 4)}  # host 10.0.0.1 only
    assert len(ingest.streams) == 2000 - 31


def test_an_ssrc_flood_does_not_lock_out_a_real_call_from_another_source() -> None:
    ingest, frames = checked_ingest()  # 2000 streams, 1000 per source
    real, now = ("10.0.0.2", 5004), T0
    for round_ in range(3):  # 2000 SSRCs refreshed every 5 s, as in the issue
        for s in range(2000):
            ingest.datagram(pcmu(0xBAD00000 + s, round_), ("203.0.113.66", 6000), 40000, now)
            if s % 8 == 0:  # the real call, every 20 ms meanwhile
                i = round_ * 250 + s // 8
                ingest.datagram(pcmu(0xCA11, i), real, 40000, now)
            now += 20_000 // 8
        ingest.tick(now)
    call = [k for k in ingest.streams if k[0] == 0xCA11]
    assert call, "the real call was locked out"
    assert ingest.admission.open_from("203.0.113.66") <= 1000
    assert sample(ingest.metrics, "tympan_ingest_malformed_total", reason="too_many_streams") == 0
    call_frames = [f for f in frames if f.stream_id == "rtp-0000ca11-40000"]
    assert [f.seq for f in call_frames] == list(range(len(call_frames)))  # nothing lost


def test_a_flood_from_the_call_s_own_source_evicts_flood_streams_not_the_call() -> None:
    ingest, _ = checked_ingest(max_streams=50, max_streams_per_source=50)
    src, now = ("10.0.0.1", 5000), T0
    for i in range(200):
        ingest.datagram(pcmu(0xCA11, i), src, 40000, now)  # the call: 20 ms packets
        for k in range(10):  # and 10 new SSRCs every 20 ms from the same address and port
            ingest.datagram(pcmu(0xF000 + i * 10 + k, 0), src, 40000, now)
        now += 20_000
    assert (0xCA11, 40000, *src) in ingest.streams
    assert len(ingest.streams) <= 50


def test_a_source_over_its_limit_with_established_calls_is_refused_others_are_not() -> None:
    ingest, _ = checked_ingest(max_streams=10, max_streams_per_source=2)
    a, b = ("10.0.0.1", 5000), ("10.0.0.2", 5000)
    for i in range(30):
        for ssrc in (1, 2):
            ingest.datagram(pcmu(ssrc, i), a, 40000, T0 + i * 20_000)
    ingest.datagram(pcmu(3, 0), a, 40000, T0 + 600_000)
    ingest.datagram(pcmu(3, 0), b, 40000, T0 + 600_000)
    assert sorted((k[2], k[0]) for k in ingest.streams) == [
        ("10.0.0.1", 1),
        ("10.0.0.1", 2),
        ("10.0.0.2", 3),
    ]
    assert sample(ingest.metrics, "tympan_ingest_malformed_total", reason="source_limit") == 1


def test_a_second_source_with_the_same_ssrc_never_shares_the_first_one_s_stream_id() -> None:
    ingest, frames = checked_ingest()  # the default template names neither host nor port
    for i in range(10):
        ingest.datagram(pcmu(7, i), ("10.0.0.1", 5000), 40000, T0 + i * 20_000)
        ingest.datagram(pcmu(7, i), ("10.6.6.6", 5000), 40000, T0 + i * 20_000)
    ingest.close_all()
    assert [f.seq for f in frames] == list(range(len(frames)))  # one stream on the key
    assert sample(ingest.metrics, "tympan_ingest_malformed_total", reason="stream_in_use") == 10


def test_an_unexpected_exception_ends_only_its_stream() -> None:
    frames: list[AudioFrame] = []

    def emit(frame: AudioFrame) -> None:  # a sink that fails on one call's frames
        if frame.stream_id == "rtp-00000002-40000" and not frame.eos:
            raise RuntimeError("disk on fire")
        frames.append(frame)

    ingest = RtpIngest(RtpSettings(), IngestMetrics(), emit)
    for i in range(20):
        for ssrc in (1, 2):
            ingest.datagram(pcmu(ssrc, i), ("10.0.0.1", 5000), 40000, T0 + i * 20_000)
        ingest.tick(T0 + i * 20_000)
    assert [k[0] for k in ingest.streams] == [1]
    assert sample(ingest.metrics, "tympan_ingest_errors_total", protocol="rtp") == 1
    assert sample(ingest.metrics, "tympan_ingest_streams_ended_total", why="error") == 1
    assert [f.eos for f in frames if f.stream_id == "rtp-00000002-40000"] == [True]
    assert any(f.stream_id == "rtp-00000001-40000" for f in frames)


_header = st.builds(
    lambda v, p, x, cc, m, pt, seq, ts, ssrc: (
        bytes([(v << 6) | (p << 5) | (x << 4) | cc, (m << 7) | pt])
        + struct.pack("!HII", seq, ts, ssrc)
    ),
    st.sampled_from([2, 2, 2, 0, 1, 3]),
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, 15),
    st.integers(0, 1),
    st.sampled_from([0, 8, 0, 96, 13, 101, 127, 72, 200 - 128]),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 3, 0xFFFFFFFF]),
)
_datagram = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda h, rest: h + rest, _header, st.binary(max_size=300)),
    st.builds(
        lambda ssrcs, lead: lead + build_rtcp_bye(*ssrcs),
        st.lists(st.integers(0, 2**32 - 1), max_size=31),
        st.sampled_from([b"", b"\x80\xc8\x00\x06" + bytes(24), b"\x81\xca\x00\x01" + bytes(4)]),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_datagram, st.integers(0, 3), st.integers(0, 40_000)), max_size=60))
def test_any_datagrams_are_streams_or_refusals_never_errors(
    datagrams: list[tuple[bytes, int, int]],
) -> None:
    ingest, frames = checked_ingest(
        max_streams=8, max_streams_per_source=4, formats=payload_formats(["96:16000:2"])
    )
    now = T0
    for data, host, gap_us in datagrams:
        now += gap_us
        ingest.datagram(data, (f"10.0.0.{host}", 5000 + host), 40000, now)
        ingest.tick(now)
    ingest.close_all()
    assert sample(ingest.metrics, "tympan_ingest_errors_total", protocol="rtp") == 0
    assert len({f.stream_id for f in frames if f.eos}) == len([f for f in frames if f.eos])


def test_admission_keeps_counts_consistent() -> None:
    adm: Admission[int] = Admission(AdmissionPolicy(max_streams=3, max_per_source=2))
    adm.opened(1, "a", 0)
    adm.opened(2, "a", 0)
    assert adm.victim("a", "x") == 1
    adm.heard(1, 10)
    assert adm.victim("a", "x") == 2  # 1 was heard since
    assert adm.victim("b", "x") is None
    adm.established(1)
    adm.established(2)
    assert refusal(adm.victim, "a", "x") == "source_limit"
    adm.closed(1)
    adm.closed(2)
    assert len(adm) == 0 and adm.on_probation() == 0 and adm.open_from("a") == 0


def test_templates_still_render_rtp_fields() -> None:
    t = StreamIdTemplate.parse("rtp-{ssrc:08x}-{port}", RTP_FIELDS)
    assert t.name({"ssrc": 1, "port": 2}, "x") == "rtp-00000001-2"


def test_a_full_table_evicts_from_the_source_with_most_calls_on_probation() -> None:
    adm: Admission[int] = Admission(AdmissionPolicy(max_streams=4, max_per_source=4))
    adm.opened(1, "call", 0)  # heard least recently, but alone on probation at its source
    for key in (2, 3, 4):
        adm.opened(key, "flood", 0)
    assert adm.victim("new", "x") == 2
    adm.closed(2)
    adm.closed(3)
    assert adm.victim("new", "x") is None
    adm.opened(5, "other", 0)
    adm.opened(6, "another", 0)
    assert adm.victim("new", "x") == 1  # no source holds two: the least recently heard


def test_a_producer_that_cannot_deliver_at_shutdown_is_an_error_not_a_hang() -> None:
    from stream.errors import BrokerError
    from stream.ingest.service import drained
    from stream.ingest.sink import FrameSink

    async def scenario() -> None:
        sink = FrameSink(IngestMetrics(), max_frames=1)
        sink.offer(AudioFrame("s", 0, 8000, Encoding.MULAW, 1, T0, False, b"\xff"))  # full
        stuck = asyncio.get_running_loop().create_future()  # a producer that never returns
        sender = asyncio.ensure_future(stuck)
        with pytest.raises(BrokerError, match=r"not delivered within 0\.2 s"):
            await drained(sink, sender, timeout_s=0.2)  # type: ignore[arg-type]
        assert sender.cancelled()

    asyncio.run(scenario())


def test_a_call_getting_going_is_passed_over_for_a_one_packet_flood_call() -> None:
    """The real call's packets reached us late (it is the least recently heard), but it
    has sent half of what establishes it: the flood's one-packet call goes instead."""
    adm: Admission[int] = Admission(AdmissionPolicy(max_streams=3, max_per_source=3))
    adm.opened(1, "a", 0)
    for t in range(1, 7):  # 6 packets of the real call, 20 ms apart (10 + 500 ms establish)
        adm.heard(1, t * 20_000)
    adm.opened(2, "a", 200_000)
    adm.heard(2, 200_000)
    adm.opened(3, "a", 210_000)
    adm.heard(3, 210_000)
    adm.heard(1, 205_000)  # heard again, then the flood's calls after it
    adm.heard(2, 220_000)
    adm.heard(3, 230_000)

    assert adm.victim("a", "x") == 2  # not 1, the least recently heard


def test_when_every_call_is_getting_going_the_least_recently_heard_goes() -> None:
    adm: Admission[int] = Admission(AdmissionPolicy(max_streams=2, max_per_source=2))
    for key in (1, 2):
        adm.opened(key, "a", 0)
        for t in range(1, 7):
            adm.heard(key, t * 20_000)

    assert adm.victim("a", "x") in (1, 2)
    assert adm.on_probation() == 2 and len(adm) == 2
