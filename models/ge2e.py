"""speaker-embed/2: the GE2E voice encoder trained on thousands of real speakers.

The encoder of Wan et al., "Generalized End-to-End Loss for Speaker Verification"
(ICASSP 2018), as trained by Corentin Jemine and shipped inside the ``resemblyzer``
wheel (Apache-2.0, ``resemblyzer/pretrained.pt``; trained on LibriSpeech,
VoxCeleb 1 and 2: several thousand real speakers). Rebuilt here in Keras from its
definition (``resemblyzer/voice_encoder.py``):

``40 power mels [t, 40] → LSTM 256 ×3 → last hidden state → Dense 256 → ReLU → L2 norm``

Recipe (``python -m models.ge2e build --wheel Resemblyzer-0.1.4-py3-none-any.whl``):

1. the weights are read from the wheel's ``pretrained.pt`` by
   :func:`models.torch_weights.load_state_dict` (no torch, no code from the file);
2. :func:`build_network` makes the Keras model and :func:`set_weights` loads them
   (PyTorch's LSTM gates are ``i, f, g, o`` as Keras's ``i, f, c, o``; its two biases add);
3. :func:`reference_embed` is the encoder in plain numpy from the same arrays: the
   reference the ONNX export must match (``≤ 1e-4``) besides the Keras model;
4. :func:`exporters.export.export_model` converts with tf2onnx and gates parity.

Frontend. Resemblyzer feeds ``librosa.feature.melspectrogram(sr=16000, n_fft=400,
hop_length=160, n_mels=40)`` — power mels, *no log*, Slaney filters from 0 Hz to
8 kHz, hann 400. The worker's speaker features must cut the same windows as its
label model (``n_fft=512``, ``win_length=400``, hop 160, 1 s windows every 0.5 s), so
:data:`GE2E_SPEC` keeps that framing: the same 400-sample hann frame, zero-padded
to 512 before the FFT. Zero padding samples the same spectrum more densely, so each
Slaney-normalized mel band sums ``512/400`` times the energy it sums at ``n_fft=400``;
the network's first layer multiplies by :data:`FFT_GAIN` ``= 400/512`` to give the
encoder the scale it was trained on. (The remaining difference is interpolation
between FFT bins; ``tests/unit/models/test_ge2e.py`` measures it.) A 1 s window is
98 frames where Resemblyzer uses 160-frame partials; the LSTM takes any length.

Volume. Resemblyzer raises quiet recordings to −30 dBFS before the mels and the
mels are power, so the encoder's input scales with the line's gain; the worker
feeds windows as they come (see the model card for what gain does to the scores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream.features.spec import FeatureSpec

log = logging.getLogger(__name__)

NAME = "speaker-embed"
VERSION = "2"
HIDDEN = 256
LAYERS = 3
EMBEDDING = 256
N_MELS = 40
FFT_GAIN = 400.0 / 512.0
"""Mel energy at ``n_fft=400`` over mel energy of the same frame zero-padded to 512."""

WEIGHTS_MEMBER = "resemblyzer/pretrained.pt"
LABELS = ("voice",)
"""The manifest contract wants a probabilities output; GE2E has no classifier, so the
model's only column is a constant 1 (one label, softmax of one logit)."""

GE2E_SPEC = FeatureSpec(
    sr=16000,
    n_fft=512,
    win_length=400,
    hop_length=160,
    window="hann",
    n_mels=N_MELS,
    fmin=0.0,
    fmax=None,
    htk=False,
    norm="slaney",
    power=2.0,
    log="none",
)
"""Resemblyzer's mels in the worker's framing (see the module docstring)."""


def encoder_weights(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder's arrays from a state dict (``model_state.`` prefix optional).

    Raises
    ------
    KeyError
        A weight is missing; the message names it.
    """
    prefix = "model_state." if any(k.startswith("model_state.") for k in state) else ""
    names = [f"lstm.{kind}_l{i}" for i in range(LAYERS) for kind in _LSTM_KINDS]
    names += ["linear.weight", "linear.bias"]
    out = {}
    for name in names:
        if prefix + name not in state:
            raise KeyError(f"the state dict has no {prefix + name!r}")
        out[name] = np.asarray(state[prefix + name], dtype=np.float32)
    return out


_LSTM_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def reference_embed(weights: Mapping[str, np.ndarray], mels: np.ndarray) -> np.ndarray:
    """The encoder in numpy (float64), as ``VoiceEncoder.forward`` computes it.

    Parameters
    ----------
    weights : the :func:`encoder_weights` arrays.
    mels : ``[shape=(batch, t, 40)]`` power mels *as the encoder sees them* (after
        the network's input scaling).

    Returns
    -------
    ``[shape=(batch, 256)]`` L2-normalized embeddings.
    """
    x = np.asarray(mels, dtype=np.float64)
    for layer in range(LAYERS):
        w_ih = weights[f"lstm.weight_ih_l{layer}"].astype(np.float64)
        w_hh = weights[f"lstm.weight_hh_l{layer}"].astype(np.float64)
        bias = (weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"]).astype(
            np.float64
        )
        x = _lstm_sequence(x, w_ih, w_hh, bias)
    last = x[:, -1, :]
    raw = np.maximum(
        last @ weights["linear.weight"].T.astype(np.float64) + weights["linear.bias"], 0
    )
    return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)


def _lstm_sequence(
    x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    gates_in = x @ w_ih.T + bias
    out = np.empty((batch, steps, hidden))
    for t in range(steps):
        g = gates_in[:, t] + h @ w_hh.T
        i, f, cell, o = np.split(g, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cell)
        h = _sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def build_network(spec: FeatureSpec = GE2E_SPEC, *, input_gain: float = FFT_GAIN):  # type: ignore[no-untyped-def]
    """The Keras encoder: ``[batch, 40, frames, 1]`` features → ``probabilities``, ``embedding``.

    ``input_gain`` multiplies the features first (:data:`FFT_GAIN`; see the module
    docstring), then the LSTMs read the window frame by frame.
    """
    import keras
    from keras import layers

    n_mels, frames, _ = spec.input_shape
    inputs = keras.Input(shape=spec.input_shape, name="features")
    x = layers.Reshape((n_mels, frames))(inputs)
    x = layers.Permute((2, 1))(x)
    x = layers.Rescaling(input_gain, name="fft_gain")(x)
    for layer in range(LAYERS):
        last = layer == LAYERS - 1
        x = layers.LSTM(HIDDEN, return_sequences=not last, name=f"lstm_{layer}")(x)
    x = layers.Dense(EMBEDDING, activation="relu", name="linear")(x)
    embedding = layers.UnitNormalization(name="embedding")(x)
    probabilities = layers.Lambda(lambda e: keras.ops.ones_like(e[:, :1]), name="probabilities")(
        embedding
    )
    return keras.Model(inputs, {"probabilities": probabilities, "embedding": embedding})


def set_weights(model: Any, weights: Mapping[str, np.ndarray]) -> None:
    """Load the PyTorch arrays into :func:`build_network`'s layers."""
    for layer in range(LAYERS):
        kernel = weights[f"lstm.weight_ih_l{layer}"].T
        recurrent = weights[f"lstm.weight_hh_l{layer}"].T
        bias = weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"]
        model.get_layer(f"lstm_{layer}").set_weights([kernel, recurrent, bias])
    model.get_layer("linear").set_weights([weights["linear.weight"].T, weights["linear.bias"]])


def macs_per_window(spec: FeatureSpec = GE2E_SPEC) -> int:
    """Multiply-adds of one window: four gates per LSTM step and layer, then the Dense."""
    frames = spec.frames_per_window
    inputs = [spec.n_mels] + [HIDDEN] * (LAYERS - 1)
    lstm = sum(4 * HIDDEN * (n + HIDDEN) for n in inputs) * frames
    return lstm + HIDDEN * EMBEDDING


def read_wheel(wheel: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The encoder weights inside a resemblyzer wheel, and their provenance."""
    import tempfile

    from models.torch_weights import load_state_dict

    with zipfile.ZipFile(wheel) as archive:
        blob = archive.read(WEIGHTS_MEMBER)
        metadata = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        version = metadata[0].split("/")[0].removesuffix(".dist-info").split("-")[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pretrained.pt"
        path.write_bytes(blob)
        state = load_state_dict(path)
    provenance = {
        "package": "resemblyzer",
        "version": version,
        "file": WEIGHTS_MEMBER,
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "licence": "Apache-2.0",
    }
    return encoder_weights(state), provenance


def parity_windows(spec: FeatureSpec, *, n: int = 16, seed: int = 0) -> np.ndarray:
    """Feature windows for the parity gate and golden file: speech-like, at many gains.

    Harmonic voiced sounds with moving pitch and formant-like noise bursts, scaled
    over −60…−10 dBFS, so the LSTM's gates see the input range of real lines.
    """
    from stream.features import offline

    rng = np.random.default_rng(seed)
    t = np.arange(spec.window_samples) / spec.sr
    out = []
    for i in range(n):
        f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / spec.sr
        y = sum(np.sin(k * phase) / k for k in range(1, 20))
        y *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2
        y += 0.05 * rng.standard_normal(t.size)
        y = y / np.sqrt(np.mean(y**2)) * 10 ** (rng.uniform(-60, -10) / 20) if i else 0 * y
        feats = offline.features(y.astype(np.float32), spec)[:, : spec.frames_per_window]
        out.append(feats[..., None])
    return np.stack(out).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.ge2e", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="convert the resemblyzer weights into the zoo")
    cmd.add_argument(
        "--wheel",
        type=Path,
        required=True,
        help="Resemblyzer-*.whl (pip download --no-deps resemblyzer)",
    )
    cmd.add_argument("--repo", type=Path, default=Path("models/zoo"))
    cmd.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = build(args.wheel, repo=args.repo, overwrite=args.overwrite)
    print(target)
    return 0


def build(wheel: Path, *, repo: Path, overwrite: bool = False) -> Path:
    """Read the wheel, build the Keras encoder, gate it against numpy, export to ``repo``."""
    from exporters.export import export_model

    weights, provenance = read_wheel(wheel)
    model = build_network(GE2E_SPEC)
    set_weights(model, weights)
    x = parity_windows(GE2E_SPEC)
    keras_emb = np.asarray(model(x, training=False)["embedding"])
    seq = np.transpose(x[..., 0], (0, 2, 1)) * FFT_GAIN
    reference = reference_embed(weights, seq)
    keras_vs_numpy = float(np.max(np.abs(keras_emb - reference)))
    if keras_vs_numpy > 1e-4:
        raise ValueError(f"Keras encoder differs from the numpy reference by {keras_vs_numpy:.3g}")
    target = export_model(
        model,
        spec=GE2E_SPEC,
        labels=LABELS,
        out_dir=repo,
        name=NAME,
        version=VERSION,
        golden_x=x,
        training_summary={"recipe": "models.ge2e", "source": provenance, "trained_by_us": False},
        metrics={"keras_vs_numpy_max_abs_diff": keras_vs_numpy},
        macs=macs_per_window(GE2E_SPEC),
        overwrite=overwrite,
    )
    onnx_vs_numpy = _onnx_vs_reference(target, x, reference)
    (target / "parity.json").write_text(
        json.dumps(
            {
                "keras_vs_numpy": keras_vs_numpy,
                "onnx_vs_numpy": onnx_vs_numpy,
                "windows": int(x.shape[0]),
            },
            indent=2,
        )
        + "\n"
    )
    log.info("parity: keras vs numpy %.3g, onnx vs numpy %.3g", keras_vs_numpy, onnx_vs_numpy)
    if onnx_vs_numpy > 1e-4:
        raise ValueError(f"ONNX encoder differs from the numpy reference by {onnx_vs_numpy:.3g}")
    return target


def _onnx_vs_reference(target: Path, x: np.ndarray, reference: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(target / "model.onnx"), providers=["CPUExecutionProvider"])
    (emb,) = session.run(["embedding"], {"features": x})
    return float(np.max(np.abs(emb - reference)))


if __name__ == "__main__":
    sys.exit(main())
