from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from stream.speakers.vad import check_speech, is_speech_window

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


def test_speech_is_accepted(speech: np.ndarray) -> None:
    verdict = check_speech(speech, SR)
    assert verdict.ok, verdict.describe()
    assert verdict.reason == "speech"


@pytest.mark.parametrize(
    ("make", "reasons"),
    [
        (lambda rng: np.zeros(10 * SR, np.float32), {"silence"}),
        (lambda rng: 1e-4 * rng.normal(size=10 * SR), {"silence"}),
        (
            lambda rng: 0.3 * np.sin(2 * np.pi * 440 * np.arange(10 * SR) / SR),
            {"no_syllables", "steady_spectrum"},
        ),
        (lambda rng: 0.1 * rng.normal(size=10 * SR), {"no_syllables"}),
        (lambda rng: music(10, rng), {"no_syllables", "steady_spectrum"}),
    ],
    ids=["digital-silence", "quiet-hiss", "tone", "white-noise", "music"],
)
def test_non_speech_is_refused_with_a_reason(make, reasons: set[str]) -> None:  # type: ignore[no-untyped-def]
    verdict = check_speech(np.asarray(make(np.random.default_rng(0)), np.float32), SR)
    assert not verdict.ok
    assert verdict.reason in reasons, verdict.describe()


def test_too_little_speech_is_refused(speech: np.ndarray) -> None:
    verdict = check_speech(speech[:SR], SR)
    assert (verdict.ok, verdict.reason) == (False, "too_little_speech")


def test_window_gate(speech: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    assert is_speech_window(speech[SR : 2 * SR], SR)
    assert not is_speech_window(np.zeros(SR, np.float32), SR)
    assert not is_speech_window(1e-4 * rng.normal(size=SR), SR)
    assert not is_speech_window(np.zeros(10, np.float32), SR)


def test_gate_ignores_level(speech: np.ndarray) -> None:
    window = speech[SR : 2 * SR]
    assert is_speech_window(window, SR) == is_speech_window(0.25 * window, SR)
