"""Keras → ONNX export: convert, check parity, write golden windows and the manifest.

The exported model directory is ``<repo>/<name>/<version>/`` with ``model.onnx``,
``manifest.json`` and ``golden.npz``. It is assembled in a temporary sibling
directory and renamed into place only after the parity gate passed, so a
repository never holds a half-written or unchecked model.

Why opset 17: it is inside tf2onnx 1.17's tested range (14–18), it is executed by
every onnxruntime from 1.14 on (so by any ``onnxruntime``/``onnxruntime-gpu`` that
satisfies ``>=1.18``), and it has every op a small audio CNN needs (Conv, pooling,
BatchNormalization folded, LayerNormalization). Newer opsets would buy nothing here
and narrow the runtimes that can serve the model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

import stream
from exporters.parity import (
    OUTPUT_NAMES,
    PARITY_TOLERANCE,
    check_parity,
    keras_outputs,
    output_pair,
)
from stream.errors import ModelError
from stream.features.spec import FeatureSpec
from stream.inference.golden import GOLDEN_WINDOWS, Golden, write_golden
from stream.inference.manifest import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    Manifest,
    TensorInfo,
    load_manifest,
    sha256_file,
    write_manifest,
)
from stream.types import Float32

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "features"


def export_model(
    keras_model: Any,
    *,
    spec: FeatureSpec,
    labels: Sequence[str],
    out_dir: Path,
    name: str,
    version: str,
    golden_x: np.ndarray,
    task: Literal["single", "multi"] = "single",
    thresholds: Sequence[float] | None = None,
    training_summary: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    macs: int | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE,
    overwrite: bool = False,
) -> Path:
    """Export ``keras_model`` to ``<out_dir>/<name>/<version>/`` and return that directory.

    Parameters
    ----------
    keras_model:
        A Keras 3 model taking ``[batch, n_features, frames_per_window, 1]`` float32 and
        returning ``[probabilities, embedding]`` (a list/tuple in that order, or a dict
        with those keys).
    spec:
        The FeatureSpec the model was trained on; recorded with its ``spec_hash``.
    labels:
        One per probabilities column, in column order.
    out_dir:
        The model *repository* (e.g. ``models/zoo``); the model lands in
        ``out_dir/name/version``.
    golden_x:
        ``[n, *spec.input_shape]`` held-out windows. All of them are used for the parity
        gate; the first ``GOLDEN_WINDOWS`` are stored in ``golden.npz``.
    task, thresholds:
        ``"multi"`` needs one threshold per label (defaults to 0.5 each).
    training_summary, metrics, macs:
        Copied into the manifest (``training``, ``metrics``, ``macs_per_window``).
    opset:
        ONNX opset (pinned to 17 by default; see the module docstring).
    tolerance:
        Largest allowed ``|keras - onnx|`` on any output (default 1e-4).
    overwrite:
        Replace the model files of an existing ``out_dir/name/version`` (other files
        there, such as ``report.json`` or ``model.keras``, are kept); otherwise an
        existing model there is an error. A directory without ``manifest.json`` (from
        ``tympan train --no-export``) is exported into without ``overwrite``.

    Raises
    ------
    ParityError
        ONNX and Keras disagree by more than ``tolerance`` (names the output and figure).
    ModelError
        Bad arguments (shapes, labels, thresholds), or the target exists.
    """
    labels = list(labels)
    x = _check_inputs(spec, labels, golden_x, task)
    thresholds = _thresholds(task, thresholds, len(labels))
    final = Path(out_dir) / name / version
    if (final / MANIFEST_FILE).exists() and not overwrite:
        raise ModelError(f"{final}: model version already exists (pass overwrite=True)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.export-", dir=final.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; a model repository is read by other users
    try:
        model_path = staging / MODEL_FILE
        proto = convert(keras_model, spec=spec, opset=opset)
        _set_metadata(proto, name=name, version=version, task=task, labels=labels, spec=spec)
        _save(proto, model_path)
        expected = keras_outputs(keras_model, x)
        _check_output_sizes(expected, len(labels))
        report = check_parity(expected, model_path, x, tolerance=tolerance)
        log.info("parity %s/%s: max abs diff %.3g on %r", name, version, *report)
        golden = _golden(model_path, x[:GOLDEN_WINDOWS])
        write_golden(staging / GOLDEN_FILE, golden)
        manifest = Manifest(
            name=name,
            version=version,
            task=task,
            labels=tuple(labels),
            spec=spec.to_dict(),
            spec_hash=spec.spec_hash,
            input=TensorInfo(INPUT_NAME, (None, *spec.input_shape)),
            outputs=(
                TensorInfo("probabilities", (None, len(labels)), "probabilities"),
                TensorInfo("embedding", (None, expected["embedding"].shape[1]), "embedding"),
            ),
            opset=opset,
            model_sha256=sha256_file(model_path),
            golden_sha256=sha256_file(staging / GOLDEN_FILE),
            thresholds=thresholds,
            training=_jsonable(training_summary or {}),
            metrics=_jsonable({**(metrics or {}), "parity_max_abs_diff": report[0]}),
            macs_per_window=macs,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            tympan_version=stream.__version__,
            schema_version=SCHEMA_VERSION,
        )
        write_manifest(manifest, staging)
        load_manifest(staging, expected_spec=spec)  # the reader accepts what we wrote
        _publish(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def _publish(staging: Path, final: Path) -> None:
    """Move the checked files into ``final``; other files there (reports) are kept.

    The manifest goes first out and last in, so a reader never sees a manifest with
    files from another export (it sees no model, or a complete one).
    """
    if not final.exists():
        staging.rename(final)
        return
    (final / MANIFEST_FILE).unlink(missing_ok=True)
    for name in (MODEL_FILE, GOLDEN_FILE, MANIFEST_FILE):
        (staging / name).replace(final / name)


def convert(keras_model: Any, *, spec: FeatureSpec, opset: int = DEFAULT_OPSET) -> Any:
    """Convert to an ``onnx.ModelProto`` with input ``features`` and named outputs.

    Goes through a ``tf.function`` returning a dict, so the ONNX outputs are called
    ``probabilities`` and ``embedding`` whatever the Keras layers were named, and the
    batch axis stays dynamic (``batch``).
    """
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *spec.input_shape), tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)  # type: ignore[untyped-decorator]
    def serve(features: Any) -> dict[str, Any]:
        return dict(
            zip(OUTPUT_NAMES, output_pair(keras_model(features, training=False)), strict=True)
        )

    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx raises bare Exceptions/ValueErrors
        raise ModelError(f"tf2onnx could not convert the model (opset {opset}): {exc}") from exc
    _name_batch_axis(proto)
    return proto


def _name_batch_axis(proto: Any) -> None:
    for value in [*proto.graph.input, *proto.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = "batch"


def _set_metadata(
    proto: Any, *, name: str, version: str, task: str, labels: list[str], spec: FeatureSpec
) -> None:
    """Key manifest fields inside the ONNX file too, for tools that only see the file."""
    fields = {
        "tympan.schema_version": str(SCHEMA_VERSION),
        "tympan.name": name,
        "tympan.version": version,
        "tympan.task": task,
        "tympan.labels": json.dumps(labels),
        "tympan.spec": spec.to_json(),
        "tympan.spec_hash": spec.spec_hash,
        "tympan.tympan_version": stream.__version__,
    }
    del proto.metadata_props[:]
    for key, value in fields.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "tympan-exporters"
    proto.doc_string = f"tympan model {name}/{version} ({task}, {len(labels)} labels)"


def _save(proto: Any, path: Path) -> None:
    import onnx

    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path))


def _golden(model_path: Path, x: Float32) -> Golden:
    """Golden outputs are what the *ONNX* model gives: the reload gate replays ONNX."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    probs, emb = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    return Golden(x=x, probabilities=probs, embedding=emb)


def _check_inputs(spec: FeatureSpec, labels: list[str], golden_x: np.ndarray, task: str) -> Float32:
    if task not in ("single", "multi"):
        raise ModelError(f"task={task!r} is not 'single' or 'multi'")
    if not labels or len(set(labels)) != len(labels):
        raise ModelError(f"labels must be non-empty and unique, got {labels!r}")
    x = np.asarray(golden_x)
    if x.ndim != 4 or x.shape[1:] != spec.input_shape or x.shape[0] < 1:
        raise ModelError(
            f"golden_x has shape {x.shape}; expected (n>=1, *{spec.input_shape}) as the "
            "FeatureSpec produces"
        )
    if not np.all(np.isfinite(x)):
        raise ModelError("golden_x holds NaN or Inf values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_output_sizes(outputs: dict[str, Float32], n_labels: int) -> None:
    probs = outputs["probabilities"]
    if probs.ndim != 2 or probs.shape[1] != n_labels:
        raise ModelError(
            f"{n_labels} labels but the model's probabilities output has shape {probs.shape}"
        )
    if outputs["embedding"].ndim != 2:
        raise ModelError(f"embedding output has shape {outputs['embedding'].shape}; want 2-D")


def _thresholds(
    task: str, thresholds: Sequence[float] | None, n_labels: int
) -> tuple[float, ...] | None:
    if task == "single":
        if thresholds is not None:
            raise ModelError("thresholds are only meaningful for task='multi'")
        return None
    values = tuple(float(t) for t in (thresholds if thresholds is not None else [0.5] * n_labels))
    if len(values) != n_labels or not all(0.0 <= t <= 1.0 for t in values):
        raise ModelError(f"need {n_labels} thresholds in [0, 1], got {list(values)}")
    return values


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so numpy scalars and tuples become plain JSON values."""
    return dict(json.loads(json.dumps(data, default=json_default)))


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for what training reports hold: numpy scalars and
    arrays become plain numbers and lists, paths strings (``models.report`` uses it
    too, so a report and a manifest write the same values the same way)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
