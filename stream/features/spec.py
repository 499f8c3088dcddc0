"""FeatureSpec: every parameter that defines the feature numbers a model sees.

Training, the manifest and serving share one frozen ``FeatureSpec``; its
``spec_hash`` is stored in the model manifest and checked by the worker at start,
so a model never meets features that differ from the ones it learned on.

Parameter names follow librosa (``sr, n_fft, hop_length, n_mels, ...``).

Why ``center=False`` and ``top_db=None`` by default: both make the features
*chunk-invariant*. ``center=True`` reflect-pads the edges of each call, and
librosa's ``top_db`` clips relative to each call's own peak, so a stream cut into
chunks would see different numbers than the whole clip. With ``center=False`` frame
``i`` covers samples ``[i*hop_length, i*hop_length + n_fft)`` of the stream,
whatever the chunking, and the log is a fixed pointwise function. (As in librosa's
``stft``, a ``win_length < n_fft`` window is zero-padded to ``n_fft`` in the centre,
so a frame reads ``n_fft`` samples; using ``n_fft`` here keeps the features equal to
``librosa.feature.melspectrogram(center=False)`` on the same samples.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stream.errors import FeatureSpecError

LogRule = Literal["db", "log_offset", "none"]
Kind = Literal["logmel", "mfcc"]
PartialWindow = Literal["pad", "drop"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Frozen description of the feature frontend.

    Attributes
    ----------
    sr: sample rate the features are computed at (input is resampled to it).
    n_fft, win_length, hop_length, window: STFT parameters (librosa names).
    center: must stay ``False`` for streaming (see module docstring).
    n_mels, fmin, fmax, htk, norm: mel filterbank (``librosa.filters.mel``).
    power: 1.0 magnitude, 2.0 power spectrogram.
    log: ``"db"`` → ``10*log10(max(amin, S) / ref)`` (``power_to_db`` with
        ``top_db=None``), ``"log_offset"`` → ``log(S + log_offset)``, ``"none"`` → ``S`` itself
        (the power mels some encoders read, e.g. GE2E; ``kind="logmel"`` only).
    kind: ``"logmel"`` (output ``[n_mels, t]``) or ``"mfcc"`` (``[n_mfcc, t]``,
        DCT of the log-mel, ``dct_type``, ``norm="ortho"`` as librosa).
    window_seconds, hop_seconds: model windows cut from the frame stream.
    partial_window: at end of stream, ``"pad"`` the last partial window with
        silence (and mark it) or ``"drop"`` it.
    """

    sr: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    window: str = "hann"
    center: bool = False
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float | None = None
    htk: bool = False
    norm: str | None = "slaney"
    power: float = 2.0
    log: LogRule = "db"
    ref: float = 1.0
    amin: float = 1e-10
    log_offset: float = 1e-6
    kind: Kind = "logmel"
    n_mfcc: int = 20
    dct_type: int = 2
    window_seconds: float = 1.0
    hop_seconds: float = 0.5
    partial_window: PartialWindow = "pad"

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise FeatureSpecError("invalid FeatureSpec: " + "; ".join(problems))

    # -- derived sizes -------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Size of the feature axis: ``n_mels`` or ``n_mfcc``."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def window_samples(self) -> int:
        """Samples in one model window (``round(window_seconds * sr)``)."""
        return round(self.window_seconds * self.sr)

    @property
    def frames_per_window(self) -> int:
        """STFT frames (``n_fft`` samples each) that fit entirely inside one model window."""
        return 1 + (self.window_samples - self.n_fft) // self.hop_length

    @property
    def hop_frames(self) -> int:
        """Frames between the starts of consecutive model windows."""
        return max(1, round(self.hop_seconds * self.sr / self.hop_length))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Model input shape without the batch axis: ``(n_features, frames, 1)``."""
        return (self.n_features, self.frames_per_window, 1)

    def librosa_mel_kwargs(self) -> dict[str, Any]:
        """``librosa.feature.melspectrogram`` keywords whose output these features equal.

        The parity contract in one place: the tests, the seed-style baseline and the
        feature benchmark all call librosa with exactly these.
        """
        return {
            "sr": self.sr,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "win_length": self.win_length,
            "window": self.window,
            "center": self.center,
            "power": self.power,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "htk": self.htk,
            "norm": self.norm,
        }

    def window_span(self, index: int) -> tuple[int, int]:
        """Sample offsets ``[start, end)`` in the stream covered by window ``index``."""
        start = index * self.hop_frames * self.hop_length
        end = start + (self.frames_per_window - 1) * self.hop_length + self.n_fft
        return start, end

    # -- serialization ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the input of ``spec_hash``."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical JSON; stable across processes and versions."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureSpecError(f"unknown FeatureSpec field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FeatureSpecError(f"FeatureSpec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise FeatureSpecError("FeatureSpec JSON must be an object")
        return cls.from_dict(data)


def read_spec(path: str | Path) -> FeatureSpec:
    """The FeatureSpec in a JSON file (a ``--spec`` flag's argument).

    Raises
    ------
    FeatureSpecError
        The file cannot be read or holds no valid FeatureSpec; the message names the
        file, so a CLI can print it as it is.
    """
    try:
        return FeatureSpec.from_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FeatureSpecError(f"{path}: cannot read FeatureSpec: {exc}") from exc
    except FeatureSpecError as exc:
        raise FeatureSpecError(f"{path}: {exc}") from exc


def _problems(spec: FeatureSpec) -> list[str]:
    out = []
    if not 1000 <= spec.sr <= 192000:
        out.append(f"sr={spec.sr} is outside 1000..192000")
    if spec.win_length > spec.n_fft:
        out.append(f"win_length={spec.win_length} exceeds n_fft={spec.n_fft}")
    if spec.hop_length <= 0 or spec.win_length <= 0:
        out.append("hop_length and win_length must be positive")
    if spec.center:
        out.append("center=True is not chunk-invariant; streaming needs center=False")
    nyquist = spec.sr / 2
    if spec.fmax is not None and not spec.fmin < spec.fmax <= nyquist:
        out.append(f"fmax={spec.fmax} must lie in (fmin={spec.fmin}, sr/2={nyquist}]")
    if spec.kind not in ("logmel", "mfcc"):
        out.append(f"kind={spec.kind!r} is not 'logmel' or 'mfcc'")
    if spec.log not in ("db", "log_offset", "none"):
        out.append(f"log={spec.log!r} is not 'db', 'log_offset' or 'none'")
    if spec.log == "none" and spec.kind == "mfcc":
        out.append("kind='mfcc' needs a log rule ('db' or 'log_offset'), not log='none'")
    if spec.kind == "mfcc" and not 1 <= spec.n_mfcc <= spec.n_mels:
        out.append(f"n_mfcc={spec.n_mfcc} must lie in 1..n_mels={spec.n_mels}")
    if spec.window_samples < spec.n_fft:
        out.append(f"window_seconds={spec.window_seconds} is shorter than one STFT frame")
    if spec.dct_type not in (1, 2, 3, 4):
        out.append(f"dct_type={spec.dct_type} is not 1, 2, 3 or 4")
    if spec.hop_seconds <= 0:
        out.append(f"hop_seconds={spec.hop_seconds} must be positive")
    if spec.partial_window not in ("pad", "drop"):
        out.append(f"partial_window={spec.partial_window!r} is not 'pad' or 'drop'")
    return out
