"""Rooms and microphones: what stands between a real instrument and a recording.

Soundfont and sample-library renders are dry and flat: every note reaches the
model as the sampling engineer's close microphone heard it. A real solo is heard
through a room (reflections, a decaying tail that darkens with time) and a
microphone and preamp of some frequency response, over a noise floor. These
functions put a render through a random one of each so that the model learns the
instrument, not the recording chain. Pure numpy/scipy; seeded by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from models.corpus.synth import SR


def room_impulse(
    *,
    rng: np.random.Generator,
    sr: int = SR,
    rt60_s: tuple[float, float] = (0.15, 1.4),
    drr_db: tuple[float, float] = (-4.0, 14.0),
) -> np.ndarray:
    """A random room's impulse response.

    A direct path, a few early reflections (2–25 ms) and a diffuse tail of
    exponentially decaying noise whose high frequencies decay faster (air and wall
    absorption), scaled to a direct-to-reverberant ratio drawn from ``drr_db``.

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32, ``h[0] == 1`` (the direct sound), ``n`` about ``rt60_s`` long.
    """
    rt60 = float(rng.uniform(*rt60_s))
    n = max(int(rt60 * sr), 8)
    t = np.arange(n) / sr
    tail = rng.normal(0.0, 1.0, n) * np.power(10.0, -3.0 * t / rt60)
    tail = _darkening(tail, rt60, rng=rng, sr=sr)
    for _ in range(int(rng.integers(2, 7))):
        at = int(rng.uniform(0.002, 0.025) * sr)
        if at < n:
            tail[at] += float(rng.uniform(0.3, 1.0)) * float(rng.choice([-1.0, 1.0])) * 4.0
    tail[0] = 0.0
    energy = float(np.sum(np.square(tail)))
    drr = float(rng.uniform(*drr_db))
    h = tail * np.sqrt(10.0 ** (-drr / 10.0) / max(energy, 1e-12))
    h[0] = 1.0
    return h.astype(np.float32)


def _darkening(tail: np.ndarray, rt60: float, *, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Low-pass the tail progressively: a second copy through a moving average fades in."""
    width = int(rng.integers(3, 12))
    smooth = np.convolve(tail, np.ones(width) / width, mode="same")
    mix = np.clip(np.arange(tail.size) / (sr * rt60 * 0.5), 0.0, 1.0)
    return (1.0 - mix) * tail + mix * smooth * np.sqrt(width)


def in_room(y: np.ndarray, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """``y`` played in a random room (:func:`room_impulse`), same length and loudness order."""
    h = room_impulse(rng=rng, sr=sr)
    wet = fftconvolve(np.asarray(y, dtype=np.float64), h)[: y.size]
    return _match_rms(wet, y)


def microphone(
    y: np.ndarray,
    *,
    rng: np.random.Generator,
    sr: int = SR,
    tilt_db: float = 6.0,
) -> np.ndarray:
    """``y`` through a random microphone/preamp response.

    A smooth random gain curve over log frequency (five control points within
    ±``tilt_db``), a high-pass between 20 and 100 Hz (no higher: a bass guitar's low E
    is 41 Hz), and in a third of cases a low-pass between 4 and 7.5 kHz (a dull
    microphone or a lossy upload).

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32, same length, same RMS as ``y``.
    """
    spectrum = np.fft.rfft(np.asarray(y, dtype=np.float64))
    freqs = np.fft.rfftfreq(y.size, d=1.0 / sr)
    log_f = np.log2(np.maximum(freqs, 20.0))
    points = np.linspace(np.log2(20.0), np.log2(sr / 2.0), 5)
    gain_db = np.interp(log_f, points, rng.uniform(-tilt_db, tilt_db, points.size))
    highpass_hz = float(rng.uniform(20.0, 100.0))
    gain = np.power(10.0, gain_db / 20.0) / np.sqrt(
        1.0 + (highpass_hz / np.maximum(freqs, 1.0)) ** 4
    )
    if rng.random() < 1.0 / 3.0:
        lowpass_hz = float(rng.uniform(4000.0, 7500.0))
        gain = gain / np.sqrt(1.0 + (freqs / lowpass_hz) ** 8)
    out = np.fft.irfft(spectrum * gain, n=y.size)
    return _match_rms(out, y)


def recording_chain(y: np.ndarray, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A room (four times in five), then a microphone: how a real solo reaches a file."""
    out = in_room(y, rng=rng, sr=sr) if rng.random() < 0.8 else np.asarray(y, np.float32)
    return microphone(out, rng=rng, sr=sr)


def _match_rms(y: np.ndarray, like: np.ndarray) -> np.ndarray:
    target = float(np.sqrt(np.mean(np.square(like, dtype=np.float64))))
    have = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    scale = target / have if have > 0.0 else 1.0
    return (np.asarray(y, dtype=np.float64) * scale).astype(np.float32)
