"""What happens to audio between a talker and tympan: telephone channel, gain, noise, sox.

The telephone channel is the one a call-center stream really goes through:
resample to 8 kHz, band-limit to the 300–3400 Hz telephone band, quantize with
ITU-T G.711 (μ-law in North America/Japan, A-law elsewhere), decode, and
resample back.  G.711 uses the runtime's tables (``stream.audio.g711``, the
segment algorithm of the ITU reference code), so training audio is quantized
exactly as the serving side decodes it, with the real quantization noise rather
than a smooth companding curve.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from models.corpus.synth import SR, rms_dbfs, set_level
from models.corpus.tools import run_tool
from stream.audio import g711

Law = Literal["mulaw", "alaw"]
TELEPHONE_SR = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)


def _to_int16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)


def mulaw_encode(y: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> G.711 μ-law bytes (the runtime's tables)."""
    return g711.mulaw_encode(_to_int16(y))


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 μ-law bytes -> float32 samples in [-1, 1]."""
    return np.asarray(g711.mulaw_decode(codes), dtype=np.float32) / np.float32(32768.0)


def alaw_encode(y: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> G.711 A-law bytes (the runtime's tables)."""
    return g711.alaw_encode(_to_int16(y))


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 A-law bytes -> float32 samples in [-1, 1]."""
    return np.asarray(g711.alaw_decode(codes), dtype=np.float32) / np.float32(32768.0)


def g711_quantize(y: np.ndarray, *, law: Law = "mulaw") -> np.ndarray:
    """Encode and decode: the exact values a G.711 receiver reconstructs."""
    if law == "mulaw":
        return mulaw_decode(mulaw_encode(y))
    if law == "alaw":
        return alaw_decode(alaw_encode(y))
    raise ValueError(f"G.711 law {law!r} is not 'mulaw' or 'alaw'")


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr high-quality resampling (a no-op when the rates match)."""
    if orig_sr == target_sr:
        return y.astype(np.float32)
    return np.asarray(
        soxr.resample(y.astype(np.float32), orig_sr, target_sr, quality="HQ"), dtype=np.float32
    )


def band_limit(
    y: np.ndarray, *, sr: int, band_hz: tuple[float, float] = TELEPHONE_BAND_HZ
) -> np.ndarray:
    """4th-order Butterworth band-pass: the telephone band a handset and trunk leave."""
    sos = signal.butter(4, band_hz, btype="bandpass", fs=sr, output="sos")
    return np.asarray(signal.sosfilt(sos, y), dtype=np.float32)


def telephone(
    y: np.ndarray, *, sr: int = SR, law: Law = "mulaw", out_sr: int | None = None
) -> np.ndarray:
    """Pass ``y`` through an 8 kHz G.711 telephone channel.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float audio at ``sr``.
    law : {"mulaw", "alaw"}
        The G.711 companding law.
    out_sr : int, optional
        Rate of the returned audio; default ``sr`` (back up to the input rate, as
        a 16 kHz model sees a resampled call). Use ``8000`` to keep the 8 kHz
        signal exactly as G.711 reconstructed it.
    """
    narrow = band_limit(resample(y, orig_sr=sr, target_sr=TELEPHONE_SR), sr=TELEPHONE_SR)
    peak = float(np.max(np.abs(narrow))) if narrow.size else 0.0
    if peak > 0.99:
        narrow = narrow * (0.99 / peak)
    coded = g711_quantize(narrow, law=law)
    return resample(coded, orig_sr=TELEPHONE_SR, target_sr=out_sr or sr)


def gain_db(y: np.ndarray, db: float) -> np.ndarray:
    """Multiply by ``10**(db/20)`` and hard-clip to [-1, 1], as a hot line would."""
    return np.asarray(np.clip(y * (10.0 ** (db / 20.0)), -1.0, 1.0), dtype=np.float32)


def add_noise(y: np.ndarray, noise: np.ndarray, *, snr_db: float) -> np.ndarray:
    """Mix ``noise`` under ``y`` at ``snr_db`` (RMS ratio); noise is tiled/cut to fit."""
    if y.size == 0:
        return y.astype(np.float32)
    reps = int(np.ceil(y.size / max(1, noise.size)))
    noise = np.tile(noise, reps)[: y.size]
    level = rms_dbfs(y)
    if not np.isfinite(level):
        return y.astype(np.float32)
    mixed = y + set_level(noise, level - snr_db, peak_limit=np.inf)
    peak = float(np.max(np.abs(mixed)))
    return np.asarray(mixed * (0.99 / peak) if peak > 0.99 else mixed, dtype=np.float32)


def sox_effects(y: np.ndarray, *, sr: int = SR, effects: Sequence[str]) -> np.ndarray:
    """Run ``y`` through a sox effects chain (e.g. ``["pitch", "300", "tempo", "1.1"]``).

    The output keeps ``sr``; effects that change the length (``tempo``,
    ``speed``) return a different number of samples.
    """
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="FLOAT")
    raw = run_tool(
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
            "-c",
            "1",
            "-r",
            str(sr),
            "-",
            *effects,
        ],
        input_bytes=buf.getvalue(),
    )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def pitch_tempo(
    y: np.ndarray, *, sr: int = SR, cents: float = 0.0, tempo: float = 1.0
) -> np.ndarray:
    """Shift pitch by ``cents`` and change tempo by ``tempo`` (sox ``pitch``/``tempo``)."""
    effects: list[str] = []
    if cents:
        effects += ["pitch", f"{cents:.0f}"]
    if tempo != 1.0:
        effects += ["tempo", "-s", f"{tempo:.3f}"]
    # sox's speed/tempo effects change the rate internally; 'rate' brings it back.
    return sox_effects(y, sr=sr, effects=[*effects, "rate", str(sr)]) if effects else y
