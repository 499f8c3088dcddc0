"""OnnxModel: runs the graph the manifest describes, validates input, checks golden parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.errors import ModelError
from stream.features.offline import features, window_stack
from stream.features.spec import FeatureSpec
from stream.inference import ModelOutput, OnnxModel
from stream.inference.session import available_providers
from tests.support.onnx_models import (
    golden_windows,
    make_tiny_model_dir,
    perturb_golden,
    reference_outputs,
)


def test_outputs_match_numpy_reference(tiny_dir: Path, spec: FeatureSpec) -> None:
    model = OnnxModel.load(tiny_dir, device="cpu")
    x = golden_windows(spec)
    out = model.run(x)
    probs, emb = reference_outputs(x, spec=spec, n_outputs=2)
    np.testing.assert_allclose(out.probabilities, probs, atol=1e-5)
    np.testing.assert_allclose(out.embedding, emb, atol=1e-5)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out.embedding, axis=1), 1.0, atol=1e-5)
    assert len(out) == len(x)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_real_features_loud_vs_quiet(tmp_path: Path, kind: str) -> None:
    spec = FeatureSpec(kind=kind, window_seconds=0.5, hop_seconds=0.25)  # type: ignore[arg-type]
    model = OnnxModel.load(make_tiny_model_dir(tmp_path, spec=spec, labels=["quiet", "loud"]))
    rng = np.random.default_rng(0)
    for amplitude, want in [(1e-3, "quiet"), (0.1, "loud")]:
        y = (amplitude * rng.standard_normal(spec.sr)).astype(np.float32)
        x, _ = window_stack(features(y, spec), spec)
        out = model.run(x)
        assert {model.labels[i] for i in out.probabilities.argmax(axis=1)} == {want}


def test_embedding_is_gain_invariant_and_pitch_sensitive(tiny_dir: Path, spec: FeatureSpec) -> None:
    model = OnnxModel.load(tiny_dir)
    t = np.arange(spec.window_samples) / spec.sr

    def emb(freq: float, amp: float) -> np.ndarray:
        y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        x, _ = window_stack(features(y, spec), spec)
        return model.run(x[:1]).embedding[0]

    same = float(emb(440, 0.5) @ emb(440, 0.05))
    different = float(emb(440, 0.5) @ emb(3000, 0.5))
    assert same > 0.95  # not 1: bands far from the tone sit at the amin floor
    assert different < 0.5


def test_multi_label_tags(tmp_path: Path, spec: FeatureSpec) -> None:
    model_dir = make_tiny_model_dir(tmp_path, spec=spec, labels=["a", "b", "c"], task="multi")
    model = OnnxModel.load(model_dir)
    assert model.manifest.thresholds == (0.5, 0.5, 0.5)
    out = model.run(golden_windows(spec))
    # louder windows switch on more tags: tags are ordered by their level threshold
    on = (out.probabilities >= 0.5).sum(axis=1)
    assert list(on) == sorted(on)
    assert on[0] == 0 and on[-1] == 3


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 16, 22, 1), dtype=np.float64), "float32 array, got float64"),
        ([[0.0]], "float32 array, got list"),
        (np.zeros((2, 16, 22), dtype=np.float32), r"input shape \(2, 16, 22\) is not"),
        (np.zeros((2, 8, 22, 1), dtype=np.float32), "is not"),
        (np.zeros((0, 16, 22, 1), dtype=np.float32), "batch>=1"),
    ],
)
def test_run_rejects_bad_input(tiny_dir: Path, x: object, message: str) -> None:
    model = OnnxModel.load(tiny_dir)
    with pytest.raises(ModelError, match=message):
        model.run(x)  # type: ignore[arg-type]


def test_dynamic_batch_and_warmup(tiny_dir: Path, spec: FeatureSpec) -> None:
    model = OnnxModel.load(tiny_dir, intra_op_threads=1)
    model.warmup([1, 3, 17])
    for n in (1, 5, 64):
        out = model.run(np.full((n, *spec.input_shape), -30.0, dtype=np.float32))
        assert isinstance(out, ModelOutput)
        assert out.probabilities.shape == (n, 2)
        assert out.embedding.shape == (n, spec.n_features)


def test_parity_check_on_own_golden(tiny_dir: Path) -> None:
    model = OnnxModel.load(tiny_dir)
    assert model.parity_check() < 1e-5


def test_parity_check_reports_drift(tiny_dir: Path) -> None:
    perturb_golden(tiny_dir, 0.01)
    model = OnnxModel.load(tiny_dir)
    assert model.parity_check() == pytest.approx(0.01, abs=1e-5)


def test_parity_check_missing_golden(tiny_dir: Path, tmp_path: Path) -> None:
    model = OnnxModel.load(tiny_dir)
    with pytest.raises(ModelError, match="golden file is missing"):
        model.parity_check(tmp_path / "absent.npz")


def test_cpu_device_and_providers(tiny_dir: Path) -> None:
    model = OnnxModel.load(tiny_dir, device="cpu")
    assert model.device == "cpu"
    assert model.providers == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="this host has CUDA")
def test_cuda_requested_but_absent_names_what_is_missing(tiny_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"no CUDAExecutionProvider.*onnxruntime-gpu"):
        OnnxModel.load(tiny_dir, device="cuda")


def test_auto_device_without_cuda_uses_cpu(tiny_dir: Path) -> None:
    model = OnnxModel.load(tiny_dir, device="auto")
    expected = "cuda" if "CUDAExecutionProvider" in available_providers() else "cpu"
    assert model.device == expected


def test_bad_device_and_threads(tiny_dir: Path) -> None:
    with pytest.raises(ModelError, match="device='tpu'"):
        OnnxModel.load(tiny_dir, device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="intra_op_threads=0"):
        OnnxModel.load(tiny_dir, intra_op_threads=0)


def test_a_model_with_external_data_is_refused(tmp_path: Path, spec: FeatureSpec) -> None:
    """Tensors in files beside model.onnx escape the manifest's checksum: refused, by name."""
    import onnx

    from tests.support.onnx_models import resign

    model_dir = make_tiny_model_dir(tmp_path / "tiny", spec=spec, labels=["quiet", "loud"])
    graph = onnx.load(model_dir / "model.onnx")
    for tensor in graph.graph.initializer:  # raw bytes: what external data can hold
        tensor.CopyFrom(
            onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor), tensor.name)
        )
    onnx.save_model(
        graph,
        model_dir / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (model_dir / "weights.bin").stat().st_size > 0
    resign(model_dir)  # the manifest's digest of model.onnx is right; weights.bin has none
    with pytest.raises(ModelError, match="external data"):
        OnnxModel.load(model_dir, device="cpu")
