"""The parity gate: the exported ONNX must compute what the Keras model computes.

Both run on the same held-out windows; the largest absolute difference over every
output element must stay within ``PARITY_TOLERANCE`` (1e-4: float32 Conv/GEMM kernels
of TensorFlow and onnxruntime differ in summation order by ~1e-6 on softmax outputs,
while a wrong layer, a lost normalisation or a transposed axis is off by >1e-2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import ModelError, ParityError
from stream.inference.golden import max_abs_diff
from stream.types import Float32

PARITY_TOLERANCE = 1e-4
_BATCH = 64
OUTPUT_NAMES = ("probabilities", "embedding")


def output_pair(outputs: Any) -> tuple[Any, Any]:
    """The (probabilities, embedding) pair from a list/tuple or a dict of outputs."""
    if isinstance(outputs, dict):
        missing = [k for k in OUTPUT_NAMES if k not in outputs]
        if missing:
            raise ModelError(f"Keras model outputs {sorted(outputs)} lack {missing}")
        return outputs["probabilities"], outputs["embedding"]
    if isinstance(outputs, list | tuple) and len(outputs) == 2:
        return outputs[0], outputs[1]
    raise ModelError(
        "Keras model must return [probabilities, embedding] (or a dict with those keys), "
        f"got {type(outputs).__name__}"
    )


def keras_outputs(keras_model: Any, x: Float32) -> dict[str, Float32]:
    """Run Keras in inference mode (``training=False``) in batches of 64."""
    probs, embs = [], []
    for start in range(0, len(x), _BATCH):
        p, e = output_pair(keras_model(x[start : start + _BATCH], training=False))
        probs.append(_numpy(p))
        embs.append(_numpy(e))
    return {"probabilities": np.concatenate(probs), "embedding": np.concatenate(embs)}


def _numpy(tensor: Any) -> Float32:
    value = tensor.numpy() if hasattr(tensor, "numpy") else tensor
    return np.asarray(value, dtype=np.float32)


def onnx_outputs(model_path: Path, x: Float32) -> dict[str, Float32]:
    """Run the ONNX file with onnxruntime on CPU (the reference provider)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, {session.get_inputs()[0].name: x})
    return {n: np.asarray(r, dtype=np.float32) for n, r in zip(names, results, strict=True)}


def check_parity(
    expected: dict[str, Float32],
    model_path: Path,
    x: Float32,
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> tuple[float, str]:
    """Compare ``expected`` (Keras) with the ONNX file on ``x``; return (max diff, output).

    Raises
    ------
    ParityError
        The largest difference exceeds ``tolerance``; the message has the figure, the
        output name and the number of windows compared.
    """
    actual = onnx_outputs(model_path, x)
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise ParityError(
            f"{model_path}: ONNX model lacks output(s) {missing} (has {sorted(actual)})",
            max_abs_diff=float("inf"),
            output=missing[0],
        )
    diff, output = max_abs_diff(expected, {k: actual[k] for k in expected})
    if not diff <= tolerance:
        raise ParityError(
            f"{model_path}: parity gate failed: max |keras - onnx| = {diff:.3g} on output "
            f"{output!r} over {len(x)} windows exceeds tolerance {tolerance:g}",
            max_abs_diff=diff,
            output=output,
        )
    return diff, output
