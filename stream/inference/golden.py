"""Golden windows: a few inputs and the outputs the exported ONNX gave for them.

``golden.npz`` is written at export time next to ``model.onnx`` and replayed before a
model is (re)loaded into a worker: if the runtime at hand (another onnxruntime, another
provider, a corrupted download) gives outputs further than a tolerance from the ones
recorded at export, the model is refused. Plain arrays only, read with
``allow_pickle=False``.

Arrays: ``x`` (or ``features``, the input's name) ``[n, n_features, frames, 1]``,
``probabilities`` ``[n, n_labels]`` and ``embedding`` ``[n, d]``, all float32.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.errors import ModelError
from stream.types import Float32

_KEYS = ("x", "probabilities", "embedding")
GOLDEN_WINDOWS = 8  # windows kept in golden.npz: enough to catch drift, a few KiB
# What a reload gate should accept: export's Keras/ONNX tolerance. CPU replays of the same
# file are ~1e-7 apart; CUDA (other kernels, TF32 off by default in onnxruntime) ~1e-6.
GOLDEN_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Golden:
    """Golden inputs and the expected outputs (by role)."""

    x: Float32
    probabilities: Float32
    embedding: Float32

    def expected(self) -> dict[str, Float32]:
        return {"probabilities": self.probabilities, "embedding": self.embedding}


def write_golden(path: Path, golden: Golden) -> Path:
    """Write ``golden`` as an uncompressed ``.npz`` (deterministic bytes, no pickle)."""
    path = Path(path)
    with path.open("wb") as fh:
        np.savez(
            fh,
            x=np.ascontiguousarray(golden.x, dtype=np.float32),
            probabilities=np.ascontiguousarray(golden.probabilities, dtype=np.float32),
            embedding=np.ascontiguousarray(golden.embedding, dtype=np.float32),
        )
    return path


def read_golden(path: Path) -> Golden:
    """Read ``golden.npz``; a missing, pickled or incomplete file is a ``ModelError``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: golden file is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = {k: k for k in data.files}
            if "x" not in names and "features" in names:  # the input's name also accepted
                names["x"] = "features"
            missing = [k for k in _KEYS if k not in names]
            if missing:
                raise ModelError(f"{path}: golden file lacks array(s) {', '.join(missing)}")
            arrays = {k: np.asarray(data[names[k]], dtype=np.float32) for k in _KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: cannot read golden file: {exc}") from exc
    n = arrays["x"].shape[0]
    if arrays["x"].ndim != 4 or any(arrays[k].shape[0] != n for k in _KEYS[1:]):
        shapes = {k: arrays[k].shape for k in _KEYS}
        raise ModelError(f"{path}: golden arrays have inconsistent shapes {shapes}")
    return Golden(**arrays)


def max_abs_diff(expected: dict[str, Float32], actual: dict[str, Float32]) -> tuple[float, str]:
    """Largest ``|expected - actual|`` over all outputs, and the output where it occurs.

    A shape mismatch counts as an infinite difference: it is never parity.
    """
    worst, where = -1.0, ""
    for name, want in expected.items():
        got = actual[name]
        if want.shape != got.shape:
            return float("inf"), name
        diff = float(np.max(np.abs(want.astype(np.float64) - got))) if want.size else 0.0
        if not np.isfinite(diff):
            return float("inf"), name
        if diff > worst:
            worst, where = diff, name
    return max(worst, 0.0), where
