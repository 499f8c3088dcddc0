"""Waveform augmentation: seeded, length-preserving, and a real telephone channel."""

from __future__ import annotations

import numpy as np
import pytest

from models.augment import (
    AugmentConfig,
    active_level_dbfs,
    add_noise,
    augment,
    microphone,
    mulaw_round_trip,
    noise_floor,
    room,
    telephony,
)

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


@pytest.mark.parametrize("seed", range(6))
def test_old_configs_draw_the_same_numbers_as_before_room_and_microphone_existed(
    seed: int,
) -> None:
    """scene/1, scene/2 and instruments/1 rebuild the same: with the new steps at
    probability 0, a copy is the one the steps before them made (written out here)."""
    y = _tone(700.0)
    config = AugmentConfig(copies=1, telephony_prob=0.5)
    rng = np.random.default_rng(seed)
    old = np.roll(y, int(rng.integers(-4000, 4001)))
    old = old * np.float32(10.0 ** (rng.uniform(-12.0, 6.0) / 20.0))
    old = add_noise(old, snr_db=float(rng.uniform(15.0, 40.0)), rng=rng)
    if rng.random() < 0.5:
        old = telephony(old, SR)
    out = augment(y, SR, np.random.default_rng(seed), config)
    assert np.array_equal(out, np.clip(old, -1.0, 1.0).astype(np.float32))


@pytest.mark.parametrize("seed", range(4))
def test_room_keeps_length_and_level_and_spreads_an_impulse_in_time(seed: int) -> None:
    click = np.zeros(SR, dtype=np.float32)
    click[100] = 0.5
    out = room(click, SR, np.random.default_rng(seed))
    assert out.shape == click.shape and out.dtype == np.float32
    assert np.isclose(np.sqrt(np.mean(out**2)), np.sqrt(np.mean(click**2)), rtol=1e-3)
    assert np.count_nonzero(np.abs(out[: int(0.1 * SR)]) > 1e-4) > 0.01 * SR  # a tail
    assert float(np.max(np.abs(out[:100]))) < 1e-6  # causal: nothing before the sound


@pytest.mark.parametrize("seed", range(4))
def test_microphone_cuts_the_deep_bass_and_keeps_the_level(seed: int) -> None:
    y = _tone(30.0) + _tone(1000.0)
    out = microphone(y, SR, np.random.default_rng(seed))
    assert out.shape == y.shape
    assert np.isclose(np.sqrt(np.mean(out**2)), np.sqrt(np.mean(y**2)), rtol=1e-3)
    ratio_in = _band_energy(y, 20, 40) / _band_energy(y, 900, 1100)
    ratio_out = _band_energy(out, 20, 40) / _band_energy(out, 900, 1100)
    assert ratio_out < 0.5 * ratio_in


def test_telephone_band_removes_what_is_below_300_hz() -> None:
    y = _tone(100.0) + _tone(1000.0)
    plain, band = telephony(y, SR), telephony(y, SR, phone_band=True)
    assert _band_energy(band, 80, 120) < 0.05 * _band_energy(plain, 80, 120)
    assert _band_energy(band, 900, 1100) > 0.7 * _band_energy(plain, 900, 1100)


@pytest.mark.parametrize(("colour", "slope"), [("white", 1.0), ("pink", 43.0), ("brown", 1849.0)])
def test_noise_colour_tilts_the_spectrum_and_keeps_the_snr(colour: str, slope: float) -> None:
    y = _tone(1000.0, seconds=4.0)
    noise = add_noise(y, snr_db=10.0, rng=np.random.default_rng(0), colour=colour) - y
    power = float(np.mean(noise.astype(np.float64) ** 2))
    assert np.isclose(power, float(np.mean(y.astype(np.float64) ** 2)) / 10.0, rtol=0.05)
    low, high = _band_energy(noise, 100, 200), _band_energy(noise, 6400, 6500)
    # equal 100 Hz bands centred 43× apart: power per hertz falls as 1/f (pink), 1/f² (brown)
    assert slope / 3 < low / high < slope * 3


def test_room_and_microphone_leave_line_signals_alone() -> None:
    """A tone made on the line never crossed a room: with ``acoustic_labels`` it keeps its
    spectrum, while a voice's copy goes through both steps."""
    y = _tone(1000.0)
    config = AugmentConfig(
        copies=1,
        gain_db=(0.0, 0.0),
        noise_snr_db=None,
        max_shift_s=0.0,
        room_prob=1.0,
        mic_prob=1.0,
        acoustic_labels=("speech", "music", "noise"),
    )
    tone = augment(y, SR, np.random.default_rng(0), config, labels=("tone",))
    voice = augment(y, SR, np.random.default_rng(0), config, labels=("speech",))
    assert np.array_equal(tone, y)
    assert not np.allclose(voice, y, atol=1e-3)


def test_active_level_is_the_louder_half_so_pauses_do_not_lower_it() -> None:
    word = _tone(300.0, seconds=0.5, amplitude=0.1)
    with_pauses = np.concatenate([word, np.zeros(SR // 2, np.float32), word])
    expected = 20 * np.log10(0.1 / np.sqrt(2))
    assert abs(active_level_dbfs(word) - expected) < 0.1
    assert abs(active_level_dbfs(with_pauses) - expected) < 0.1
    assert active_level_dbfs(np.zeros(SR, np.float32)) == float("-inf")


@pytest.mark.parametrize("seed", range(5))
def test_level_puts_a_voice_in_the_range_whatever_its_recording_level(seed: int) -> None:
    """A loud and a quiet recording of a voice both land in ``level_dbfs``; a tone
    (not in ``level_labels``) keeps the relative gain."""
    config = AugmentConfig(
        copies=1,
        noise_snr_db=None,
        max_shift_s=0.0,
        level_dbfs=(-48.0, -40.0),
        level_labels=("speech",),
    )
    for amplitude in (0.9, 0.001):
        voice = augment(
            _tone(200.0, amplitude=amplitude),
            SR,
            np.random.default_rng(seed),
            config,
            labels=("speech",),
        )
        assert -48.1 < active_level_dbfs(voice) < -39.9
    tone = augment(
        _tone(200.0, amplitude=0.5), SR, np.random.default_rng(seed), config, labels=("tone",)
    )
    assert -9.1 - 12.0 < active_level_dbfs(tone) < -9.0 + 6.0  # 0.5 peak: -9.03 dBFS


@pytest.mark.parametrize("seed", range(6))
def test_noise_floor_fills_the_pauses_below_the_voice(seed: int) -> None:
    """Between two words the floor lies ``below_db`` under the words' active level, and
    digital silence stays silent (there is no level to set a floor under)."""
    word = _tone(300.0, seconds=0.5, amplitude=0.1)
    y = np.concatenate([word, np.zeros(SR, np.float32), word])
    out = noise_floor(y, SR, np.random.default_rng(seed), below_db=30.0)
    pause = out[SR // 2 + 1000 : SR + SR // 2 - 1000]
    floor_db = 10 * np.log10(np.mean(pause.astype(np.float64) ** 2))
    assert abs(floor_db - (active_level_dbfs(y) - 30.0)) < 3.0
    assert np.array_equal(
        noise_floor(np.zeros(SR, np.float32), SR, np.random.default_rng(seed), below_db=30.0),
        np.zeros(SR),
    )


def test_the_floor_is_only_for_the_floor_labels() -> None:
    config = AugmentConfig(
        copies=1,
        gain_db=(0.0, 0.0),
        noise_snr_db=None,
        max_shift_s=0.0,
        floor_prob=1.0,
        floor_labels=("speech",),
    )
    y = _tone(1000.0)
    tone = augment(y, SR, np.random.default_rng(0), config, labels=("tone",))
    voice = augment(y, SR, np.random.default_rng(0), config, labels=("speech",))
    assert np.array_equal(tone, y)
    assert _band_energy(voice, 20, 250) > 1e3 * _band_energy(y, 20, 250)
