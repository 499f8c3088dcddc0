"""Offline features against librosa, and the window cutting rules.

Tolerance (log-mel, both ``log`` rules): for each element, with ``a`` ours and ``b``
librosa's, ``|a - b| / max(|b|, 1) <= 1e-4`` wherever librosa's mel *power*
(``S ** (2 / power)``) lies within 80 dB of the clip's peak. Elements more than 80 dB
down sit at the float32 FFT noise floor (librosa runs its FFT in float64 and rounds,
tympan runs it in float32): there we only require our power to be that small too.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import soxr

from stream.errors import AudioError, FeatureSpecError
from stream.features import FeatureSpec, features, logmel, mfcc, window_stack, windows
from stream.features.kernels import kernel_for

RTOL = 1e-4
FLOOR_DB = 80.0

SPECS = {
    "default-16k": FeatureSpec(),
    "8k-call": FeatureSpec(sr=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40),
    "22k-music": FeatureSpec(sr=22050, n_fft=2048, win_length=2048, hop_length=512, n_mels=128),
    "htk-nonorm": FeatureSpec(htk=True, norm=None, fmin=0.0, fmax=7600.0),
    "magnitude": FeatureSpec(power=1.0, n_fft=400, win_length=400, hop_length=100),
    "log-offset": FeatureSpec(log="log_offset", log_offset=1e-6, window="hamming"),
    "ref-amin": FeatureSpec(ref=10.0, amin=1e-8, n_mels=80),
    "power-mels": FeatureSpec(log="none", n_mels=40, fmin=0.0),  # what GE2E reads
}


def librosa_reference(y: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """librosa's log-mel (or log(S+offset)) and its mel spectrogram ``S``."""
    s = librosa.feature.melspectrogram(y=y, **spec.librosa_mel_kwargs())
    if spec.log == "db":
        return librosa.power_to_db(s, ref=spec.ref, amin=spec.amin, top_db=None), s
    if spec.log == "none":  # compared in dB, as the log rules are
        return librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None), s
    return np.log(s + spec.log_offset), s


def assert_logmel_close(ours: np.ndarray, y: np.ndarray, spec: FeatureSpec) -> None:
    ref, s = librosa_reference(y, spec)
    if spec.log == "none":  # power mels: the dB rule's tolerance on 10*log10(S)
        assert ours.dtype == np.float32
        ours = librosa.power_to_db(ours, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)
        spec = dataclasses.replace(spec, log="db", ref=1.0, amin=1e-10)
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    power = s ** (2.0 / spec.power)
    loud = power >= power.max() * 10 ** (-FLOOR_DB / 10)
    err = np.abs(ours - ref) / np.maximum(np.abs(ref), 1.0)
    assert err[loud].max(initial=0.0) <= RTOL, f"max relative error {err[loud].max():.3g}"
    quiet = ~loud
    if quiet.any():
        if spec.log == "db":
            ours_s = spec.ref * 10 ** (ours[quiet].astype(np.float64) / 10)
        else:
            ours_s = np.exp(ours[quiet].astype(np.float64)) - spec.log_offset
        ours_power = np.abs(ours_s) ** (2.0 / spec.power)
        assert ours_power.max() <= power.max() * 10 ** (-(FLOOR_DB - 10) / 10)


# -- signals -----------------------------------------------------------------------
def noise(sr: int, seconds: float = 1.5) -> np.ndarray:
    return (0.1 * np.random.default_rng(sr).standard_normal(int(sr * seconds))).astype(np.float32)


def tone(sr: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def chirp(sr: int, seconds: float = 1.5) -> np.ndarray:
    return librosa.chirp(fmin=100.0, fmax=sr / 2 * 0.9, sr=sr, duration=seconds).astype(np.float32)


def music(sr: int, seconds: float = 2.0) -> np.ndarray:
    """Three harmonic notes with decaying envelopes, one after another and overlapping."""
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for onset, midi in [(0.0, 60), (0.5, 64), (1.0, 67), (1.2, 72)]:
        f0 = librosa.midi_to_hz(midi)
        env = np.where(t >= onset, np.exp(-3.0 * (t - onset)), 0.0)
        y += env * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6) if k * f0 < sr / 2)
    return (0.2 * y).astype(np.float32)


@pytest.fixture(scope="module")
def speech_22k(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    path = Path(tmp_path_factory.mktemp("speech")) / "speech.wav"
    text = "Thank you for calling. Please hold while I look up your account."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    y, sr = soundfile.read(path, dtype="float32")
    assert sr == 22050
    return np.asarray(y, dtype=np.float32)


SIGNALS = {"noise": noise, "tone": tone, "chirp": chirp, "music": music}


@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("signal", SIGNALS)
def test_logmel_matches_librosa(spec_name: str, signal: str) -> None:
    spec = SPECS[spec_name]
    y = SIGNALS[signal](spec.sr)
    assert_logmel_close(features(y, spec), y, spec)


@pytest.mark.parametrize("spec_name", SPECS)
def test_logmel_matches_librosa_on_speech(spec_name: str, speech_22k: np.ndarray) -> None:
    spec = SPECS[spec_name]
    y = soxr.resample(speech_22k, 22050, spec.sr).astype(np.float32)
    assert_logmel_close(features(y, spec), y, spec)


@pytest.mark.parametrize("dct_type", [1, 2, 3])
@pytest.mark.parametrize("log", ["db", "log_offset"])
def test_mfcc_is_librosa_dct_of_our_logmel(dct_type: int, log: str) -> None:
    spec = FeatureSpec(kind="mfcc", n_mfcc=13, dct_type=dct_type, log=log)  # type: ignore[arg-type]
    y = music(spec.sr)
    ours = mfcc(y, spec)
    ref = librosa.feature.mfcc(S=logmel(y, spec), n_mfcc=13, dct_type=dct_type, norm="ortho")
    assert ours.shape == ref.shape == (13, features(y, spec).shape[1])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_mfcc_matches_full_librosa_pipeline_on_noise() -> None:
    spec = FeatureSpec(kind="mfcc", n_mfcc=20)
    y = noise(spec.sr)
    ref = librosa.feature.mfcc(S=librosa_reference(y, spec)[0], n_mfcc=20, norm="ortho")
    err = np.abs(features(y, spec) - ref) / np.maximum(np.abs(ref), 1.0)
    assert err.max() <= RTOL


def test_shape_and_frame_count() -> None:
    spec = FeatureSpec()
    for n in [0, spec.n_fft - 1, spec.n_fft, spec.n_fft + spec.hop_length, 16000]:
        out = features(np.zeros(n, dtype=np.float32), spec)
        expected = 0 if n < spec.n_fft else 1 + (n - spec.n_fft) // spec.hop_length
        assert out.shape == (spec.n_mels, expected)
        assert out.dtype == np.float32 and out.flags.c_contiguous


def test_silence_gives_the_floor_value() -> None:
    spec = FeatureSpec(ref=1.0, amin=1e-10)
    out = features(np.zeros(4000, dtype=np.float32), spec)
    np.testing.assert_allclose(out, -100.0, rtol=1e-6)
    np.testing.assert_array_equal(
        out, np.broadcast_to(kernel_for(spec).silence[:, None], out.shape)
    )


@pytest.mark.parametrize(
    ("y", "reason"),
    [
        (np.zeros((2, 1000), dtype=np.float32), "bad_shape"),
        (np.zeros(1000, dtype=np.int16), "bad_dtype"),
        (np.array([0.0, np.nan] * 500, dtype=np.float32), "non_finite"),
        (np.array([0.0, np.inf] * 500, dtype=np.float32), "non_finite"),
    ],
)
def test_bad_audio_raises_audio_error(y: np.ndarray, reason: str) -> None:
    with pytest.raises(AudioError) as info:
        features(y, FeatureSpec())
    assert info.value.reason == reason


def test_float64_input_is_cast() -> None:
    y = noise(16000)
    spec = FeatureSpec()
    np.testing.assert_array_equal(features(y.astype(np.float64), spec), features(y, spec))


# -- windows ------------------------------------------------------------------------
def test_each_window_is_librosa_on_its_span() -> None:
    """The contract that makes spans meaningful: window k == features of span(k)."""
    spec = FeatureSpec()
    y = music(spec.sr, seconds=3.0)
    cut = windows(features(y, spec), spec, stream_id="clip")
    full = [w for w in cut if not w.padded]
    assert [w.index for w in full] == list(range(len(full)))
    for w in full:
        assert (w.start_sample, w.end_sample) == spec.window_span(w.index)
        assert w.features.shape == (spec.n_mels, spec.frames_per_window)
        np.testing.assert_array_equal(w.features, features(y[w.start_sample : w.end_sample], spec))
        assert w.stream_id == "clip"
        assert w.start_s(spec.sr) == w.start_sample / spec.sr


def test_partial_window_is_padded_with_silence() -> None:
    spec = FeatureSpec()  # 97 frames per window, 50 frames between windows
    n_frames = 97 + 50 + 20
    y = noise(spec.sr, seconds=(spec.n_fft + (n_frames - 1) * spec.hop_length) / spec.sr)
    feats = features(y, spec)
    assert feats.shape[1] == n_frames
    cut = windows(feats, spec)
    assert [(w.index, w.padded) for w in cut] == [(0, False), (1, False), (2, True)]
    last = cut[-1]
    real = n_frames - 100
    np.testing.assert_array_equal(last.features[:, :real], feats[:, 100:])
    silence = np.broadcast_to(kernel_for(spec).silence[:, None], (spec.n_mels, 97 - real))
    np.testing.assert_array_equal(last.features[:, real:], silence)
    assert last.start_sample == spec.window_span(2)[0]
    assert last.end_sample == (n_frames - 1) * spec.hop_length + spec.n_fft == len(y)


def test_partial_window_dropped_or_not_final() -> None:
    spec = dataclasses.replace(FeatureSpec(), partial_window="drop")
    feats = features(noise(spec.sr, seconds=1.3), spec)
    assert [w.padded for w in windows(feats, spec)] == [False]
    padded_spec = FeatureSpec()
    assert [w.padded for w in windows(feats, padded_spec, final=False)] == [False]


def test_short_stream_is_one_padded_window_and_empty_is_none() -> None:
    spec = FeatureSpec()
    feats = features(noise(spec.sr, seconds=0.2), spec)
    (only,) = windows(feats, spec)
    assert only.padded and only.index == 0 and only.start_sample == 0
    drop = dataclasses.replace(spec, partial_window="drop")
    assert windows(feats, drop) == []
    assert windows(features(np.zeros(100, dtype=np.float32), spec), spec) == []


def test_no_partial_window_when_last_frame_is_covered() -> None:
    spec = FeatureSpec()
    feats = features(noise(spec.sr, seconds=1.5), spec)
    n_frames = spec.frames_per_window + spec.hop_frames  # exactly two full windows
    cut = windows(feats[:, :n_frames], spec)
    assert [(w.index, w.padded) for w in cut] == [(0, False), (1, False)]


def test_window_stack_is_model_input() -> None:
    spec = FeatureSpec(kind="mfcc", n_mfcc=13)
    feats = features(noise(spec.sr, seconds=2.2), spec)
    x, spans = window_stack(feats, spec)
    assert x.shape == (len(spans), *spec.input_shape) == (len(spans), 13, spec.frames_per_window, 1)
    assert x.dtype == np.float32
    assert spans[0] == spec.window_span(0)


def test_spec_rejects_window_shorter_than_a_frame_and_bad_dct() -> None:
    with pytest.raises(FeatureSpecError):
        FeatureSpec(n_fft=2048, win_length=2048, window_seconds=0.1)
    with pytest.raises(FeatureSpecError):
        FeatureSpec(dct_type=5)


def test_power_mels_have_no_mfcc() -> None:
    with pytest.raises(FeatureSpecError, match=r"kind='mfcc' needs a log rule"):
        FeatureSpec(kind="mfcc", log="none")


def test_shipped_models_keep_their_spec_hashes() -> None:
    """Adding a log rule must not move any existing model's hash (the worker checks it)."""
    import json

    zoo = Path(__file__).resolve().parents[4] / "models" / "zoo"
    manifests = sorted(zoo.glob("*/*/manifest.json"))
    assert len(manifests) >= 5
    for path in manifests:
        data = json.loads(path.read_text())
        assert FeatureSpec.from_dict(data["spec"]).spec_hash == data["spec_hash"], path


def test_read_spec_round_trips_and_names_the_file(tmp_path: Path) -> None:
    from stream.features.spec import read_spec

    path = tmp_path / "spec.json"
    spec = FeatureSpec(n_mels=40)
    path.write_text(spec.to_json())
    assert read_spec(path) == spec
    path.write_text('{"n_mels": 40, "bogus": 1}')
    with pytest.raises(
        FeatureSpecError, match=r"spec\.json: unknown FeatureSpec field\(s\): bogus"
    ):
        read_spec(path)
    with pytest.raises(FeatureSpecError, match=r"missing\.json: cannot read FeatureSpec"):
        read_spec(tmp_path / "missing.json")
