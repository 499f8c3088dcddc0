"""The ingest's edges without a broker: RTP streams by SSRC and source, bounds, BYE,
the WebSocket protocols, stream-id templates, settings refusals, sink backpressure."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from stream.errors import ConfigError
from stream.ingest.errors import PacketError
from stream.ingest.metrics import IngestMetrics
from stream.ingest.rtp import build_rtcp_bye, build_rtp
from stream.ingest.rtp_endpoint import RtpIngest, RtpSettings, parse_listen
from stream.ingest.sink import FrameSink
from stream.ingest.streamid import RTP_FIELDS, WS_FIELDS, StreamIdTemplate
from stream.ingest.ws_protocols import PcmSession, SessionContext, TwilioSession
from stream.ingest.ws_server import WsSettings
from stream.wire import AudioFrame, Encoding

T0 = 1_700_000_000_000_000


def rtp_ingest(**kw: object) -> tuple[RtpIngest, list[AudioFrame], IngestMetrics]:
    frames: list[AudioFrame] = []
    metrics = IngestMetrics()
    return RtpIngest(RtpSettings(**kw), metrics, frames.append), frames, metrics  # type: ignore[arg-type]


def pcmu(ssrc: int, i: int) -> bytes:
    return build_rtp(payload_type=0, seq=i, timestamp=160 * i, ssrc=ssrc, payload=b"\x01" * 160)


def malformed(metrics: IngestMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("tympan_ingest_malformed_total", {"reason": reason})
    return value or 0.0


def test_one_stream_per_ssrc_and_source_with_the_template() -> None:
    ingest, frames, _ = rtp_ingest(stream_id_template="{remote_host}-{remote_port}-{ssrc}")
    for i in range(10):
        ingest.datagram(pcmu(1, i), ("10.0.0.1", 5000), 40000, T0 + i * 20_000)
        ingest.datagram(pcmu(1, i), ("10.0.0.2", 5000), 40000, T0 + i * 20_000)
        ingest.datagram(pcmu(2, i), ("10.0.0.1", 5000), 40000, T0 + i * 20_000)
    assert {f.stream_id for f in frames} == {
        "10.0.0.1-5000-1",
        "10.0.0.2-5000-1",
        "10.0.0.1-5000-2",
    }
    assert len(ingest.streams) == 3


def test_bye_ends_the_ssrc_of_that_host_only() -> None:
    ingest, frames, _ = rtp_ingest(stream_id_template="{remote_host}-{ssrc}")
    for host in ("10.0.0.1", "10.0.0.2"):
        for i in range(3):
            ingest.datagram(pcmu(7, i), (host, 5000), 40000, T0 + i * 20_000)
    ingest.datagram(build_rtcp_bye(7), ("10.0.0.1", 5001), 40001, T0)
    assert len(ingest.streams) == 1
    assert [f.eos for f in frames] == [True]


def test_packets_after_bye_are_dropped_and_a_resumed_leg_gets_a_new_id() -> None:
    ingest, frames, metrics = rtp_ingest(idle_timeout_s=1.0)
    src = ("10.0.0.1", 5000)
    ingest.datagram(pcmu(7, 0), src, 40000, T0)
    ingest.datagram(build_rtcp_bye(7), src, 40000, T0 + 10_000)
    ingest.datagram(pcmu(7, 1), src, 40000, T0 + 20_000)  # a straggler after BYE
    assert malformed(metrics, "after_end") == 1 and not ingest.streams
    ingest.datagram(pcmu(7, 500), src, 40000, T0 + 5_000_000)  # the leg comes back later
    ingest.close_all()
    assert [(f.stream_id, f.eos) for f in frames] == [
        ("rtp-00000007-40000", True),
        ("rtp-00000007-40000-2", True),  # the first id has had its EOS: a new key
    ]


def test_oversized_payloads_are_refused() -> None:
    ingest, _, metrics = rtp_ingest()
    data = build_rtp(payload_type=0, seq=0, timestamp=0, ssrc=1, payload=bytes(5000))
    ingest.datagram(data, ("10.0.0.1", 5000), 40000, T0)
    assert malformed(metrics, "too_large") == 1 and not ingest.streams


def test_idle_streams_end_and_a_full_table_evicts_the_call_heard_least_recently() -> None:
    ingest, frames, metrics = rtp_ingest(max_streams=2, idle_timeout_s=1.0)
    for ssrc in (1, 2, 3):  # none established yet: the third evicts the first
        ingest.datagram(pcmu(ssrc, 0), ("10.0.0.1", 5000), 40000, T0)
    assert sorted(k[0] for k in ingest.streams) == [2, 3]
    assert metrics.registry.get_sample_value(
        "tympan_ingest_streams_ended_total", {"why": "evicted"}
    )
    ingest.tick(T0 + 1_000_000)
    assert not ingest.streams  # the evicted call had sent no frame: nothing to end downstream
    assert [(f.stream_id, f.eos) for f in frames] == [
        ("rtp-00000002-40000", True),
        ("rtp-00000003-40000", True),
    ]


def test_a_full_table_of_established_calls_refuses_the_next() -> None:
    ingest, _, metrics = rtp_ingest(max_streams=2)
    for i in range(30):  # 600 ms of 20 ms packets: both established
        for ssrc in (1, 2):
            ingest.datagram(pcmu(ssrc, i), ("10.0.0.1", 5000), 40000, T0 + i * 20_000)
    ingest.datagram(pcmu(3, 0), ("10.0.0.1", 5000), 40000, T0 + 600_000)
    assert sorted(k[0] for k in ingest.streams) == [1, 2]
    assert malformed(metrics, "too_many_streams") == 1


def test_garbage_and_unknown_payload_types_are_counted_not_raised() -> None:
    ingest, frames, metrics = rtp_ingest()
    ingest.datagram(b"\x00" * 5, ("10.0.0.1", 1), 40000, T0)
    ingest.datagram(
        build_rtp(payload_type=18, seq=0, timestamp=0, ssrc=1, payload=b"x"),
        ("10.0.0.1", 1),
        40000,
        T0,
    )
    ingest.datagram(b"\x81\xcb\x00\x09", ("10.0.0.1", 1), 40000, T0)
    assert malformed(metrics, "short_packet") == 1
    assert malformed(metrics, "unknown_payload_type") == 1
    assert malformed(metrics, "bad_rtcp") == 1
    assert not frames and not ingest.streams


def test_listen_specs() -> None:
    assert parse_listen("127.0.0.1:40000") == ("127.0.0.1", (40000, 40001))
    assert parse_listen("0.0.0.0:20000-20003") == ("0.0.0.0", (20000, 20001, 20002, 20003))
    for bad in ("40000", "h:x", "h:5-2", "h:1-5000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_templates_refuse_unknown_fields_and_attribute_access() -> None:
    assert (
        StreamIdTemplate.parse("rtp-{ssrc:08x}-{port}", RTP_FIELDS).render({"ssrc": 255, "port": 9})
        == "rtp-000000ff-9"
    )
    for bad in ("{call}", "{ssrc.__class__}", "{stream_sid[0]}", "{", ""):
        with pytest.raises(ConfigError):
            StreamIdTemplate.parse(bad, {**RTP_FIELDS, **WS_FIELDS})


def test_a_websocket_off_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="token"):
        WsSettings(host="0.0.0.0")
    WsSettings(host="0.0.0.0", token="x" * 16)
    WsSettings(host="::1")


def context() -> SessionContext:
    return SessionContext(
        StreamIdTemplate.parse("{stream_sid}", WS_FIELDS), 100.0, "10.0.0.1", lambda: T0
    )


def test_twilio_session_cuts_frames_and_keeps_custom_parameters() -> None:
    s = TwilioSession(context())
    start = {
        "streamSid": "MZ1",
        "callSid": "CA1",
        "tracks": ["inbound"],
        "customParameters": {"queue": "sales"},
    }
    assert s.text(json.dumps({"event": "connected"})) == []
    s.text(json.dumps({"event": "start", "start": start}))
    frames = []
    for _ in range(6):  # 6 x 20 ms
        media = {"track": "inbound", "payload": base64.b64encode(b"\x7f" * 160).decode()}
        frames += s.text(json.dumps({"event": "media", "media": media}))
    frames += s.text(json.dumps({"event": "stop"}))
    assert [(f.stream_id, f.seq, len(f.payload), f.eos) for f in frames] == [
        ("MZ1", 0, 800, False),
        ("MZ1", 1, 160, True),
    ]
    assert frames[0].encoding is Encoding.MULAW and frames[0].sample_rate == 8000
    assert s.parameters == {"queue": "sales"} and s.stopped
    assert all(f.attributes == (("queue", "sales"),) for f in frames)  # -> attributes in the events


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1]",
        '{"event": "media", "media": {"payload": "AAAA"}}',  # before start
        '{"event": "start", "start": {"streamSid": ""}}',
        json.dumps(
            {"event": "start", "start": {"streamSid": "MZ", "mediaFormat": {"encoding": "opus"}}}
        ),
        '{"event": "nonsense"}',
        "[" * 100_000,
    ],
)
def test_bad_twilio_messages_raise_packet_error(message: str) -> None:
    with pytest.raises(PacketError):
        TwilioSession(context()).text(message)


def test_pcm_session_header_then_samples() -> None:
    s = PcmSession(context())
    s.text(json.dumps({"stream_id": "mic", "encoding": "pcm_s16le", "sample_rate": 16000}))
    frames = s.binary(b"\x00\x01" * 2000) + s.close()
    assert [(f.seq, len(f.payload), f.eos) for f in frames] == [(0, 3200, False), (1, 800, True)]
    with pytest.raises(PacketError):
        PcmSession(context()).binary(b"\x00\x00")
    with pytest.raises(PacketError):
        PcmSession(context()).text(json.dumps({"stream_id": "x", "sample_rate": 12}))


def test_a_full_sink_makes_put_wait_and_offer_drop() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        metrics = IngestMetrics()
        sink = FrameSink(metrics, max_frames=1)
        frame = AudioFrame("s", 0, 8000, Encoding.MULAW, 1, T0, False, b"\xff")
        await sink.put(frame)
        waiting = asyncio.ensure_future(sink.put(frame))
        for _ in range(5):
            await asyncio.sleep(0)
        blocked = not waiting.done()
        dropped = not sink.offer(frame)
        await sink._queue.get()  # the producer takes one: the waiting put goes through
        for _ in range(5):
            await asyncio.sleep(0)
        return blocked, dropped, waiting.done()

    assert asyncio.run(scenario()) == (True, True, True)


def test_every_call_stamps_an_instance_of_its_own() -> None:
    """A call id used again is a new stream for the worker (the ``instance`` header)."""

    def call() -> list[AudioFrame]:
        s = PcmSession(context())
        s.text(json.dumps({"stream_id": "desk-1", "encoding": "pcm_s16le", "sample_rate": 16000}))
        return s.binary(b"\x00\x01" * 2000) + s.close()

    first, second = call(), call()
    assert len({f.instance for f in first}) == len({f.instance for f in second}) == 1
    assert first[0].instance != second[0].instance and first[0].instance is not None
    ingest, frames, _ = rtp_ingest(idle_timeout_s=1.0)
    for i in range(3):
        ingest.datagram(pcmu(7, i), ("10.0.0.1", 5000), 40000, T0 + i * 20_000)
    ingest.datagram(pcmu(9, 0), ("10.0.0.1", 5000), 40000, T0)
    ingest.close_all()
    by_stream: dict[str, set[str | None]] = {}
    for f in frames:
        by_stream.setdefault(f.stream_id, set()).add(f.instance)
    assert len(by_stream) == 2 and all(len(i) == 1 and None not in i for i in by_stream.values())
    assert len(set.union(*by_stream.values())) == 2  # one instance per RTP stream
