"""speaker-embed/2, the GE2E encoder: the shipped ONNX file computes the reference
encoder on its own weights, it is the default speaker model, and /1 stays pinnable.

The parity check here needs neither torch nor the resemblyzer wheel: the LSTM, Dense
and input-gain weights are read back from the ONNX file's initializers and run through
:func:`models.ge2e.reference_embed` (numpy, float64, PyTorch's ``nn.LSTM`` equations).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import ge2e
from stream.inference.golden import GOLDEN_TOLERANCE, read_golden
from stream.inference.repository import default_repo, resolve_model_dir
from stream.inference.session import OnnxModel
from stream.roles import Role

MODEL_DIR = default_repo() / "speaker-embed" / "2"
PARITY = 1e-4


def onnx_weights() -> tuple[dict[str, np.ndarray], float]:
    """The encoder's arrays in PyTorch's layout, from ``model.onnx``, and its input gain."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(MODEL_DIR / "model.onnx")).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = list(graph.node)
    lstms = [n for n in nodes if n.op_type == "LSTM"]
    assert len(lstms) == ge2e.LAYERS
    out: dict[str, np.ndarray] = {}
    for layer, node in enumerate(lstms):
        w, r, b = (init[name][0] for name in node.input[1:4])
        i, o, f, c = np.split(np.arange(4 * ge2e.HIDDEN), 4)  # ONNX gate order: i, o, f, c
        torch_order = np.concatenate([i, f, c, o])  # PyTorch's: i, f, g, o
        out[f"lstm.weight_ih_l{layer}"] = w[torch_order]
        out[f"lstm.weight_hh_l{layer}"] = r[torch_order]
        out[f"lstm.bias_ih_l{layer}"] = b[: 4 * ge2e.HIDDEN][torch_order]
        out[f"lstm.bias_hh_l{layer}"] = b[4 * ge2e.HIDDEN :][torch_order]
    (matmul,) = (n for n in nodes if n.op_type == "MatMul")
    out["linear.weight"] = init[matmul.input[1]].T
    add = next(n for n in nodes if n.op_type == "Add" and n.input[0] == matmul.output[0])
    out["linear.bias"] = init[add.input[1]]
    gain = next(float(init[n.input[1]]) for n in nodes if n.op_type == "Mul" and n.input[1] in init)
    return out, gain


def test_onnx_computes_the_reference_encoder_on_real_features() -> None:
    weights, gain = onnx_weights()
    assert gain == pytest.approx(ge2e.FFT_GAIN)
    x = ge2e.parity_windows(ge2e.GE2E_SPEC, n=6, seed=11)  # not the golden windows
    model = OnnxModel.load(MODEL_DIR, device="cpu")
    got = model.run(x).embedding
    expected = ge2e.reference_embed(weights, np.transpose(x[..., 0], (0, 2, 1)) * gain)
    assert np.max(np.abs(got - expected)) <= PARITY


def test_the_reference_is_sensitive_to_the_gate_order() -> None:
    """The check above can fail: swapping two gates moves the embedding far past 1e-4."""
    weights, gain = onnx_weights()
    x = ge2e.parity_windows(ge2e.GE2E_SPEC, n=2, seed=5)[1:]
    seq = np.transpose(x[..., 0], (0, 2, 1)) * gain
    swapped = dict(weights)
    for key in ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"):
        i, f, g, o = np.split(weights[key], 4)
        swapped[key] = np.concatenate([f, i, g, o])
    diff = ge2e.reference_embed(weights, seq) - ge2e.reference_embed(swapped, seq)
    assert np.max(np.abs(diff)) > 100 * PARITY


def test_shipped_model_replays_golden_windows_and_records_its_source() -> None:
    model = OnnxModel.load(MODEL_DIR, device="cpu", expected_spec=ge2e.GE2E_SPEC)
    assert model.parity_check() <= GOLDEN_TOLERANCE
    golden = read_golden(MODEL_DIR / "golden.npz")
    np.testing.assert_allclose(np.linalg.norm(golden.embedding, axis=1), 1.0, atol=1e-5)
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    assert manifest["macs_per_window"] == ge2e.macs_per_window()
    assert manifest["metrics"]["keras_vs_numpy_max_abs_diff"] <= PARITY
    source = manifest["training"]["source"]
    assert source["package"] == "resemblyzer" and source["licence"] == "Apache-2.0"
    assert len(source["weights_sha256"]) == 64
    assert (MODEL_DIR / "MODEL_CARD.md").is_file()


def test_v2_is_the_default_speaker_model_and_v1_stays_pinnable() -> None:
    assert resolve_model_dir(None, role=Role.SPEAKER) == MODEL_DIR
    pinned = resolve_model_dir("speaker-embed/1", role=Role.SPEAKER)
    assert OnnxModel.load(pinned, device="cpu").manifest.version == "1"


def test_ge2e_spec_cuts_the_label_models_windows() -> None:
    """The worker runs it as its aux frontend: same framing as the default label model."""
    from stream.pipeline.jobs import check_aligned

    label = OnnxModel.load(resolve_model_dir(None), device="cpu").spec
    check_aligned(label, ge2e.GE2E_SPEC)  # raises ConfigError otherwise


@pytest.mark.tf
def test_keras_encoder_is_the_numpy_reference() -> None:
    """The Keras rebuild maps PyTorch's LSTM gates and biases right (random weights)."""
    rng = np.random.default_rng(0)
    weights = {}
    for layer in range(ge2e.LAYERS):
        n_in = ge2e.N_MELS if layer == 0 else ge2e.HIDDEN
        weights[f"lstm.weight_ih_l{layer}"] = 0.05 * rng.standard_normal((1024, n_in))
        weights[f"lstm.weight_hh_l{layer}"] = 0.05 * rng.standard_normal((1024, 256))
        weights[f"lstm.bias_ih_l{layer}"] = 0.05 * rng.standard_normal(1024)
        weights[f"lstm.bias_hh_l{layer}"] = 0.05 * rng.standard_normal(1024)
    weights["linear.weight"] = 0.05 * rng.standard_normal((256, 256))
    weights["linear.bias"] = 0.05 * rng.standard_normal(256)
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    model = ge2e.build_network()
    ge2e.set_weights(model, weights)
    x = ge2e.parity_windows(ge2e.GE2E_SPEC, n=3)
    got = np.asarray(model(x, training=False)["embedding"])
    expected = ge2e.reference_embed(weights, np.transpose(x[..., 0], (0, 2, 1)) * ge2e.FFT_GAIN)
    assert np.max(np.abs(got - expected)) <= PARITY
