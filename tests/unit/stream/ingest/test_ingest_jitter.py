"""One RTP stream's jitter buffer and framing: order, wrap, loss as gaps, EOS, bounds."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.ingest.jitter import JitterPolicy, RtpStream
from stream.ingest.payloads import PCMU, parse_l16
from stream.ingest.rtp import RtpPacket, parse_rtp
from stream.wire import AudioFrame

PT = 160  # samples per 20 ms packet at 8 kHz
T0 = 1_700_000_000_000_000


def packet(i: int, *, seq0: int = 0, ts0: int = 0, pt: int = 0, size: int = PT) -> RtpPacket:
    """Packet ``i`` of a call: payload byte ``i % 200`` so frames show where data went."""
    payload = bytes([i % 200]) * size
    return RtpPacket(
        pt, False, (seq0 + i) % 65536, (ts0 + i * size) % 2**32, 42, (), memoryview(payload)
    )


def play(
    order: list[int], *, policy: JitterPolicy | None = None, seq0: int = 0, ts0: int = 0
) -> tuple[RtpStream, list[AudioFrame]]:
    """Push packets in ``order`` (20 ms apart in arrival time), tick after each, close."""
    policy = policy or JitterPolicy(chunk_ms=100, jitter_ms=60)
    first = order[0]
    stream, out = RtpStream.start(
        packet(first, seq0=seq0, ts0=ts0),
        stream_id="s",
        fmt=PCMU,
        policy=policy,
        arrival_us=T0,
    )
    for n, i in enumerate(order[1:], start=1):
        now = T0 + n * 20_000
        out += stream.push(packet(i, seq0=seq0, ts0=ts0), now)
        out += stream.tick(now)
    out += stream.close()
    return stream, out


def audio(frames: list[AudioFrame]) -> bytes:
    return b"".join(f.payload for f in frames)


def test_in_order_packets_make_full_frames_then_eos() -> None:
    stream, frames = play(list(range(12)))
    assert [f.seq for f in frames] == [0, 1, 2]
    assert [len(f.payload) for f in frames] == [800, 800, 320]
    assert frames[-1].eos and not any(f.eos for f in frames[:-1])
    assert audio(frames) == b"".join(bytes([i]) * PT for i in range(12))
    assert [f.capture_us for f in frames] == [T0, T0 + 100_000, T0 + 200_000]
    assert stream.counts.lost == 0


def test_reordering_within_the_buffer_gives_the_same_frames() -> None:
    order = list(range(20))
    rng = random.Random(3)
    for i in range(0, 20, 3):
        block = order[i : i + 3]
        rng.shuffle(block)
        order[i : i + 3] = block
    stream, frames = play(order)
    _, expected = play(list(range(20)))
    assert audio(frames) == audio(expected)
    assert stream.counts.reordered > 0 and stream.counts.lost == 0


def test_sequence_and_timestamp_wrap_are_continuous() -> None:
    stream, frames = play(list(range(15)), seq0=65530, ts0=2**32 - 500)
    assert [f.seq for f in frames] == [0, 1, 2, 3]  # 3 full frames, then an empty EOS
    assert frames[3].eos and frames[3].payload == b""
    assert audio(frames) == b"".join(bytes([i]) * PT for i in range(15))
    assert stream.counts.lost == 0 and stream.counts.out_of_range == 0


def test_a_lost_packet_leaves_a_sequence_gap_not_silence() -> None:
    # packet 7 (samples 1120..1280) lies in frame 1 (samples 800..1600)
    stream, frames = play([i for i in range(14) if i != 7])
    assert [f.seq for f in frames] == [0, 2]
    assert stream.counts.lost == 1
    assert frames[-1].eos


def test_duplicates_are_dropped_and_counted() -> None:
    stream, frames = play([0, 1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9])
    _, expected = play(list(range(10)))
    assert audio(frames) == audio(expected)
    assert stream.counts.duplicates == 2


def test_a_packet_later_than_the_buffer_is_late_not_a_crash() -> None:
    order = [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 3]  # 3 comes 160 ms late: given up already
    stream, frames = play(order)
    assert stream.counts.lost == 1 and stream.counts.late == 1
    assert [f.seq for f in frames] == [1, 2]  # frame 0 held the lost packet


def test_held_packets_are_bounded() -> None:
    policy = JitterPolicy(chunk_ms=100, jitter_ms=10_000, max_packets=4)
    stream, out = RtpStream.start(packet(0), stream_id="s", fmt=PCMU, policy=policy, arrival_us=T0)
    for i in range(2, 50):  # packet 1 never comes; the buffer must not grow
        out += stream.push(packet(i), T0)
        assert stream.held <= 4
    assert stream.counts.lost == 1


def test_dtmf_packets_in_the_stream_are_in_sequence_but_not_audio() -> None:
    stream, out = RtpStream.start(
        packet(0), stream_id="s", fmt=PCMU, policy=JitterPolicy(), arrival_us=T0
    )
    for i in range(1, 12):
        p = packet(i)
        if i in (5, 6):  # RFC 4733 telephone-event on PT 101, same SSRC and seq space
            p = RtpPacket(101, False, p.seq, 800, 42, (), memoryview(b"\x05\x0a\x00\xa0"))
        out += stream.push(p, T0 + i * 20_000)
    out += stream.close()
    assert stream.counts.other_payload == 2 and stream.counts.lost == 0
    assert [f.seq for f in out] == [0, 1, 2]  # frame 1 had DTMF: silence-filled, not a gap
    assert out[1].payload[:320] == b"\xff" * 320  # where the DTMF packets were


def test_a_far_jump_in_sequence_is_refused() -> None:
    stream, frames = play([0, 1, 2, 30000, 3, 4])
    assert stream.counts.out_of_range == 1
    assert audio(frames) == b"".join(bytes([i]) * PT for i in range(5))


def test_a_sender_that_restarts_its_sequence_is_followed_after_two_packets() -> None:
    order = list(range(10)) + list(range(30000, 30010))  # seq and timestamp jump together
    stream, frames = play(order)
    assert stream.counts.out_of_range == 1  # 30000: could be garbage; 30001 confirms
    restarted = b"".join(bytes([i % 200]) * PT for i in range(30001, 30010))
    assert audio(frames).endswith(restarted)
    assert stream.counts.lost == 0


def test_a_timestamp_that_jumps_back_in_sequence_order_does_not_silence_the_call() -> None:
    stream, out = RtpStream.start(
        packet(0), stream_id="s", fmt=PCMU, policy=JitterPolicy(), arrival_us=T0
    )
    for i in range(1, 20):
        p = packet(i, ts0=0 if i < 10 else -50_000 % 2**32)  # the sender's clock restarts
        out += stream.push(p, T0 + i * 20_000)
    out += stream.close()
    assert audio(out) == b"".join(bytes([i]) * PT for i in range(20))
    assert stream.counts.late == 0


def test_l16_is_swapped_to_little_endian() -> None:
    pt, fmt = parse_l16("96:16000")
    samples = np.arange(-160, 160, dtype=">i2")
    data = b"\x80\x60\x00\x01" + bytes(8) + samples.tobytes()
    stream, frames = RtpStream.start(
        parse_rtp(data), stream_id="s", fmt=fmt, policy=JitterPolicy(), arrival_us=T0
    )
    frames += stream.close()
    assert np.array_equal(np.frombuffer(audio(frames), "<i2"), samples.astype("<i2"))
    assert pt == 96 and frames[-1].sample_rate == 16000


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1), st.randoms(use_true_random=False))
def test_reorder_within_grace_is_invisible(seq0: int, ts0: int, rng: random.Random) -> None:
    order = list(range(30))
    for i in range(0, 30, 2):
        if rng.random() < 0.5:
            order[i], order[i + 1] = order[i + 1], order[i]
    _, frames = play(order, seq0=seq0, ts0=ts0)
    _, expected = play(list(range(30)), seq0=seq0, ts0=ts0)
    assert [(f.seq, f.payload, f.eos) for f in frames] == [
        (f.seq, f.payload, f.eos) for f in expected
    ]
