"""FeatureBank: streaming features equal offline features, whatever the chunking.

Streaming and offline run the same kernel on the same frames, and the kernel pads
every batch so a frame's numbers do not depend on its batch: the tests require
bit-identical features (``assert_array_equal``), not a tolerance.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.errors import AudioError, SequenceError
from stream.features import FeatureSpec, Window, features, frontend, windows
from stream.features.frontend import FeatureBank
from stream.features.kernels import kernel_for

SPEC = FeatureSpec()
SMALL = FeatureSpec(
    sr=8000,
    n_fft=256,
    win_length=200,
    hop_length=80,
    n_mels=24,
    window_seconds=0.25,
    hop_seconds=0.1,
)


def audio(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000
    y = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    return y.astype(np.float32)


def offline_windows(y: np.ndarray, spec: FeatureSpec, stream_id: str) -> list[Window]:
    return windows(features(y, spec), spec, stream_id=stream_id)


def feed(bank: FeatureBank, stream_id: str, y: np.ndarray, cuts: list[int]) -> list[Window]:
    out: list[Window] = []
    for piece in np.split(y, sorted(cuts)):
        result = bank.push({stream_id: piece})
        assert result.rejects == {}
        out.extend(result.windows)
    return out + bank.flush(stream_id)


def assert_same_windows(got: list[Window], want: list[Window]) -> None:
    assert [(w.stream_id, w.index, w.start_sample, w.end_sample, w.padded) for w in got] == [
        (w.stream_id, w.index, w.start_sample, w.end_sample, w.padded) for w in want
    ]
    for a, b in zip(got, want, strict=True):
        assert a.features.dtype == np.float32 and a.features.shape == b.features.shape
        np.testing.assert_array_equal(a.features, b.features)


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        SMALL,
        dataclasses.replace(SMALL, kind="mfcc", n_mfcc=13),
        dataclasses.replace(SPEC, log="none", n_mels=40, fmin=0.0),  # speaker-embed/2's
    ],
)
def test_streaming_equals_offline(spec: FeatureSpec) -> None:
    y = audio(int(2.7 * spec.sr))
    got = feed(FeatureBank(spec), "s", y, list(range(0, len(y), 1234)))
    assert_same_windows(got, offline_windows(y, spec, "s"))
    assert got[-1].padded


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=6000),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=12),
    partial=st.sampled_from(["pad", "drop"]),
)
def test_any_chunking_gives_identical_windows(n: int, cuts: list[int], partial: str) -> None:
    spec = dataclasses.replace(SMALL, partial_window=partial)  # type: ignore[arg-type]
    y = audio(n, seed=n)
    got = feed(FeatureBank(spec), "s", y, [c for c in cuts if c <= n])
    assert_same_windows(got, offline_windows(y, spec, "s"))


@pytest.mark.parametrize("group_samples", [frontend.GROUP_SAMPLES, 1000])
def test_many_streams_in_one_push_equal_each_alone(
    group_samples: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frontend, "GROUP_SAMPLES", group_samples)  # several batches per push
    rng = np.random.default_rng(7)
    clips = {f"call-{i}": audio(int(rng.integers(0, 9000)), seed=i) for i in range(12)}
    bank = FeatureBank(SMALL, max_streams=12)
    got: dict[str, list[Window]] = {sid: [] for sid in clips}
    pos = dict.fromkeys(clips, 0)
    while any(pos[s] < len(y) for s, y in clips.items()):
        chunks = {}
        for sid, y in clips.items():
            step = int(rng.integers(0, 1500))
            chunks[sid] = y[pos[sid] : pos[sid] + step]
            pos[sid] += step
        result = bank.push(chunks)
        for w in result.windows:
            got[w.stream_id].append(w)
    for sid, y in clips.items():
        alone = feed(FeatureBank(SMALL), sid, y, [len(y) // 3])
        assert_same_windows(got[sid] + bank.flush(sid), alone)
    assert bank.open_streams == []


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=0, max_value=8000), cut=st.integers(min_value=0, max_value=8000))
def test_windows_with_gaps_between_them(n: int, cut: int) -> None:
    """hop_seconds > window_seconds: frames between windows belong to none."""
    spec = dataclasses.replace(SMALL, window_seconds=0.1, hop_seconds=0.25)
    assert spec.hop_frames > spec.frames_per_window
    y = audio(n, seed=n)
    got = feed(FeatureBank(spec), "s", y, [min(cut, n)])
    assert_same_windows(got, offline_windows(y, spec, "s"))
    assert all(w.end_sample <= len(y) for w in got)


def test_windows_come_out_as_soon_as_complete() -> None:
    bank = FeatureBank(SMALL)
    first_end = SMALL.window_span(0)[1]
    y = audio(first_end + 10)
    assert bank.push({"s": y[: first_end - 1]}).windows == []
    (w,) = bank.push({"s": y[first_end - 1 :]}).windows
    assert (w.index, w.start_sample, w.end_sample, w.padded) == (0, 0, first_end, False)
    assert w.end_s(SMALL.sr) == first_end / SMALL.sr


def test_flush_pads_or_drops_the_partial_window() -> None:
    y = audio(SMALL.window_span(1)[1] + 5 * SMALL.hop_length)
    bank = FeatureBank(SMALL)
    done = bank.push({"s": y}).windows
    assert [w.index for w in done] == [0, 1]
    (last,) = bank.flush("s")
    assert last.padded and last.index == 2
    assert last.end_sample == len(y) - (len(y) - SMALL.n_fft) % SMALL.hop_length
    silence = kernel_for(SMALL).silence
    np.testing.assert_array_equal(last.features[:, -1], silence)
    assert bank.open_streams == []

    drop = FeatureBank(dataclasses.replace(SMALL, partial_window="drop"))
    drop.push({"s": y})
    assert drop.flush("s") == []


def test_short_stream_yields_one_padded_window_and_tiny_one_none() -> None:
    bank = FeatureBank(SMALL)
    bank.push({"short": audio(SMALL.n_fft + 3 * SMALL.hop_length), "tiny": audio(100)})
    (w,) = bank.flush("short")
    assert w.padded and w.index == 0 and w.start_sample == 0
    assert bank.flush("tiny") == []


def test_bad_chunks_are_rejected_per_stream_and_state_survives() -> None:
    y = audio(6000)
    bank = FeatureBank(SMALL)
    reference = FeatureBank(SMALL)
    bad = {
        "nan": np.array([0.0, np.nan], dtype=np.float32),
        "inf": np.full(300, np.inf, dtype=np.float32),
        "dtype": np.zeros(300, dtype=np.float64),
        "shape": np.zeros((2, 300), dtype=np.float32),
        "type": [0.0, 1.0],
    }
    ids = ["ok", *bad]
    bank.push({sid: y[:2000] for sid in ids})
    reference.push({"ok": y[:2000]})
    result = bank.push({"ok": y[2000:4000], **bad})  # type: ignore[dict-item]
    assert set(result.rejects) == set(bad)
    reasons = {sid: e.reason for sid, e in result.rejects.items()}
    assert reasons == {
        "nan": "non_finite",
        "inf": "non_finite",
        "dtype": "bad_dtype",
        "shape": "bad_shape",
        "type": "bad_type",
    }
    for sid, error in result.rejects.items():
        assert isinstance(error, AudioError) and error.stream_id == sid and sid in str(error)
    assert_same_windows(result.windows, reference.push({"ok": y[2000:4000]}).windows)
    # a rejected stream goes on as if the bad chunk never came
    later = bank.push({"nan": y[2000:6000]}).windows + bank.flush("nan")
    assert_same_windows(
        [dataclasses.replace(w, stream_id="x") for w in later],
        [w for w in offline_windows(y, SMALL, "x") if w.end_sample > 2000],
    )


def test_empty_chunks_are_noops() -> None:
    bank = FeatureBank(SMALL)
    empty = np.zeros(0, dtype=np.float32)
    assert bank.push({"s": empty}) == bank.push({})
    y = audio(5000)
    got = feed(bank, "s", y, [0, 0, 2500, 2500, 5000])
    assert_same_windows(got, offline_windows(y, SMALL, "s"))


def test_max_streams_rejects_new_streams_and_close_frees_a_slot() -> None:
    bank = FeatureBank(SMALL, max_streams=2)
    chunk = audio(500)
    result = bank.push({"a": chunk, "b": chunk, "c": chunk})
    assert list(result.rejects) == ["c"] and result.rejects["c"].reason == "stream_limit"
    bank.close("a")
    assert bank.push({"c": chunk}).rejects == {}
    assert bank.open_streams == ["b", "c"]


def test_growing_bank_keeps_state() -> None:
    bank = FeatureBank(SMALL)
    y = audio(7000)
    got = bank.push({"first": y[:3000]}).windows
    bank.push({f"other-{i}": y[:100] for i in range(40)})  # forces the arrays to grow
    got += bank.push({"first": y[3000:]}).windows + bank.flush("first")
    assert_same_windows(got, offline_windows(y, SMALL, "first"))


def test_reset_continues_from_true_sample_offsets() -> None:
    hop_samples = SMALL.hop_frames * SMALL.hop_length
    before, after = audio(3000, seed=1), audio(4000, seed=2)
    gap_at = 20 * hop_samples  # a resume point on the window grid
    bank = FeatureBank(SMALL)
    got = bank.push({"s": before}).windows
    tail = bank.reset("s", at_sample=gap_at)
    assert_same_windows(got + tail, offline_windows(before, SMALL, "s"))
    resumed = bank.push({"s": after}).windows + bank.flush("s")
    want = offline_windows(after, SMALL, "s")
    assert [w.index for w in resumed] == [w.index + 20 for w in want]
    assert [(w.start_sample, w.end_sample) for w in resumed] == [
        (w.start_sample + gap_at, w.end_sample + gap_at) for w in want
    ]
    for a, b in zip(resumed, want, strict=True):
        np.testing.assert_array_equal(a.features, b.features)
        if not a.padded:
            assert (a.start_sample, a.end_sample) == SMALL.window_span(a.index)


def test_reset_defaults_to_samples_received_and_refuses_to_go_back() -> None:
    bank = FeatureBank(SMALL)
    bank.push({"s": audio(1001)})
    bank.reset("s")
    (w,) = bank.push({"s": audio(SMALL.window_span(0)[1])}).windows
    assert w.start_sample == 1001 and w.index == -(-1001 // (SMALL.hop_frames * SMALL.hop_length))
    with pytest.raises(SequenceError):
        bank.reset("s", at_sample=5)


def test_reset_or_flush_of_an_unknown_stream() -> None:
    bank = FeatureBank(SMALL, max_streams=1)
    assert bank.flush("never") == []
    assert bank.reset("late", at_sample=800) == []
    (w,) = bank.push({"late": audio(SMALL.window_span(0)[1])}).windows
    assert w.start_sample == 800
    with pytest.raises(AudioError, match="max_streams=1"):
        bank.reset("another")


def test_state_is_small_and_unknown_streams_raise() -> None:
    bank = FeatureBank(SPEC)
    bank.push({"s": audio(100)})
    assert bank.state_bytes("s") <= 100_000
    with pytest.raises(KeyError, match="'nope'"):
        bank.state_bytes("nope")
    bank.close("nope")  # closing an unknown stream is harmless


def test_import_pulls_in_neither_tensorflow_nor_faust() -> None:
    code = (
        "import sys, stream.features, stream.features.frontend, stream.features.offline;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'faust', 'models', 'exporters')];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
