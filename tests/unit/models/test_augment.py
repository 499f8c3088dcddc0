"""Waveform augmentation: seeded, length-preserving, and a real telephone channel."""

from __future__ import annotations

import numpy as np
import pytest

from models.augment import AugmentConfig, augment, mulaw_round_trip, telephony

SR = 16000


def _tone(f_hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amplitude * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)


def _band_energy(y: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return float(spectrum[(freqs >= lo_hz) & (freqs < hi_hz)].sum())


def test_telephony_removes_everything_above_4_khz_and_keeps_length() -> None:
    y = _tone(1000.0) + _tone(6000.0)
    out = telephony(y, SR)
    assert out.shape == y.shape and out.dtype == np.float32
    assert _band_energy(out, 4100, 8000) < 1e-4 * _band_energy(y, 4100, 8000)
    assert _band_energy(out, 900, 1100) > 0.8 * _band_energy(y, 900, 1100)


def test_mulaw_round_trip_error_is_within_companding_precision() -> None:
    y = _tone(440.0, amplitude=0.9)
    err = np.abs(mulaw_round_trip(y) - y)
    # μ-law steps grow with the level: at most 1/16 of the 8 segment's span
    assert float(err.max()) < 0.02
    assert float(np.abs(mulaw_round_trip(np.zeros(10)))[0]) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_augment_is_reproducible_for_a_seed(seed: int) -> None:
    y = _tone(700.0)
    config = AugmentConfig(copies=1, telephony_prob=0.5)
    a = augment(y, SR, np.random.default_rng(seed), config)
    b = augment(y, SR, np.random.default_rng(seed), config)
    assert np.array_equal(a, b)
    assert a.shape == y.shape and np.max(np.abs(a)) <= 1.0


def test_telephony_probability_one_always_band_limits() -> None:
    y = _tone(6000.0)
    config = AugmentConfig(copies=1, noise_snr_db=None, telephony_prob=1.0, gain_db=(0, 0))
    out = augment(y, SR, np.random.default_rng(0), config)
    assert _band_energy(out, 4100, 8000) < 1e-4 * _band_energy(y, 4100, 8000)
