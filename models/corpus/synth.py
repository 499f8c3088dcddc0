"""Signals synthesized in numpy: tones, DTMF, call-progress cadences, noises, hold music.

Everything here is a pure function of its arguments (randomness comes only from the
``rng`` passed in), so a corpus rendered with the same seed is bit-identical.
Outputs are float32 mono in ``[-1, 1]``, shape ``(n,)`` with
``n = round(duration_s * sr)``.

Frequencies follow the standards a call-center stream actually carries:
DTMF (ITU-T Q.23 row/column pairs), North-American and European (CEPT)
ringback/busy cadences, and the T.30 fax calling tone (CNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

SR = 16000

DTMF_ROWS_HZ = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


@dataclass(frozen=True, slots=True)
class Cadence:
    """An on/off tone pattern, e.g. US ringback: 440+480 Hz, 2 s on, 4 s off."""

    name: str
    freqs_hz: tuple[float, ...]
    on_s: float
    off_s: float


CADENCES: dict[str, Cadence] = {
    c.name: c
    for c in (
        Cadence("us_ringback", (440.0, 480.0), 2.0, 4.0),
        Cadence("us_busy", (480.0, 620.0), 0.5, 0.5),
        Cadence("eu_ringback", (425.0,), 1.0, 4.0),
        Cadence("eu_busy", (425.0,), 0.5, 0.5),
        Cadence("fax_cng", (1100.0,), 0.5, 3.0),
    )
}


def n_samples(duration_s: float, sr: int) -> int:
    """Number of samples for ``duration_s`` at ``sr`` (rounded, at least 0)."""
    return max(0, round(duration_s * sr))


def rms_dbfs(y: np.ndarray) -> float:
    """RMS level in dB relative to a full-scale square wave; ``-inf`` for silence."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def set_level(y: np.ndarray, level_dbfs: float, *, peak_limit: float = 0.99) -> np.ndarray:
    """Scale ``y`` to an RMS of ``level_dbfs``, then back off if the peak would clip.

    Silence stays silence (there is no level to scale).
    """
    current = rms_dbfs(y)
    if not np.isfinite(current):
        return y.astype(np.float32)
    out = y * (10.0 ** ((level_dbfs - current) / 20.0))
    peak = float(np.max(np.abs(out)))
    if peak > peak_limit:
        out = out * (peak_limit / peak)
    return np.asarray(out, dtype=np.float32)


def fade(y: np.ndarray, *, sr: int = SR, fade_s: float = 0.01) -> np.ndarray:
    """Raised-cosine fade in and out, so cut edges do not click (a click is a 'tone')."""
    n = min(n_samples(fade_s, sr), y.size // 2)
    if n == 0:
        return y.astype(np.float32)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    out = y.astype(np.float32, copy=True)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad ``y`` to exactly ``n`` samples."""
    if y.size >= n:
        return y[:n].astype(np.float32)
    return np.pad(y, (0, n - y.size)).astype(np.float32)


def tones(
    freqs_hz: Sequence[float], duration_s: float, *, sr: int = SR, amplitude: float = 0.5
) -> np.ndarray:
    """Sum of equal-amplitude sinusoids, scaled so the sum peaks at ``amplitude``."""
    t = np.arange(n_samples(duration_s, sr)) / sr
    y = np.zeros_like(t)
    for f in freqs_hz:
        y += np.sin(2.0 * np.pi * f * t)
    return (y * (amplitude / max(1, len(freqs_hz)))).astype(np.float32)


def tone(freq_hz: float, duration_s: float, *, sr: int = SR, amplitude: float = 0.5) -> np.ndarray:
    """One sinusoid of ``freq_hz``."""
    return tones([freq_hz], duration_s, sr=sr, amplitude=amplitude)


def chirp(
    f0_hz: float,
    f1_hz: float,
    duration_s: float,
    *,
    sr: int = SR,
    amplitude: float = 0.5,
    method: str = "linear",
) -> np.ndarray:
    """Sweep from ``f0_hz`` to ``f1_hz`` (``method`` as :func:`scipy.signal.chirp`)."""
    t = np.arange(n_samples(duration_s, sr)) / sr
    y = signal.chirp(t, f0=f0_hz, t1=max(duration_s, 1e-9), f1=f1_hz, method=method)
    return np.asarray(amplitude * y, dtype=np.float32)


def dtmf_frequencies(key: str) -> tuple[float, float]:
    """(row, column) frequencies of a DTMF key, e.g. ``'5' -> (770.0, 1336.0)``."""
    for r, row in enumerate(DTMF_KEYS):
        c = row.find(key.upper())
        if c >= 0:
            return DTMF_ROWS_HZ[r], DTMF_COLS_HZ[c]
    raise ValueError(f"DTMF key {key!r} is not one of {''.join(DTMF_KEYS)!r}")


def dtmf_digit(
    key: str, *, duration_s: float = 0.1, sr: int = SR, amplitude: float = 0.5
) -> np.ndarray:
    """One DTMF key press (both tones, short fades)."""
    return fade(
        tones(dtmf_frequencies(key), duration_s, sr=sr, amplitude=amplitude), sr=sr, fade_s=0.004
    )


def dtmf_sequence(
    keys: str,
    *,
    tone_s: float = 0.1,
    gap_s: float = 0.1,
    sr: int = SR,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Keys pressed one after another: ``tone_s`` of tone then ``gap_s`` of silence each."""
    gap = np.zeros(n_samples(gap_s, sr), dtype=np.float32)
    parts = [
        np.concatenate([dtmf_digit(k, duration_s=tone_s, sr=sr, amplitude=amplitude), gap])
        for k in keys
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def cadence_tone(
    cadence: Cadence | str,
    duration_s: float,
    *,
    sr: int = SR,
    amplitude: float = 0.5,
    offset_s: float = 0.0,
) -> np.ndarray:
    """``duration_s`` of an on/off pattern, starting ``offset_s`` into its cycle.

    The gate has 5 ms fades so the on/off edges do not add broadband clicks.
    """
    c = CADENCES[cadence] if isinstance(cadence, str) else cadence
    n = n_samples(duration_s, sr)
    t = (np.arange(n) / sr) + offset_s
    period = c.on_s + c.off_s
    gate = ((t % period) < c.on_s).astype(np.float64)
    k = max(1, n_samples(0.005, sr))
    gate = np.convolve(gate, np.ones(k) / k, mode="same")
    carrier = np.zeros(n)
    for f in c.freqs_hz:
        carrier += np.sin(2.0 * np.pi * f * t)
    return (carrier * gate * amplitude / len(c.freqs_hz)).astype(np.float32)


def white_noise(
    duration_s: float, *, rng: np.random.Generator, sr: int = SR, level_dbfs: float = -30.0
) -> np.ndarray:
    """Gaussian white noise at an RMS of ``level_dbfs``."""
    return set_level(rng.standard_normal(n_samples(duration_s, sr)), level_dbfs)


def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise whose power falls as ``1/f**exponent`` (shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(max(n, 2)))
    f = np.fft.rfftfreq(max(n, 2))
    f[0] = f[1]
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n=max(n, 2))[:n]


def pink_noise(
    duration_s: float, *, rng: np.random.Generator, sr: int = SR, level_dbfs: float = -30.0
) -> np.ndarray:
    """1/f noise (equal power per octave) at ``level_dbfs`` RMS."""
    return set_level(_colored(n_samples(duration_s, sr), rng, 1.0), level_dbfs)


def brown_noise(
    duration_s: float, *, rng: np.random.Generator, sr: int = SR, level_dbfs: float = -30.0
) -> np.ndarray:
    """1/f² (Brownian) noise at ``level_dbfs`` RMS: rumble, fans, traffic."""
    return set_level(_colored(n_samples(duration_s, sr), rng, 2.0), level_dbfs)


def babble_noise(
    duration_s: float,
    *,
    rng: np.random.Generator,
    sr: int = SR,
    level_dbfs: float = -30.0,
    n_talkers: int = 6,
) -> np.ndarray:
    """Crowd-like noise: several formant-filtered noise streams with syllable-rate envelopes.

    Not speech (nothing intelligible, no pitch track), but it has speech's
    spectral envelope and 3–6 Hz modulation, which is what makes background
    babble hard to tell from a talker for a naive detector.
    """
    n = n_samples(duration_s, sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for _ in range(n_talkers):
        src = rng.standard_normal(n)
        voice = np.zeros(n)
        for lo, hi in ((250.0, 900.0), (900.0, 2300.0), (2300.0, 3400.0)):
            f_lo = lo * rng.uniform(0.85, 1.15)
            f_hi = min(hi * rng.uniform(0.85, 1.15), 0.45 * sr)
            sos = signal.butter(2, [f_lo, f_hi], btype="bandpass", fs=sr, output="sos")
            voice += signal.sosfilt(sos, src) * rng.uniform(0.3, 1.0)
        rate_hz = rng.uniform(3.0, 6.0)
        env = np.clip(np.sin(2 * np.pi * rate_hz * t + rng.uniform(0, 2 * np.pi)), 0.05, None)
        env *= np.clip(
            np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6.3)), 0.2, None
        )
        out += voice * env
    return set_level(out, level_dbfs)


def near_silence(
    duration_s: float,
    *,
    rng: np.random.Generator,
    sr: int = SR,
    level_dbfs: float = -60.0,
    hum_hz: float | None = None,
) -> np.ndarray:
    """A quiet line: a pink/white noise floor at ``level_dbfs``, optionally a faint mains hum.

    Real "silence" on a call is never digital zero; a model that learned
    ``silence == 0`` would call every quiet line something else.
    """
    if rng.random() < 0.5:
        floor = pink_noise(duration_s, rng=rng, sr=sr, level_dbfs=level_dbfs)
    else:
        floor = white_noise(duration_s, rng=rng, sr=sr, level_dbfs=level_dbfs)
    if hum_hz is not None:
        hum = tones([hum_hz, 2 * hum_hz, 3 * hum_hz], duration_s, sr=sr, amplitude=1.0)
        floor = floor + set_level(hum, level_dbfs - 6.0)
    return floor.astype(np.float32)


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


def _note(midi: float, duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One harmonic note (decaying partials, attack/release envelope): a soft e-piano."""
    f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    n = n_samples(duration_s, sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    for k in range(1, 7):
        if k * f0 >= 0.45 * sr:
            break
        y += np.sin(2 * np.pi * k * f0 * t) * np.exp(-t * (1.5 + k)) / k
    attack = np.clip(t / 0.01, 0.0, 1.0)
    release = np.clip((duration_s - t) / 0.05, 0.0, 1.0)
    return (y * attack * release * rng.uniform(0.6, 1.0)).astype(np.float32)


def hold_music(
    duration_s: float, *, rng: np.random.Generator, sr: int = SR, level_dbfs: float = -22.0
) -> np.ndarray:
    """A synthesized melody over chords: the fallback when fluidsynth is absent.

    A random key, major or minor, I–V–vi–IV style progression, one chord per bar
    and a melody on the scale; enough tonal structure to be "music" to a model.
    """
    n = n_samples(duration_s, sr)
    out = np.zeros(n + sr, dtype=np.float64)
    root = int(rng.integers(55, 67))
    scale = _MAJOR if rng.random() < 0.6 else _MINOR
    beat_s = 60.0 / float(rng.uniform(70, 120))
    progression = [0, 4, 5, 3] if scale is _MAJOR else [0, 5, 3, 4]
    t_s, bar = 0.0, 0
    while t_s < duration_s:
        degree = progression[bar % len(progression)]
        for step in (0, 2, 4):
            pitch = root - 12 + scale[(degree + step) % 7] + 12 * ((degree + step) // 7)
            note = _note(pitch, 4 * beat_s, sr, rng) * 0.35
            start = n_samples(t_s, sr)
            out[start : start + note.size] += note[: out.size - start]
        for b in range(4):
            step = int(rng.integers(0, 8))
            pitch = root + 12 + scale[step % 7] + 12 * (step // 7)
            note = _note(pitch, beat_s * 0.95, sr, rng)
            start = n_samples(t_s + b * beat_s, sr)
            out[start : start + note.size] += note[: out.size - start]
        t_s += 4 * beat_s
        bar += 1
    return fade(set_level(out[:n], level_dbfs), sr=sr)
