"""Whole files through a model: audio → windows → batched ONNX → per-window and clip scores.

The offline twin of the streaming pipeline, used by ``tympan classify`` and
``tympan evaluate``: the same decoder (:func:`stream.audio.files.load_audio`), the same
features and windows (:mod:`stream.features.offline`), so a file scores as it would
when streamed. The clip score is the mean probability over the clip's windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.audio.files import load_audio
from stream.errors import AudioError
from stream.features.offline import features, windows
from stream.features.spec import FeatureSpec
from stream.features.windows import stack_windows
from stream.inference.session import ModelOutput, OnnxModel
from stream.types import Float32

DEFAULT_BATCH = 64


@dataclass(frozen=True)
class ClipWindows:
    """Model input of one file.

    Attributes
    ----------
    x: float32 ``[n, n_features, frames_per_window, 1]``.
    spans: ``[n, 2]`` int sample offsets ``[start, end)`` at ``spec.sr``.
    padded: ``[n]`` bool, the trailing window padded with silence.
    """

    x: Float32
    spans: npt.NDArray[np.int64]
    padded: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ClipPrediction:
    """Scores of one file, per window; the clip's verdict is
    :func:`~stream.events.verdict.track_verdict` of them."""

    path: Path
    windows: ClipWindows
    output: ModelOutput
    sr: int

    def times_s(self) -> npt.NDArray[np.float64]:
        """``[n, 2]`` window start/end in seconds."""
        return self.windows.spans / float(self.sr)


def clip_windows(path: Path, spec: FeatureSpec) -> ClipWindows:
    """Decode ``path`` at ``spec.sr`` and cut it into model windows.

    Raises
    ------
    AudioFileError
        Unreadable or empty file (names the path).
    AudioError
        The file is shorter than one STFT frame, so no window exists.
    """
    y, _ = load_audio(path, sr=spec.sr)
    cut = windows(features(y, spec), spec)
    if not cut:
        raise AudioError(
            "too_short",
            f"{path}: {len(y)} samples at {spec.sr} Hz is shorter than one frame "
            f"(n_fft={spec.n_fft}); no window to classify",
        )
    return ClipWindows(
        x=stack_windows(cut, spec),
        spans=np.array([(w.start_sample, w.end_sample) for w in cut], dtype=np.int64),
        padded=np.array([w.padded for w in cut], dtype=bool),
    )


def run_batched(model: OnnxModel, x: Float32, *, batch_size: int = DEFAULT_BATCH) -> ModelOutput:
    """Run ``x`` through ``model`` in batches of at most ``batch_size`` windows."""
    outs = [model.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return ModelOutput(
        probabilities=np.concatenate([o.probabilities for o in outs]),
        embedding=np.concatenate([o.embedding for o in outs]),
    )


def predict_file(
    model: OnnxModel, path: Path, *, batch_size: int = DEFAULT_BATCH
) -> ClipPrediction:
    """Score every window of ``path`` with ``model``."""
    cw = clip_windows(Path(path), model.spec)
    out = run_batched(model, cw.x, batch_size=batch_size)
    return ClipPrediction(path=Path(path), windows=cw, output=out, sr=model.spec.sr)


def decide(
    probabilities: Float32, labels: tuple[str, ...], thresholds: tuple[float, ...] | None
) -> list[str]:
    """Labels of one probability row: the argmax (single) or tags at/above thresholds."""
    if thresholds is None:
        return [labels[int(np.argmax(probabilities))]]
    return [lab for lab, p, t in zip(labels, probabilities, thresholds, strict=True) if p >= t]
