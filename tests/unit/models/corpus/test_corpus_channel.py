"""The telephone channel: G.711 matches the ITU tables, the band stops at 4 kHz."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.corpus import channel, synth

SR = 16000


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_decode_then_encode_is_the_identity_on_codes(law: str) -> None:
    codes = np.arange(256, dtype=np.uint8)
    enc, dec = (
        (channel.mulaw_encode, channel.mulaw_decode)
        if law == "mulaw"
        else (channel.alaw_encode, channel.alaw_decode)
    )
    values = dec(codes)
    again = enc(values)
    # μ-law has two zeros (0x7F and 0xFF); both decode to 0 and re-encode to one of them.
    assert np.array_equal(dec(again), values)


def test_g711_known_values() -> None:
    # ITU-T G.711: μ-law 0xFF and A-law 0xD5 are the codes for (positive) zero.
    assert channel.mulaw_encode(np.zeros(1))[0] == 0xFF
    assert channel.alaw_encode(np.zeros(1))[0] == 0xD5
    assert channel.mulaw_decode(np.array([0x80], dtype=np.uint8))[0] == pytest.approx(32124 / 32768)
    assert channel.alaw_decode(np.array([0xAA], dtype=np.uint8))[0] == pytest.approx(32256 / 32768)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=-1.0, max_value=1.0), st.sampled_from(["mulaw", "alaw"]))
def test_g711_quantization_error_is_relative(x: float, law: str) -> None:
    q = float(channel.g711_quantize(np.array([x], dtype=np.float32), law=law)[0])  # type: ignore[arg-type]
    assert abs(q - x) <= max(0.07 * abs(x), 2e-3)
    assert q == 0.0 or np.sign(q) == np.sign(x) or abs(x) < 1e-3


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_telephone_keeps_energy_below_4khz(law: str) -> None:
    y = synth.white_noise(2.0, rng=np.random.default_rng(0), level_dbfs=-20.0)
    out = channel.telephone(y, sr=SR, law=law)  # type: ignore[arg-type]
    assert out.size == y.size
    p = np.abs(np.fft.rfft(out)) ** 2
    f = np.fft.rfftfreq(out.size, 1 / SR)
    assert p[f > 4000].sum() < 1e-3 * p.sum()
    assert p[(f > 300) & (f < 3400)].sum() > 0.9 * p.sum()


def test_telephone_at_8khz_gives_exact_mulaw_levels() -> None:
    y = synth.tone(1000.0, 0.5, sr=SR, amplitude=0.5)
    out = channel.telephone(y, sr=SR, law="mulaw", out_sr=8000)
    assert out.size == 4000
    assert np.array_equal(channel.mulaw_decode(channel.mulaw_encode(out)), out)


def test_add_noise_sets_the_snr() -> None:
    rng = np.random.default_rng(2)
    clean = synth.tone(440.0, 1.0, amplitude=0.3)
    noise = synth.white_noise(1.0, rng=rng, level_dbfs=-10.0)
    mixed = channel.add_noise(clean, noise, snr_db=10.0)
    resid = mixed - clean
    assert synth.rms_dbfs(clean) - synth.rms_dbfs(resid) == pytest.approx(10.0, abs=0.2)


def test_gain_db_clips_to_full_scale() -> None:
    y = channel.gain_db(synth.tone(440.0, 0.1, amplitude=0.5), 12.0)
    assert np.max(np.abs(y)) <= 1.0


def test_sox_pitch_and_tempo() -> None:
    y = synth.tone(500.0, 1.0, amplitude=0.5)
    faster = channel.pitch_tempo(y, sr=SR, tempo=2.0)
    assert abs(faster.size - SR // 2) < 0.05 * SR
    up = channel.pitch_tempo(y, sr=SR, cents=1200)
    spec = np.abs(np.fft.rfft(up[2000:-2000]))
    peak = np.fft.rfftfreq(up.size - 4000, 1 / SR)[np.argmax(spec)]
    assert abs(peak - 1000.0) < 20
