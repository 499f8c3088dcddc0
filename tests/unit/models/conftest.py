"""Generated labelled audio for the training tests: tones, noise and chirps.

Files vary in rate, length, channel count and container, as a user's folder does;
numpy renders them so the tests need no external tools.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATES = (8000, 16000, 22050, 44100)


def render(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One clip of ``kind`` (``tone``, ``noise`` or ``chirp``) at a random rate and length."""
    sr = int(rng.choice(RATES))
    seconds = float(rng.uniform(1.2, 2.5))
    t = np.arange(int(seconds * sr)) / sr
    level = float(rng.uniform(0.1, 0.5))
    if kind == "tone":
        f0 = rng.uniform(200.0, 1500.0)
        y = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 2 * f0 * t)
    elif kind == "chirp":
        f0, f1 = rng.uniform(200.0, 600.0), rng.uniform(2000.0, 3800.0)
        if rng.random() < 0.5:
            f0, f1 = f1, f0
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
        y = np.sin(phase)
    elif kind == "noise":
        y = rng.normal(0.0, 0.4, size=t.size)
    else:
        raise ValueError(kind)
    y = level * y / np.max(np.abs(y))
    return y.astype(np.float32), sr


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_dataset(files_per_label=6, labels=("tone", "noise", "chirp"))``."""

    def make(
        files_per_label: int = 6,
        labels: tuple[str, ...] = ("tone", "noise", "chirp"),
        seed: int = 0,
    ) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / "data"
        for label in labels:
            (root / label).mkdir(parents=True, exist_ok=True)
            for i in range(files_per_label):
                y, sr = render(label, rng)
                if rng.random() < 0.3:  # some stereo files
                    y = np.stack([y, y * 0.8], axis=1)
                suffix = ".flac" if i % 3 == 2 else ".wav"
                sf.write(root / label / f"{label}_{i:02d}{suffix}", y, sr)
        return root

    return make
