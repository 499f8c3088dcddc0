"""Waveform augmentation applied before features: gain, noise, time shift, telephony.

Why on the waveform: every change then reaches the model through the one feature
frontend serving uses, so an augmented window is a window serving could really
see. The telephony round trip (resample to 8 kHz, G.711 μ-law encode/decode,
resample back) is what a call-center stream goes through before it reaches the
worker; training on it makes a 16 kHz model robust to narrow-band, companded audio.

Augmentation is offline and seeded: each training file gets ``copies`` extra
versions drawn once from a ``numpy.random.Generator``, so a run is reproducible and
feature extraction happens once per copy, not once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TELEPHONY_SR = 8000


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """What each augmented copy of a training file may go through.

    Attributes
    ----------
    copies: augmented versions per training file (0 disables augmentation).
    gain_db: uniform range of the gain applied to a copy.
    noise_snr_db: uniform range of the SNR of added white noise, or ``None``.
    max_shift_s: largest circular time shift, in seconds.
    telephony_prob: probability that a copy goes through the 8 kHz μ-law round trip.
    """

    copies: int = 0
    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_snr_db: tuple[float, float] | None = (15.0, 40.0)
    max_shift_s: float = 0.25
    telephony_prob: float = 0.0


def augment(y: np.ndarray, sr: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One augmented copy of ``y``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float waveform in [-1, 1].
    sr : int
        Sample rate of ``y``.
    rng : np.random.Generator
        Source of every random choice (seeded by the caller).
    config : AugmentConfig
        Ranges of each transformation.

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32, same length and rate, clipped to [-1, 1].
    """
    out = np.asarray(y, dtype=np.float32)
    if config.max_shift_s > 0 and out.size > 1:
        limit = min(int(config.max_shift_s * sr), out.size - 1)
        out = np.roll(out, int(rng.integers(-limit, limit + 1)))
    out = out * np.float32(10.0 ** (rng.uniform(*config.gain_db) / 20.0))
    if config.noise_snr_db is not None:
        out = add_noise(out, snr_db=float(rng.uniform(*config.noise_snr_db)), rng=rng)
    if rng.random() < config.telephony_prob:
        out = telephony(out, sr)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise ``snr_db`` below the signal's power (nothing if ``y`` is silent)."""
    power = float(np.mean(np.square(y, dtype=np.float64)))
    if power <= 0.0:
        return y
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (y + rng.normal(0.0, sigma, size=y.shape)).astype(np.float32)


def telephony(y: np.ndarray, sr: int) -> np.ndarray:
    """The 8 kHz G.711 μ-law round trip a call-center stream goes through.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float waveform at ``sr``.
    sr : int
        Rate of ``y`` and of the result.

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32 at ``sr``: band-limited to 4 kHz and quantized to 8-bit μ-law.
    """
    import soxr

    narrow = y if sr == TELEPHONY_SR else soxr.resample(y, sr, TELEPHONY_SR, quality="HQ")
    narrow = mulaw_round_trip(narrow)
    wide = narrow if sr == TELEPHONY_SR else soxr.resample(narrow, TELEPHONY_SR, sr, quality="HQ")
    return _fit_length(np.asarray(wide, dtype=np.float32), y.size)


def mulaw_round_trip(y: np.ndarray) -> np.ndarray:
    """Float samples after 16-bit quantization and a G.711 μ-law encode/decode."""
    from stream.audio.g711 import mulaw_decode, mulaw_encode

    pcm = np.clip(np.round(np.asarray(y, dtype=np.float64) * 32768.0), -32768, 32767)
    return (mulaw_decode(mulaw_encode(pcm.astype(np.int16))) / 32768.0).astype(np.float32)


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if y.size >= n:
        return y[:n]
    return np.pad(y, (0, n - y.size))
