from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stream.audio.g711 import mulaw_decode, mulaw_encode
from stream.audio.resample import resample
from stream.speakers.vad import (
    CHUNK,
    SileroVad,
    VadBank,
    check_speech,
    collect_speech,
    shared_model,
    window_speech,
)

SR = 16000


def espeak(text: str) -> np.ndarray:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.fail("espeak-ng and sox are needed (apt install espeak-ng sox)")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en+m3", "--stdout", text], capture_output=True, check=True
    ).stdout
    raw = subprocess.run(
        [
            "sox",
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-e",
            "floating-point",
            "-b",
            "32",
            "-r",
            "16000",
            "-",
        ],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32) * 0.5


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Legato melody: 0.4 s notes with five harmonics and a gentle decay."""
    out = []
    for _ in range(int(seconds / 0.4)):
        f0 = 220 * 2 ** (rng.integers(0, 12) / 12)
        t = np.arange(int(0.4 * SR)) / SR
        note = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
        out.append(note * np.exp(-1.5 * t))
    y = np.concatenate(out)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return espeak(
        "Hello, thank you for calling. My account number is four five six, and I would "
        "like to check the status of my order from last Tuesday, please."
    )


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return shared_model()


REAL_SET = Path.home() / ".cache" / "tympan" / "realset" / "set"


def telephone(y: np.ndarray) -> np.ndarray:
    """8 kHz G.711 μ-law and back to 16 kHz, as a phone stream reaches the worker."""
    narrow = resample(np.asarray(y, np.float32), SR, 8000)
    pcm = np.clip(np.round(narrow * 32767), -32768, 32767).astype(np.int16)
    return resample(mulaw_decode(mulaw_encode(pcm)).astype(np.float32) / 32768, 8000, SR)


def test_speech_is_accepted(speech: np.ndarray, vad: SileroVad) -> None:
    verdict = check_speech(speech, SR, model=vad)
    assert verdict.ok, verdict.describe()
    assert verdict.reason == "speech"


def test_telephone_band_speech_is_accepted(speech: np.ndarray, vad: SileroVad) -> None:
    verdict = check_speech(telephone(speech), SR, model=vad)
    assert verdict.ok, verdict.describe()


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: np.zeros(10 * SR, np.float32),
        lambda rng: 1e-4 * rng.normal(size=10 * SR),
        lambda rng: 0.3 * np.sin(2 * np.pi * 440 * np.arange(10 * SR) / SR),
        lambda rng: 0.3 * np.sign(np.sin(2 * np.pi * 425 * np.arange(10 * SR) / SR)),
        lambda rng: 0.1 * rng.normal(size=10 * SR),
        lambda rng: 0.1 * np.cumsum(rng.normal(size=10 * SR)) / 300,
        lambda rng: music(10, rng),
    ],
    ids=[
        "digital-silence",
        "quiet-hiss",
        "tone",
        "square-tone",
        "white-noise",
        "brown-noise",
        "music",
    ],
)
def test_non_speech_is_refused(make, vad: SileroVad) -> None:  # type: ignore[no-untyped-def]
    y = np.asarray(make(np.random.default_rng(0)), np.float32)
    verdict = check_speech(y, SR, model=vad)
    assert not verdict.ok, verdict.describe()
    assert verdict.reason in {"no_speech", "too_little_speech"}
    assert not check_speech(telephone(y), SR, model=vad).ok


def test_too_little_speech_is_refused(speech: np.ndarray, vad: SileroVad) -> None:
    verdict = check_speech(speech[:SR], SR, model=vad)
    assert (verdict.ok, verdict.reason) == (False, "too_little_speech")


def test_windows_of_speech_and_silence(speech: np.ndarray, vad: SileroVad) -> None:
    clip = np.concatenate([np.zeros(2 * SR, np.float32), speech])
    spans = np.array([[0, SR], [SR // 2, 3 * SR // 2], [3 * SR, 4 * SR]])
    speechy = window_speech(vad.probabilities(clip, SR), spans, SR)
    assert speechy.tolist() == [False, False, True]


def sparse_speech(speech: np.ndarray, *, gap_s: float, copies: int) -> np.ndarray:
    """Short bursts of the same voice, each followed by ``gap_s`` of silence: a voice
    recorded as isolated words (KLettres' letters and syllables are like this)."""
    bursts = [speech[i * SR // 2 : (i + 1) * SR // 2] for i in range(copies)]
    silence = np.zeros(round(gap_s * SR), np.float32)
    return np.concatenate([np.concatenate([b, silence]) for b in bursts])


def test_sparse_speech_is_gathered_past_its_silences(speech: np.ndarray, vad: SileroVad) -> None:
    """Half-second words 7 s apart: the first 20 s hold too little speech to enroll,
    reading on until 4 s of speech are heard does."""
    clip = sparse_speech(speech, gap_s=7.0, copies=12)
    assert not check_speech(clip[: 20 * SR], SR, model=vad).ok
    got = collect_speech(clip, SR, model=vad, max_speech_s=4.0)
    assert got.check.ok, got.check.describe()
    assert 30 * SR < got.end < clip.size
    heard = check_speech(clip[: got.end], SR, model=vad).speech_s
    assert 4.0 <= heard <= 4.0 + 2 * CHUNK / SR
    assert check_speech(clip[: got.end - SR], SR, model=vad).speech_s < 4.0


def test_gathering_stops_at_the_clip_end_and_finds_nothing_in_silence(
    speech: np.ndarray, vad: SileroVad
) -> None:
    got = collect_speech(speech, SR, model=vad, max_speech_s=600.0)
    assert got.end == speech.size and got.check.ok
    silent = collect_speech(np.zeros(5 * SR, np.float32), SR, model=vad, max_speech_s=20.0)
    assert (silent.end, silent.check.reason) == (0, "no_speech")


def test_level_does_not_decide(speech: np.ndarray, vad: SileroVad) -> None:
    loud = vad.probabilities(speech, SR) >= 0.5
    quiet = vad.probabilities(0.25 * speech, SR) >= 0.5
    assert np.mean(loud == quiet) >= 0.9


def test_a_batch_of_streams_scores_each_as_if_alone(speech: np.ndarray, vad: SileroVad) -> None:
    """Streams advanced together in one call, pushed in uneven frames, give each stream
    the probabilities it gets alone in one piece."""
    rng = np.random.default_rng(3)
    others = {"noise": 0.1 * rng.normal(size=speech.size).astype(np.float32), "speech": speech}
    alone = {k: vad.probabilities(v, SR) for k, v in others.items()}
    bank = VadBank(vad, history_chunks=None)
    at = 0
    for size in rng.integers(1, 3000, size=10_000):
        if at >= speech.size:
            break
        bank.push({k: v[at : at + size] for k, v in others.items()})
        at += int(size)
    for key, expected in alone.items():
        got = bank.context(key).probabilities()
        assert got.size == speech.size // CHUNK
        np.testing.assert_allclose(got, expected[: got.size], atol=1e-5)


def test_reset_and_forget_drop_a_streams_state(speech: np.ndarray, vad: SileroVad) -> None:
    bank = VadBank(vad)
    bank.push({"a": speech[: 4 * CHUNK], "b": speech[: 4 * CHUNK]})
    bank.reset("a", at_sample=10 * CHUNK)
    assert bank.context("a").position == 10 * CHUNK
    assert bank.context("a").probabilities().size == 0
    bank.forget("b")
    assert len(bank) == 1


def test_a_file_that_is_not_silero_is_refused(tmp_path: Path) -> None:
    from stream.errors import ContractError

    bad = tmp_path / "vad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ContractError, match=r"vad\.onnx"):
        SileroVad(bad)


def _real_clips(folder: str) -> list[Path]:
    root = REAL_SET / "16k" / folder
    if not root.is_dir():
        pytest.skip(f"{root} is not built: make real-set")
    return sorted(root.rglob("*.wav"))


@pytest.mark.slow
def test_real_voices_enroll_and_real_music_does_not(vad: SileroVad) -> None:
    """Every enrollment voice of the real set (17 languages, letters and syllables)
    holds speech; nearly no produced music piece does (a few game tracks hold what
    both the VAD and the scene model hear as a voice: sung or spoken parts)."""
    import soundfile as sf

    for path in _real_clips("speakers/enroll"):
        y, sr = sf.read(path, dtype="float32")
        assert check_speech(y, sr, model=vad).ok, path
    music = _real_clips("scene/music")
    voiced = []
    for path in music:
        y, sr = sf.read(path, dtype="float32")
        if check_speech(y, sr, model=vad).ok:
            voiced.append(path.name)
    assert len(voiced) <= 0.15 * len(music), voiced
