"""Audio files → float32 samples, with errors that name the file.

Used by ``tympan produce``, ``tympan classify`` and training. soundfile (libsndfile)
reads WAV, FLAC and OGG/Vorbis (and MP3 with libsndfile ≥ 1.1); when a rate is asked
for, :func:`stream.audio.resample.resample` resamples with the streaming resampler's
method (low-delay FIR for 8 kHz → 16 kHz, soxr ``HQ`` otherwise), so a file classified
offline gets the samples the worker computes from the same audio streamed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from stream.audio.resample import resample
from stream.errors import AudioFileError

AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3"})
"""File name suffixes treated as audio when a folder is scanned."""


def load_audio(
    path: str | os.PathLike[str], *, sr: int | None = None, mono: bool = True
) -> tuple[npt.NDArray[np.float32], int]:
    """Read an audio file as float32 in ``[-1, 1]``.

    Parameters
    ----------
    path: the file.
    sr: resample to this rate (as the worker does); ``None`` keeps the file's rate.
    mono: downmix channels by their mean.

    Returns
    -------
    y : np.ndarray [shape=(n,) when mono, else (channels, n), dtype=float32]
        As librosa: channels first.
    sr : int
        The rate of ``y``.

    Raises
    ------
    AudioFileError
        ``unreadable_file`` (missing, not audio, NaN/Inf samples) or ``empty_file``
        (no samples); the message names the path.
    """
    name = os.fspath(path)
    _require_file(name)
    try:
        data, file_sr = sf.read(name, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioFileError(
            "unreadable_file", f"cannot read audio file {name!r}: {exc}", path=name
        ) from exc
    if data.shape[0] == 0:
        raise AudioFileError("empty_file", f"audio file {name!r} has no samples", path=name)
    if not np.isfinite(data).all():
        raise AudioFileError(
            "unreadable_file", f"audio file {name!r} contains NaN or Inf samples", path=name
        )
    y = data.mean(axis=1, dtype=np.float32) if mono else np.ascontiguousarray(data.T)
    if sr is not None and sr != file_sr:
        y = resample(y, file_sr, sr)
        file_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def _require_file(name: str) -> None:
    """Refuse a path that is no file before libsndfile does: its message for a missing
    file is ``Error opening 'x.wav': System error.``, which names no cause.

    Raises
    ------
    AudioFileError
        ``unreadable_file``: the path does not exist, or is a folder.
    """
    if os.path.isdir(name):
        raise AudioFileError(
            "unreadable_file",
            f"{name!r} is a folder, not an audio file (give its files, or a command that "
            "takes folders)",
            path=name,
        )
    if not os.path.exists(name):
        absolute = os.path.abspath(name)
        raise AudioFileError(
            "unreadable_file",
            f"audio file {name!r} does not exist (looked for {absolute}): check the path",
            path=name,
        )


def audio_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Every audio file under ``folder`` (recursively, by suffix), sorted by path."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
