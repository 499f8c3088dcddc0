"""Invariants of the numpy signals: frequencies, cadences, lengths, levels, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from models.corpus import synth

SR = 16000


def _peaks_hz(y: np.ndarray, sr: int, k: int) -> list[float]:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / sr)
    peaks: list[float] = []
    for i in np.argsort(spec)[::-1]:
        if all(abs(freqs[i] - p) > 30 for p in peaks):
            peaks.append(float(freqs[i]))
        if len(peaks) == k:
            break
    return sorted(peaks)


@pytest.mark.parametrize("key", list("123A456B789C*0#D"))
def test_dtmf_digit_has_its_row_and_column_frequency(key: str) -> None:
    row, col = synth.dtmf_frequencies(key)
    y = synth.dtmf_digit(key, duration_s=0.2, sr=SR)
    low, high = _peaks_hz(y, SR, 2)
    assert abs(low - row) < 6 and abs(high - col) < 6
    assert row in synth.DTMF_ROWS_HZ and col in synth.DTMF_COLS_HZ


def test_dtmf_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'X'"):
        synth.dtmf_frequencies("X")


def test_dtmf_sequence_length_is_keys_times_tone_plus_gap() -> None:
    y = synth.dtmf_sequence("0123", tone_s=0.1, gap_s=0.05, sr=SR)
    assert y.size == 4 * (1600 + 800)


@pytest.mark.parametrize("name", sorted(synth.CADENCES))
def test_cadence_is_on_then_off_with_its_frequencies(name: str) -> None:
    c = synth.CADENCES[name]
    period = c.on_s + c.off_s
    y = synth.cadence_tone(c, 2 * period, sr=SR)
    assert y.size == round(2 * period * SR)
    on = y[int(0.1 * SR) : int((c.on_s - 0.1) * SR)]
    off = y[int((c.on_s + 0.1) * SR) : int((period - 0.1) * SR)]
    assert np.sqrt(np.mean(on**2)) > 0.1
    assert np.max(np.abs(off)) < 1e-6
    assert np.allclose(_peaks_hz(on, SR, len(c.freqs_hz)), sorted(c.freqs_hz), atol=6)


def test_standard_cadences_have_the_documented_timing() -> None:
    c = synth.CADENCES
    assert (c["us_ringback"].freqs_hz, c["us_ringback"].on_s, c["us_ringback"].off_s) == (
        (440.0, 480.0),
        2.0,
        4.0,
    )
    assert (c["us_busy"].freqs_hz, c["us_busy"].on_s, c["us_busy"].off_s) == (
        (480.0, 620.0),
        0.5,
        0.5,
    )
    assert (c["eu_ringback"].freqs_hz, c["eu_ringback"].on_s) == ((425.0,), 1.0)
    assert (c["fax_cng"].freqs_hz, c["fax_cng"].on_s, c["fax_cng"].off_s) == ((1100.0,), 0.5, 3.0)


@pytest.mark.parametrize(
    "make", [synth.white_noise, synth.pink_noise, synth.brown_noise, synth.babble_noise]
)
def test_noise_has_requested_level_length_and_is_seeded(make) -> None:  # type: ignore[no-untyped-def]
    a = make(1.5, rng=np.random.default_rng(7), sr=SR, level_dbfs=-30.0)
    b = make(1.5, rng=np.random.default_rng(7), sr=SR, level_dbfs=-30.0)
    c = make(1.5, rng=np.random.default_rng(8), sr=SR, level_dbfs=-30.0)
    assert a.dtype == np.float32 and a.size == 24000
    assert synth.rms_dbfs(a) == pytest.approx(-30.0, abs=0.1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_pink_and_brown_noise_tilt_towards_low_frequencies() -> None:
    rng = np.random.default_rng(0)

    def low_share(y: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(y.size, 1 / SR)
        return float(p[f < 500].sum() / p.sum())

    white = low_share(synth.white_noise(2.0, rng=rng))
    pink = low_share(synth.pink_noise(2.0, rng=rng))
    brown = low_share(synth.brown_noise(2.0, rng=rng))
    assert white < pink < brown


@pytest.mark.parametrize("level", [-70.0, -60.0, -50.0])
def test_near_silence_is_quiet_but_never_digital_zero(level: float) -> None:
    y = synth.near_silence(2.0, rng=np.random.default_rng(1), level_dbfs=level, hum_hz=50.0)
    assert level - 1 < synth.rms_dbfs(y) < level + 2
    assert np.count_nonzero(y) > 0.99 * y.size


def test_hold_music_fallback_is_tonal_and_seeded() -> None:
    a = synth.hold_music(3.0, rng=np.random.default_rng(3))
    b = synth.hold_music(3.0, rng=np.random.default_rng(3))
    assert a.size == 48000 and np.array_equal(a, b)
    assert synth.rms_dbfs(a) > -40
    # Harmonic notes: energy concentrated in few bins, unlike noise.
    spec = np.sort(np.abs(np.fft.rfft(a)) ** 2)[::-1]
    assert spec[: spec.size // 100].sum() > 0.5 * spec.sum()


def test_chirp_and_tone_lengths_and_amplitude() -> None:
    assert synth.tone(1000.0, 0.25, sr=8000, amplitude=0.3).size == 2000
    y = synth.chirp(300.0, 3000.0, 1.0, sr=SR, amplitude=0.4)
    assert y.size == SR and np.max(np.abs(y)) == pytest.approx(0.4, abs=1e-3)


def test_set_level_never_clips() -> None:
    y = synth.set_level(synth.tone(440.0, 1.0), 0.0)
    assert np.max(np.abs(y)) <= 0.99 + 1e-6
