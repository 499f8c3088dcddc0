"""A real, tiny ONNX model directory for tests — built with ``onnx.helper``, no TensorFlow.

``make_tiny_model_dir`` writes ``model.onnx``, ``manifest.json`` and ``golden.npz`` that
pass every check :class:`~stream.inference.session.OnnxModel` makes, for any
FeatureSpec and labels, and that compute something meaningful, so pipeline tests can
assert on real answers:

* ``energy`` = mean of the log-mel window (for MFCC: ``c0 / sqrt(n_mels)``, which is the
  same number);
* ``task="single"``: labels are ordered quiet → loud; logits ``(i - (n-1)/2) * a * (energy
  - threshold)``, softmax. With two labels, ``labels[1]`` wins exactly when the window is
  louder than ``threshold`` (default −45 dB, about white noise of RMS 3e-3);
* ``task="multi"``: tag ``i`` has probability ``sigmoid(a * (energy - t_i))`` with ``t_i``
  spaced 10 dB apart around ``threshold``;
* ``embedding`` = the mean spectrum over time, centred over bands and L2-normalised: a
  gain-invariant spectral shape (two tones at different pitches are far apart, the
  same tone at two levels is identical).

:func:`reference_outputs` computes the same in numpy (the golden outputs come from it,
independently of onnxruntime).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stream.features.spec import FeatureSpec
from stream.inference.golden import GOLDEN_WINDOWS, Golden, read_golden, write_golden
from stream.inference.manifest import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    TensorInfo,
    load_manifest,
    sha256_file,
    write_manifest,
)
from stream.types import Float32

TINY_OPSET = 17
_EPS = 1e-12


def default_threshold(spec: FeatureSpec) -> float:
    """Quiet/loud boundary of the mean log-mel: −45 dB or −10 (natural log)."""
    return -45.0 if spec.log == "db" else -10.0


def _slope(spec: FeatureSpec) -> float:
    return 0.25 if spec.log == "db" else 1.0


def _tag_step(spec: FeatureSpec) -> float:
    return 10.0 if spec.log == "db" else 2.5


def make_tiny_model_dir(
    path: Path,
    *,
    spec: FeatureSpec,
    labels: Sequence[str],
    name: str = "tiny",
    version: str = "1",
    kind: Literal["energy"] = "energy",
    task: Literal["single", "multi"] = "single",
    threshold: float | None = None,
    n_outputs: int | None = None,
    thresholds: Sequence[float] | None = None,
) -> Path:
    """Write a valid tiny model directory at ``path`` (created) and return ``path``.

    Parameters
    ----------
    path:
        The model directory itself; use ``repo / name / version`` to build a repository.
    spec, labels:
        The FeatureSpec (input shape) and the labels (quiet → loud).
    kind:
        Only ``"energy"`` for now (see the module docstring).
    task:
        ``"single"`` (softmax) or ``"multi"`` (sigmoid per tag, thresholds 0.5).
    threshold:
        Quiet/loud boundary of the mean feature value; default :func:`default_threshold`.
    n_outputs:
        Width of the probabilities output if it must differ from ``len(labels)`` — a
        deliberately broken model for tests of the labels/output check.
    thresholds:
        A multi-label model's manifest thresholds (default 0.5 per tag); they change
        the model's tags, not its outputs (same golden file).
    """
    if kind != "energy":
        raise ValueError(f"kind={kind!r}: only 'energy' is implemented")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    n_out = len(labels) if n_outputs is None else n_outputs
    t = default_threshold(spec) if threshold is None else float(threshold)
    proto = _graph(spec, n_out, task, t)
    import onnx

    onnx.save_model(proto, str(path / MODEL_FILE))
    x = golden_windows(spec)
    probs, emb = reference_outputs(x, spec=spec, n_outputs=n_out, task=task, threshold=t)
    write_golden(path / GOLDEN_FILE, Golden(x=x, probabilities=probs, embedding=emb))
    manifest = Manifest(
        name=name,
        version=version,
        task=task,
        labels=tuple(labels),
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash,
        input=TensorInfo("features", (None, *spec.input_shape)),
        outputs=(
            TensorInfo("probabilities", (None, len(labels)), "probabilities"),
            TensorInfo("embedding", (None, spec.n_features), "embedding"),
        ),
        opset=TINY_OPSET,
        model_sha256=sha256_file(path / MODEL_FILE),
        golden_sha256=sha256_file(path / GOLDEN_FILE),
        thresholds=(
            (tuple(thresholds) if thresholds is not None else (0.5,) * len(labels))
            if task == "multi"
            else None
        ),
        training={"kind": f"tiny-{kind}", "threshold": t},
        metrics={},
        macs_per_window=None,
        created_at="2026-01-01T00:00:00Z",
        tympan_version="test",
    )
    write_manifest(manifest, path)
    return path


def golden_windows(spec: FeatureSpec, n: int = GOLDEN_WINDOWS) -> Float32:
    """Deterministic windows spanning quiet to loud (feature values around the boundary)."""
    rng = np.random.default_rng(0)
    t = default_threshold(spec)
    step = 4.0 * _tag_step(spec)
    levels = np.linspace(t - step, t + step, n, dtype=np.float64)
    x = rng.standard_normal((n, *spec.input_shape)) * _tag_step(spec) / 2
    if spec.kind == "mfcc":  # c0 carries the level (ortho DCT: c0 = sqrt(n_mels) * mean)
        x[:, 0] += levels[:, None, None] * np.sqrt(spec.n_mels)
    else:
        x += levels[:, None, None, None]
    return x.astype(np.float32)


def reference_outputs(
    x: Float32,
    *,
    spec: FeatureSpec,
    n_outputs: int,
    task: str = "single",
    threshold: float | None = None,
) -> tuple[Float32, Float32]:
    """The tiny model's function in numpy: ``(probabilities, embedding)``."""
    t = default_threshold(spec) if threshold is None else threshold
    m = x.astype(np.float64).mean(axis=(2, 3))
    energy = m[:, :1] / np.sqrt(spec.n_mels) if spec.kind == "mfcc" else m.mean(1, keepdims=True)
    z = (energy - t) * _slope(spec)
    centre = (np.arange(n_outputs) - (n_outputs - 1) / 2)[None, :]
    if task == "multi":
        probs = 1.0 / (1.0 + np.exp(-(z - centre * _tag_step(spec) * _slope(spec))))
    else:
        logits = z * centre
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    c = m - m.mean(axis=1, keepdims=True)
    emb = c / np.sqrt((c * c).sum(axis=1, keepdims=True) + _EPS)
    return probs.astype(np.float32), emb.astype(np.float32)


def perturb_golden(model_dir: Path, delta: float) -> None:
    """Shift the recorded golden probabilities by ``delta`` and re-sign the manifest.

    Leaves a model directory that loads fine but whose ``parity_check`` returns
    ``delta``: a fixture for the hot-reload gate's refusal path.
    """
    model_dir = Path(model_dir)
    golden = read_golden(model_dir / GOLDEN_FILE)
    shifted = Golden(golden.x, golden.probabilities + np.float32(delta), golden.embedding)
    write_golden(model_dir / GOLDEN_FILE, shifted)
    resign(model_dir)


def resign(model_dir: Path) -> None:
    """Recompute the manifest's file digests after a test edited a file on purpose."""
    model_dir = Path(model_dir)
    import json

    data = json.loads((model_dir / MANIFEST_FILE).read_text())
    data["model_sha256"] = sha256_file(model_dir / MODEL_FILE)
    data["golden_sha256"] = sha256_file(model_dir / GOLDEN_FILE)
    (model_dir / MANIFEST_FILE).write_text(json.dumps(data, indent=2))
    load_manifest(model_dir, verify_files=False)


def _graph(spec: FeatureSpec, n_out: int, task: str, threshold: float) -> Any:
    from onnx import TensorProto, helper

    def const(name: str, value: Any) -> Any:
        arr = np.asarray(value, dtype=np.float32)
        return helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.ravel().tolist())

    centre = (np.arange(n_out) - (n_out - 1) / 2)[None, :]
    slope = _slope(spec)
    if task == "multi":
        scale, offset = np.ones_like(centre), centre * _tag_step(spec) * slope
    else:
        scale, offset = centre, np.zeros_like(centre)
    inits = [
        const("threshold", [threshold]),
        const("slope", [slope]),
        const("scale", scale),
        const("offset", offset),
        const("eps", [_EPS]),
    ]
    nodes = [helper.make_node("ReduceMean", ["features"], ["m"], axes=[2, 3], keepdims=0)]
    if spec.kind == "mfcc":
        nodes += [
            helper.make_node("Slice", ["m", "zero_i", "one_i", "one_i"], ["c0"]),
            helper.make_node("Mul", ["c0", "c0_gain"], ["energy"]),
        ]
        inits += [
            const("c0_gain", [1.0 / np.sqrt(spec.n_mels)]),
            helper.make_tensor("zero_i", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one_i", TensorProto.INT64, [1], [1]),
        ]
    else:
        nodes.append(helper.make_node("ReduceMean", ["m"], ["energy"], axes=[1], keepdims=1))
    nodes += [
        helper.make_node("Sub", ["energy", "threshold"], ["d"]),
        helper.make_node("Mul", ["d", "slope"], ["z"]),
        helper.make_node("Mul", ["z", "scale"], ["zs"]),
        helper.make_node("Sub", ["zs", "offset"], ["logits"]),
        (
            helper.make_node("Sigmoid", ["logits"], ["probabilities"])
            if task == "multi"
            else helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)
        ),
        helper.make_node("ReduceMean", ["m"], ["band_mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["m", "band_mean"], ["c"]),
        helper.make_node("ReduceSumSquare", ["c"], ["ss"], axes=[1], keepdims=1),
        helper.make_node("Add", ["ss", "eps"], ["ss_eps"]),
        helper.make_node("Sqrt", ["ss_eps"], ["norm"]),
        helper.make_node("Div", ["c", "norm"], ["embedding"]),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tympan-tiny-energy",
        [helper.make_tensor_value_info("features", f, ["batch", *spec.input_shape])],
        [
            helper.make_tensor_value_info("probabilities", f, ["batch", n_out]),
            helper.make_tensor_value_info("embedding", f, ["batch", spec.n_features]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", TINY_OPSET)],
        producer_name="tympan-tests",
        ir_version=8,
    )
    import onnx

    onnx.checker.check_model(model)
    return model
