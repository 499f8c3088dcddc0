"""stream.produce without a broker: chunking, timestamps, interleaving, planning."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream.audio.convert import payload_to_float32
from stream.errors import ConfigError
from stream.produce import (
    expand_paths,
    frames_from_array,
    frames_from_payload,
    frames_from_reader,
    interleave,
    load_sources,
    plan_frames,
    plan_streams,
)
from stream.wire import Encoding, decode_frame, encode_frame

START_US = 1_700_000_000_000_000


def test_frames_cover_the_payload_once_and_end_with_eos() -> None:
    payload = bytes(range(256)) * 13  # 3328 bytes = 1664 s16 samples
    frames = list(
        frames_from_payload(payload, 16000, stream_id="a", chunk_ms=20, start_us=START_US)
    )
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert b"".join(f.payload for f in frames) == payload
    assert [f.n_samples for f in frames] == [320] * 5 + [64]
    assert [f.eos for f in frames] == [False] * 5 + [True]
    assert [f.capture_us - START_US for f in frames] == [i * 20_000 for i in range(6)]
    for frame in frames:  # every frame is valid on the wire
        assert decode_frame(*encode_frame(frame)) == frame


def test_empty_input_is_one_empty_eos_frame() -> None:
    (frame,) = frames_from_payload(b"", 8000, stream_id="e", encoding=Encoding.MULAW)
    assert frame.eos and frame.payload == b"" and frame.seq == 0


def test_capture_times_do_not_drift_at_odd_rates() -> None:
    frames = list(
        frames_from_payload(
            b"\x00" * 2 * 44100 * 3, 44100, stream_id="o", chunk_ms=10, start_us=START_US
        )
    )
    assert frames[-1].capture_us - START_US == (len(frames) - 1) * 441 * 1_000_000 // 44100


def test_frames_from_array_encodes_mulaw() -> None:
    x = np.sin(np.arange(8000) / 7).astype(np.float32) * 0.5
    frames = list(frames_from_array(x, 8000, stream_id="m", encoding=Encoding.MULAW))
    assert len(frames) == 10 and all(f.encoding is Encoding.MULAW for f in frames)
    y = payload_to_float32(b"".join(f.payload for f in frames), Encoding.MULAW, 1)
    assert np.abs(y - x).max() < 0.02  # μ-law: within 2 % of full scale at this level


def test_realtime_interleave_orders_by_completion_time() -> None:
    a = frames_from_payload(b"\x00" * 3200, 16000, stream_id="a", chunk_ms=50, start_us=0)
    b = frames_from_payload(b"\x00" * 3200, 16000, stream_id="b", chunk_ms=20, start_us=5000)
    merged = list(interleave([a, b], realtime=True))
    due = [f.capture_us + f.n_samples * 1_000_000 // f.sample_rate for f in merged]
    assert due == sorted(due)
    assert len(merged) == 2 + 5


def test_fast_interleave_is_round_robin() -> None:
    a = frames_from_payload(b"\x00" * 6, 8000, stream_id="a", chunk_ms=0.125)
    b = frames_from_payload(b"\x00" * 2, 8000, stream_id="b", chunk_ms=0.125)
    assert [f.stream_id for f in interleave([a, b], realtime=False)] == ["a", "b", "a", "a"]


@pytest.fixture
def wavs(tmp_path: Path) -> list[str]:
    paths = []
    for name, seconds in (("call", 0.3), ("other", 0.15)):
        path = tmp_path / f"{name}.wav"
        sf.write(path, np.zeros(int(16000 * seconds), np.float32), 16000, subtype="PCM_16")
        paths.append(str(path))
    (tmp_path / "deep").mkdir()
    sf.write(tmp_path / "deep" / "call.flac", np.zeros(1600, np.float32), 16000)
    return paths


def test_stream_ids_fan_out_and_stagger(wavs: list[str]) -> None:
    sources, failures = load_sources(wavs, encoding=Encoding.MULAW, sr=8000, stream_id_prefix="t-")
    assert failures == []
    assert [s.name for s in sources] == ["t-call", "t-other"]
    assert sources[0].sr == 8000 and sources[0].n_samples == 2400
    plans = plan_streams(sources, streams=12, chunk_ms=100)
    assert [p.stream_id for p in plans[:3]] == ["t-call-00", "t-other-01", "t-call-02"]
    assert [p.offset_us for p in plans[:3]] == [0, 8333, 16666]
    frames = list(plan_frames(plans, chunk_ms=100, realtime=True, start_us=START_US))
    assert len(frames) == sum(p.n_frames(100) for p in plans) == 6 * 3 + 6 * 2
    assert sum(f.eos for f in frames) == 12
    with pytest.raises(ConfigError):
        plan_streams(sources, streams=1)


def test_folders_expand_and_repeated_stems_stay_unique(wavs: list[str]) -> None:
    folder = str(Path(wavs[0]).parent)
    files, problems = expand_paths([folder])
    assert problems == [] and len(files) == 3
    sources, _ = load_sources(files, encoding=Encoding.PCM_S16LE)
    assert sorted(s.name for s in sources) == ["call", "call-2", "other"]


def test_bad_file_is_reported_and_others_load(wavs: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"nope")
    seen = []
    sources, failures = load_sources(
        [wavs[0], str(bad), wavs[1]], encoding=Encoding.PCM_S16LE, on_error=seen.append
    )
    assert [s.name for s in sources] == ["call", "other"]
    assert failures == seen and str(bad) in str(failures[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "contains no audio files" in expand_paths([empty])[1][0]


def test_stream_id_needs_a_single_file(wavs: list[str]) -> None:
    with pytest.raises(ConfigError):
        load_sources(wavs, encoding=Encoding.PCM_S16LE, stream_id="x")


def test_frames_from_reader_streams_raw_bytes() -> None:
    raw = bytes(range(200)) * 9 + b"\x01"  # 1801 bytes: one trailing half-sample

    async def collect() -> list:
        reader = io.BufferedReader(io.BytesIO(raw))
        return [
            f
            async for f in frames_from_reader(
                reader, 8000, stream_id="pipe", encoding=Encoding.PCM_S16LE, chunk_ms=50
            )
        ]

    frames = asyncio.run(collect())
    assert b"".join(f.payload for f in frames) == raw[:1800]
    assert [len(f.payload) for f in frames] == [800, 800, 200]
    assert [f.eos for f in frames] == [False, False, True]


def test_frames_from_reader_exact_multiple_ends_with_empty_eos() -> None:
    async def collect() -> list:
        reader = io.BufferedReader(io.BytesIO(b"\x00" * 1600))
        return [
            f
            async for f in frames_from_reader(
                reader, 8000, stream_id="p", encoding=Encoding.MULAW, chunk_ms=100
            )
        ]

    frames = asyncio.run(collect())
    assert [len(f.payload) for f in frames] == [800, 800]
    assert frames[-1].eos


def test_a_rate_the_wire_cannot_carry_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "low.wav"
    sf.write(path, np.zeros(2000, np.float32), 2000, subtype="PCM_16")
    sources, failures = load_sources([str(path)], encoding=Encoding.PCM_S16LE)
    assert sources == [] and failures[0].reason == "bad_rate" and str(path) in str(failures[0])
    sources, failures = load_sources([str(path)], encoding=Encoding.PCM_S16LE, sr=8000)
    assert failures == [] and sources[0].sr == 8000
