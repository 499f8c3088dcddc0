"""The wire format: round trip, validation with reason codes, and robustness to garbage."""

from __future__ import annotations

import math
import struct
from dataclasses import astuple, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.errors import FrameError
from stream.wire import AudioFrame, Encoding, decode_frame, encode_frame
from stream.wire.frame import (
    KNOWN_HEADERS,
    MAX_CHANNELS,
    MAX_KEY_BYTES,
    MAX_RATE,
    MIN_RATE,
    _decode_full,
    _decode_plain,
    _plain_frame,
)

CAPTURE_US = 1_700_000_000_000_000


def make_frame(**overrides: object) -> AudioFrame:
    fields: dict[str, object] = {
        "stream_id": "call-17",
        "seq": 42,
        "sample_rate": 8000,
        "encoding": Encoding.PCM_S16LE,
        "channels": 1,
        "capture_us": CAPTURE_US,
        "eos": False,
        "payload": b"\x01\x00" * 160,
    }
    fields.update(overrides)
    return AudioFrame(**fields)  # type: ignore[arg-type]


def record(**overrides: object) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return encode_frame(make_frame(**overrides))


def with_header(headers: list[tuple[str, bytes]], name: str, value: bytes | None):
    """Headers with ``name`` replaced by ``value`` (removed when ``None``)."""
    out = [(k, v) for k, v in headers if k != name]
    if value is not None:
        out.append((name, value))
    return out


def reason_of(key, value, headers) -> str:
    with pytest.raises(FrameError) as info:
        decode_frame(key, value, headers)
    return info.value.reason


# -- the documented example ------------------------------------------------------------


def test_documented_headers_are_what_encode_writes() -> None:
    key, value, headers = record(encoding=Encoding.MULAW, payload=b"\xff" * 800, eos=True)
    assert key == b"call-17"
    assert value == b"\xff" * 800
    assert headers == [
        ("tympan-version", b"1"),
        ("seq", b"42"),
        ("rate", b"8000"),
        ("encoding", b"mulaw"),
        ("channels", b"1"),
        ("capture-us", b"1700000000000000"),
        ("eos", b"1"),
    ]


def test_a_frame_without_eos_header_is_not_eos() -> None:
    key, value, headers = record()
    assert all(name != "eos" for name, _ in headers)
    assert decode_frame(key, value, headers).eos is False


def test_sizes() -> None:
    frame = make_frame(encoding=Encoding.PCM_F32LE, channels=2, payload=b"\x00" * 8 * 160)
    assert frame.n_samples == 160
    assert frame.duration_s == pytest.approx(0.02)
    assert [e.sample_width for e in Encoding] == [2, 4, 1, 1]


def test_message_names_stream_seq_and_values() -> None:
    key, _, headers = record()
    with pytest.raises(FrameError) as info:
        decode_frame(key, b"\x00" * 161, headers)
    assert info.value.reason == "bad_payload_length"
    assert info.value.stream_id == "call-17"
    assert info.value.seq == 42
    assert str(info.value) == (
        "stream 'call-17' seq 42: payload of 161 bytes is not a multiple of 2 (pcm_s16le)"
    )


# -- each reason code --------------------------------------------------------------------


def test_missing_key() -> None:
    _, value, headers = record()
    assert reason_of(None, value, headers) == "missing_key"
    assert reason_of(b"", value, headers) == "missing_key"


def test_bad_key() -> None:
    _, value, headers = record()
    assert reason_of(b"\xff\xfe", value, headers) == "bad_key"
    assert reason_of(b"x" * (MAX_KEY_BYTES + 1), value, headers) == "bad_key"
    assert decode_frame(b"x" * MAX_KEY_BYTES, value, headers).stream_id == "x" * MAX_KEY_BYTES


@pytest.mark.parametrize(
    "name", ["tympan-version", "seq", "rate", "encoding", "channels", "capture-us"]
)
def test_missing_required_header(name: str) -> None:
    key, value, headers = record()
    assert reason_of(key, value, with_header(headers, name, None)) == "missing_header"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("seq", b"-1"),
        ("seq", b"+3"),
        ("seq", b" 3"),
        ("seq", b"3.0"),
        ("seq", b""),
        ("seq", b"\xd9\xa3"),  # Arabic-Indic digit three: not ASCII
        ("seq", b"9223372036854775808"),  # 2**63
        ("seq", b"1" * 20),
        ("rate", b"8k"),
        ("channels", b"one"),
        ("capture-us", b"1.7e15"),
        ("eos", b"true"),
        ("eos", b"2"),
        ("tympan-version", b"v1"),
    ],
)
def test_invalid_header(name: str, raw: bytes) -> None:
    key, value, headers = record()
    assert reason_of(key, value, with_header(headers, name, raw)) == "invalid_header"


def test_header_value_that_is_not_bytes() -> None:
    key, value, headers = record()
    assert reason_of(key, value, [*with_header(headers, "rate", None), ("rate", None)]) == (
        "invalid_header"
    )


def test_duplicate_known_header_is_refused() -> None:
    key, value, headers = record()
    assert reason_of(key, value, [*headers, ("seq", b"42")]) == "duplicate_header"


def test_unknown_headers_are_ignored_even_repeated() -> None:
    key, value, headers = record()
    extra = [("traceparent", b"00-abc"), ("traceparent", b"\xff"), ("Seq", b"nonsense")]
    assert decode_frame(key, value, [*extra, *headers]) == make_frame()


def test_largest_seq_and_capture_fit_64_bits() -> None:
    key, value, headers = record(seq=2**63 - 1, capture_us=2**63 - 1)
    frame = decode_frame(key, value, headers)
    assert (frame.seq, frame.capture_us) == (2**63 - 1, 2**63 - 1)


def test_unsupported_version() -> None:
    key, value, headers = record()
    assert reason_of(key, value, with_header(headers, "tympan-version", b"2")) == (
        "unsupported_version"
    )


@pytest.mark.parametrize("raw", [b"ulaw", b"MULAW", b"pcm_s24le", b"", b"\xff"])
def test_unknown_encoding(raw: bytes) -> None:
    key, value, headers = record()
    assert reason_of(key, value, with_header(headers, "encoding", raw)) == "unknown_encoding"


@pytest.mark.parametrize("rate", [0, 3999, 192001, 10**9])
def test_bad_rate(rate: int) -> None:
    key, value, headers = record()
    assert reason_of(key, value, with_header(headers, "rate", b"%d" % rate)) == "bad_rate"


@pytest.mark.parametrize("rate", [MIN_RATE, 8000, 11025, 44100, MAX_RATE])
def test_allowed_rates(rate: int) -> None:
    assert decode_frame(*record(sample_rate=rate)).sample_rate == rate


@pytest.mark.parametrize("channels", [0, 9, 64])
def test_bad_channels(channels: int) -> None:
    key, value, headers = record()
    assert reason_of(key, value, with_header(headers, "channels", b"%d" % channels)) == (
        "bad_channels"
    )


def test_bad_payload_length_counts_channels() -> None:
    key, _, headers = record(channels=2, payload=b"\x00" * 8)
    with pytest.raises(FrameError) as info:
        decode_frame(key, b"\x00" * 6, headers)
    assert info.value.reason == "bad_payload_length"
    assert "multiple of 4 (pcm_s16le × 2)" in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_f32(bad: float) -> None:
    payload = struct.pack("<4f", 0.0, 0.5, bad, 0.25)
    key, _, headers = record(encoding=Encoding.PCM_F32LE, payload=b"\x00" * 16)
    with pytest.raises(FrameError) as info:
        decode_frame(key, payload, headers)
    assert info.value.reason == "non_finite"
    assert "sample 2" in str(info.value)


def test_empty_payload_only_for_eos() -> None:
    key, _, headers = record()
    assert reason_of(key, b"", headers) == "empty_payload"
    assert reason_of(key, None, headers) == "empty_payload"
    eos = decode_frame(*record(eos=True, payload=b""))
    assert eos.eos and eos.payload == b"" and eos.n_samples == 0
    assert decode_frame(key, None, [*headers, ("eos", b"1")]).payload == b""


def test_encode_refuses_what_decode_would_refuse() -> None:
    for overrides, reason in [
        ({"payload": b"\x00" * 3}, "bad_payload_length"),
        ({"sample_rate": 100}, "bad_rate"),
        ({"channels": MAX_CHANNELS + 1, "payload": b"\x00" * 18}, "bad_channels"),
        ({"payload": b""}, "empty_payload"),
        ({"stream_id": ""}, "missing_key"),
        ({"seq": -1}, "invalid_header"),
        ({"encoding": "opus"}, "unknown_encoding"),
        ({"version": 2}, "unsupported_version"),
    ]:
        with pytest.raises(FrameError) as info:
            encode_frame(make_frame(**overrides))
        assert info.value.reason == reason, overrides


def test_decode_of_a_nonfinite_free_f32_view_keeps_bytes() -> None:
    samples = np.linspace(-1, 1, 64, dtype="<f4")
    frame = decode_frame(*record(encoding=Encoding.PCM_F32LE, payload=samples.tobytes()))
    assert np.array_equal(np.frombuffer(frame.payload, dtype="<f4"), samples)


# -- properties --------------------------------------------------------------------------


@st.composite
def frames(draw: st.DrawFn) -> AudioFrame:
    encoding = draw(st.sampled_from(list(Encoding)))
    channels = draw(st.integers(1, MAX_CHANNELS))
    eos = draw(st.booleans())
    n = draw(st.integers(0 if eos else 1, 64))
    size = n * channels * encoding.sample_width
    payload = draw(st.binary(min_size=size, max_size=size))
    if encoding is Encoding.PCM_F32LE:  # any bit pattern but NaN/Inf
        samples = np.frombuffer(payload, dtype="<f4")
        payload = np.where(np.isfinite(samples), samples, np.float32(0.5)).astype("<f4").tobytes()
    return AudioFrame(
        stream_id=draw(st.text(min_size=1, max_size=60)),
        seq=draw(st.integers(0, 2**63 - 1)),
        sample_rate=draw(st.integers(MIN_RATE, MAX_RATE)),
        encoding=encoding,
        channels=channels,
        capture_us=draw(st.integers(0, 2**63 - 1)),
        eos=eos,
        payload=payload,
    )


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_round_trip_is_exact(frame: AudioFrame) -> None:
    key, value, headers = encode_frame(frame)
    assert all(name.isascii() and name == name.lower() for name, _ in headers)
    assert all(raw.isascii() for _, raw in headers)
    decoded = decode_frame(key, value, headers)
    assert decoded == frame
    assert _decode_plain(key, value, headers) == frame  # the common case takes the fast path
    assert decoded.n_samples * decoded.channels * decoded.encoding.sample_width == len(value)


_names = st.sampled_from(sorted(KNOWN_HEADERS)) | st.text(max_size=12)
_values = (
    st.integers(-5, 2**64).map(lambda i: b"%d" % i)
    | st.sampled_from([e.value.encode() for e in Encoding] + [b"0", b"1", b"8000", b"16000"])
    | st.binary(max_size=24)
)
_headers = st.lists(st.tuples(_names, _values), max_size=10)


@pytest.mark.slow  # a fuzzer of thousands of examples: `make test`, not `make test-fast`
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.none() | st.binary(max_size=300),
    value=st.none() | st.binary(max_size=64),
    headers=_headers,
)
def test_arbitrary_records_give_a_frame_or_a_frame_error(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    try:
        frame = decode_frame(key, value, headers)
    except FrameError as exc:
        assert exc.reason and exc.reason == exc.reason.lower()
        assert_same_outcome(key, value, headers)
        return
    assert encode_frame(frame)[1] == frame.payload
    assert_same_outcome(key, value, headers)


def outcome(decode: object, *record: object) -> object:
    try:
        return decode(*record)  # type: ignore[operator]
    except FrameError as exc:
        return (exc.reason, str(exc), exc.stream_id, exc.seq)


def assert_same_outcome(*record: object) -> None:
    """The fast path never decides differently from the full parser: it gives the
    same frame, or steps aside (``None``) where the full parser gives an error."""
    full = outcome(_decode_full, *record)
    plain = outcome(_decode_plain, *record)
    assert plain is None or plain == full, (plain, full)
    assert outcome(decode_frame, *record) == full


@pytest.mark.slow  # a fuzzer of thousands of examples: `make test`, not `make test-fast`
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), data=st.data())
def test_mutated_valid_records_give_a_frame_or_a_frame_error(
    frame: AudioFrame, data: st.DataObject
) -> None:
    """Start from a valid record and damage one header or the payload."""
    key, value, headers = encode_frame(frame)
    index = data.draw(st.integers(0, len(headers)))
    if index < len(headers):
        name = headers[index][0]
        headers = with_header(headers, name, data.draw(st.none() | _values))
    else:
        value = value + data.draw(st.binary(min_size=1, max_size=5))
    assert_same_outcome(key, value, headers)
    try:
        decode_frame(key, value, headers)
    except FrameError as exc:
        assert exc.reason


@settings(max_examples=300, deadline=None)
@given(frames())
def test_the_fast_path_builds_the_frame_the_dataclass_builds(frame: AudioFrame) -> None:
    """``_plain_frame`` writes the slots itself: every field, as ``AudioFrame(...)``."""
    plain = replace(frame, attributes=())
    fast = _plain_frame(
        plain.stream_id,
        plain.seq,
        plain.sample_rate,
        plain.encoding,
        plain.channels,
        plain.capture_us,
        plain.eos,
        plain.payload,
        plain.instance,
    )
    assert astuple(fast) == astuple(plain)  # raises if a slot is left unset
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
