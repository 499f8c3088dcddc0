"""Energy/spectral speech gate: which windows carry speech worth embedding.

A speaker embedding of silence, a ring tone or hold music is noise that drags an
identity toward whoever it happens to resemble, so the tracker only averages
windows that pass :func:`is_speech_window`, and enrollment refuses clips that fail
:func:`check_speech`. The gate is deliberately simple and cheap (a few numpy
reductions per window) so it can run on every window of thousands of calls; when
the scene model's ``speech`` probability is available the caller combines both.

Three cues, each aimed at one kind of non-speech:

* **energy** — frames quieter than ``floor_dbfs`` (absolute) or more than
  ``relative_db`` below the clip's loud frames are pauses; silence has none active.
* **syllabic modulation** — speech switches on and off 3–8 times a second, so its
  frame-energy envelope dips often; a steady tone or drone does not.
* **spectral steadiness** — a held musical note or tone keeps the same spectrum for
  hundreds of milliseconds; speech formants move from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

from stream.types import Float32


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Thresholds of the speech gate.

    Attributes
    ----------
    frame_ms, hop_ms: analysis frames for the energy envelope.
    floor_dbfs: frames below this RMS level (dB re full scale) are silent.
    relative_db: frames more than this below the clip's 95th-percentile level are pauses.
    min_active: a window is speech when at least this fraction of frames is active.
    dip_db, dip_radius_ms: a dip is a frame ``dip_db`` below the loudest frame within
        ``dip_radius_ms`` (a syllable gap).
    min_dips_per_s: speech has at least this many energy dips a second.
    max_steadiness: a clip whose active frames keep the same spectrum more than this
        often (cosine ≥ 0.98 to the previous frame) is a tone or held music.
    min_speech_s: enrollment needs at least this much active speech.
    """

    frame_ms: float = 25.0
    hop_ms: float = 10.0
    floor_dbfs: float = -55.0
    relative_db: float = 35.0
    min_active: float = 0.3
    dip_db: float = 8.0
    dip_radius_ms: float = 150.0
    min_dips_per_s: float = 2.5
    max_steadiness: float = 0.65
    min_speech_s: float = 2.0


DEFAULT_VAD = VadConfig()


@dataclass(frozen=True, slots=True)
class SpeechCheck:
    """Verdict of :func:`check_speech` on a whole clip, with the measured cues."""

    ok: bool
    reason: str
    active_s: float
    dips_per_s: float
    steadiness: float

    def describe(self) -> str:
        """One sentence with the numbers, for error messages."""
        return (
            f"{self.reason} (active speech {self.active_s:.1f} s, "
            f"{self.dips_per_s:.1f} energy dips/s, spectral steadiness {self.steadiness:.2f})"
        )


def frame_dbfs(y: npt.ArrayLike, sr: int, *, config: VadConfig = DEFAULT_VAD) -> Float32:
    """RMS level of each analysis frame in dB re full scale.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float audio in [-1, 1].
    sr : int
        Sample rate of ``y``.

    Returns
    -------
    np.ndarray [shape=(t,)]
        ``20*log10(rms)`` per frame, floored at -120 dB; empty when ``y`` is
        shorter than one frame.
    """
    frames = _frames(np.asarray(y, dtype=np.float32), sr, config)
    if frames.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    db: Float32 = (20.0 * np.log10(np.maximum(rms, 1e-6))).astype(np.float32)
    return db


def active_frames(db: Float32, *, config: VadConfig = DEFAULT_VAD) -> npt.NDArray[np.bool_]:
    """Frames above both the absolute floor and the clip-relative floor."""
    if db.size == 0:
        return np.zeros(0, dtype=bool)
    loud = float(np.percentile(db, 95))
    return (db > config.floor_dbfs) & (db > loud - config.relative_db)


def is_speech_window(y: npt.ArrayLike, sr: int, *, config: VadConfig = DEFAULT_VAD) -> bool:
    """Whether one model window has enough active frames to embed.

    Cheap (one framing and a mean) because it runs on every window of every stream;
    the absolute floor makes a quiet line with only hiss fail even though hiss is
    "loud" relative to itself.
    """
    db = frame_dbfs(y, sr, config=config)
    if db.size == 0:
        return False
    return float(np.mean(active_frames(db, config=config))) >= config.min_active


def check_speech(y: npt.ArrayLike, sr: int, *, config: VadConfig = DEFAULT_VAD) -> SpeechCheck:
    """Decide whether a whole clip is usable speech for enrollment.

    Returns
    -------
    SpeechCheck
        ``ok`` and a snake_case ``reason``: ``"speech"``, ``"silence"``,
        ``"too_little_speech"``, ``"no_syllables"`` (steady tone/drone/noise) or
        ``"steady_spectrum"`` (tones, held music notes).
    """
    audio = np.asarray(y, dtype=np.float32)
    db = frame_dbfs(audio, sr, config=config)
    active = active_frames(db, config=config)
    hop_s = config.hop_ms / 1000.0
    active_s = float(np.sum(active)) * hop_s
    duration_s = max(len(db) * hop_s, 1e-9)
    dips = _dips_per_s(db, config, duration_s)
    steady = _steadiness(audio, sr, active, config)
    if not np.any(active):
        reason = "silence"
    elif active_s < config.min_speech_s:
        reason = "too_little_speech"
    elif dips < config.min_dips_per_s:
        reason = "no_syllables"
    elif steady > config.max_steadiness:
        reason = "steady_spectrum"
    else:
        reason = "speech"
    return SpeechCheck(reason == "speech", reason, active_s, dips, steady)


def _frames(y: Float32, sr: int, config: VadConfig) -> Float32:
    frame = max(1, round(sr * config.frame_ms / 1000.0))
    hop = max(1, round(sr * config.hop_ms / 1000.0))
    if y.ndim != 1 or y.shape[0] < frame:
        return np.zeros((0, frame), dtype=np.float32)
    n = 1 + (y.shape[0] - frame) // hop
    return np.lib.stride_tricks.as_strided(
        y, shape=(n, frame), strides=(y.strides[0] * hop, y.strides[0]), writeable=False
    )


def _dips_per_s(db: Float32, config: VadConfig, duration_s: float) -> float:
    """Energy dips (syllable and word gaps) per second.

    A dip is a run of frames at least ``dip_db`` below the loudest frame within
    ±``dip_radius_ms``, next to audible sound; speech makes 3–6 a second, a tone or
    steady noise none, held music notes about one.
    """
    if db.size == 0:
        return 0.0
    radius = max(1, round(config.dip_radius_ms / config.hop_ms))
    peak = maximum_filter1d(db, size=2 * radius + 1, mode="nearest")
    dip = (db < peak - config.dip_db) & (peak > config.floor_dbfs)
    starts = np.count_nonzero(~dip[:-1] & dip[1:])
    return float(starts) / duration_s


def _steadiness(y: Float32, sr: int, active: npt.NDArray[np.bool_], config: VadConfig) -> float:
    """Fraction of active frames whose magnitude spectrum matches the previous frame's."""
    frames = _frames(y, sr, config)
    if frames.shape[0] < 2 or not np.any(active):
        return 0.0
    spectra = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1))
    norms = np.linalg.norm(spectra, axis=1) + 1e-12
    cos = np.sum(spectra[1:] * spectra[:-1], axis=1) / (norms[1:] * norms[:-1])
    both = active[1:] & active[:-1]
    if not np.any(both):
        return 0.0
    return float(np.mean(cos[both] >= 0.98))
