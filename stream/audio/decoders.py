"""Decoders for audio files: libsndfile first, then the ffmpeg program.

What a music platform receives is MP3, AAC/M4A, Opus/Ogg, FLAC and WAV. libsndfile
(``soundfile``) reads WAV, FLAC, Ogg Vorbis/Opus and MP3 in-process; it cannot read
AAC in MP4 (``.m4a``), so :func:`decode` falls back to :class:`FfmpegDecoder`, which
runs ``ffmpeg`` (a system dependency, ``scripts/setup-system.sh``) as a subprocess and
reads 32-bit float samples from its stdout. Why a subprocess and not a library
(PyAV): measured on a 3-minute 44.1 kHz stereo file, ffmpeg takes 0.42 s for M4A
(0.46–0.75 s for the other formats, ffprobe included) where PyAV 18 takes 0.20 s and
libsndfile 0.07–0.28 s (1.0 s for Opus): a fraction of a percent of the audio's own
length and small beside the features and inference of the same file, so the
difference does not pay for a second copy of ffmpeg's libraries in a new wheel; and
a demuxer that crashes on a hostile upload takes down ffmpeg, not our process.

Each decoder returns the file's own rate and all of its channels; downmixing and
resampling stay in :func:`stream.audio.files.load_audio`, so every format reaches the
worker's resampler the same way.

The ffmpeg call is bounded and confined: never a shell; the path is passed as
``file:<path>`` (a name starting with ``-`` or looking like a URL stays a file); only
the ``file`` protocol and the audio demuxers of :data:`FFMPEG_FORMATS` are allowed (no
playlists or concat lists that would read other files or the network); the decoded
duration is capped by :attr:`DecodeLimits.max_seconds` and the run by
:attr:`DecodeLimits.timeout_s`.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soundfile as sf

from stream.errors import AudioError
from stream.types import Float32

"""``[shape=(n, channels)]`` float32 frames, as ``soundfile.read(always_2d=True)``."""

FFMPEG_FORMATS = "mp3,mov,mp4,m4a,3gp,3g2,mj2,aac,ogg,flac,wav,w64,matroska,webm,aiff,caf,asf,amr"
"""Demuxers ffmpeg may use (``-format_whitelist``): audio containers only."""


class DecodeError(AudioError):
    """One decoder could not read the file; ``str()`` says why in a few words.

    :func:`stream.audio.files.load_audio` names the file and raises
    :class:`~stream.errors.AudioFileError` from it.
    """

    def __init__(self, message: str) -> None:
        super().__init__("unreadable_file", message)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on one decode.

    Attributes
    ----------
    max_seconds: longest audio accepted (a 1 h upload at 48 kHz stereo is 1.4 GB of
        float32); longer files are refused rather than truncated.
    timeout_s: wall-clock limit of one external decoder run.
    """

    max_seconds: float = 3600.0
    timeout_s: float = 300.0


DEFAULT_LIMITS = DecodeLimits()


class Decoder(Protocol):
    """Reads a whole file: ``(frames [n, channels] float32, rate)``."""

    name: str

    def decode(self, path: str, limits: DecodeLimits) -> tuple[Float32, int]: ...


class SoundfileDecoder:
    """libsndfile in-process: WAV, FLAC, Ogg Vorbis/Opus, MP3."""

    name = "soundfile"

    def decode(self, path: str, limits: DecodeLimits) -> tuple[Float32, int]:
        try:
            info = sf.info(path)
            _check_duration(info.frames / max(info.samplerate, 1), limits)
            data, rate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise DecodeError(str(exc)) from exc
        return data, int(rate)


class FfmpegDecoder:
    """The ``ffmpeg`` program: every container and codec it was built with (AAC/M4A...)."""

    name = "ffmpeg"

    def __init__(self, ffmpeg: str = "ffmpeg", ffprobe: str = "ffprobe") -> None:
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe

    def decode(self, path: str, limits: DecodeLimits) -> tuple[Float32, int]:
        rate, channels = self.probe(path, limits)
        command = [
            self.ffmpeg,
            "-nostdin",
            "-v",
            "error",
            *_confinement(),
            "-i",
            f"file:{path}",
            "-map",
            "0:a:0",
            "-t",
            repr(limits.max_seconds + 1.0),  # one second more: tells "too long" apart
            "-f",
            "f32le",
            "-acodec",
            "pcm_f32le",
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            "pipe:1",
        ]
        raw = self._run(command, limits).stdout
        data = np.frombuffer(raw[: len(raw) - len(raw) % (4 * channels)], dtype="<f4")
        frames = data.reshape(-1, channels).astype(np.float32)
        _check_duration(frames.shape[0] / rate, limits)
        return frames, rate

    def probe(self, path: str, limits: DecodeLimits) -> tuple[int, int]:
        """``(rate, channels)`` of the first audio stream, from ``ffprobe``."""
        command = [
            self.ffprobe,
            "-v",
            "error",
            *_confinement(),
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "json",
            f"file:{path}",
        ]
        out = self._run(command, limits).stdout
        try:
            stream = json.loads(out)["streams"][0]
            rate, channels = int(stream["sample_rate"]), int(stream["channels"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise DecodeError("ffprobe found no audio stream") from exc
        if not (1 <= rate <= 768_000 and 1 <= channels <= 64):
            raise DecodeError(f"ffprobe reports rate {rate} and {channels} channels")
        return rate, channels

    def _run(self, command: list[str], limits: DecodeLimits) -> subprocess.CompletedProcess[bytes]:
        if shutil.which(command[0]) is None:
            raise DecodeError(f"{command[0]} is not installed (scripts/setup-system.sh)")
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=limits.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise DecodeError(f"{command[0]} took longer than {limits.timeout_s:g} s") from exc
        except OSError as exc:
            raise DecodeError(f"{command[0]} could not run: {exc}") from exc
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            last = lines[-1][:200] if lines else f"exit status {done.returncode}"
            raise DecodeError(f"{command[0]}: {last}")
        return done


def _confinement() -> list[str]:
    return ["-protocol_whitelist", "file", "-format_whitelist", FFMPEG_FORMATS]


def _check_duration(seconds: float, limits: DecodeLimits) -> None:
    if not math.isfinite(seconds) or seconds > limits.max_seconds:
        raise DecodeError(f"longer than the {limits.max_seconds:g} s accepted")


DECODERS: tuple[Decoder, ...] = (SoundfileDecoder(), FfmpegDecoder())
"""Tried in order; the first that reads the file wins."""


def decode(
    path: str, *, limits: DecodeLimits = DEFAULT_LIMITS, decoders: tuple[Decoder, ...] = DECODERS
) -> tuple[Float32, int]:
    """The frames and rate of ``path`` from the first decoder that reads it.

    Raises
    ------
    DecodeError
        No decoder could; the message joins each one's reason (``soundfile: Format
        not recognised; ffmpeg: Invalid data found when processing input``).
    """
    reasons = []
    for decoder in decoders:
        try:
            return decoder.decode(path, limits)
        except DecodeError as exc:
            reasons.append(f"{decoder.name}: {exc}")
            if "longer than" in str(exc):
                break  # every decoder would read the same too-long audio
    raise DecodeError("; ".join(reasons))


__all__ = [
    "DECODERS",
    "DEFAULT_LIMITS",
    "FFMPEG_FORMATS",
    "DecodeError",
    "DecodeLimits",
    "Decoder",
    "FfmpegDecoder",
    "SoundfileDecoder",
    "decode",
]
