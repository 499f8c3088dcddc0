"""Keras CNNs for one feature window, and what they cost.

The network is the seed's family (Conv → Pool blocks of 32/64/128 filters, Dense,
Dropout, softmax) made cheap enough to serve thousands of live calls: the first
convolution is strided and the blocks pool early, and a global average pool
replaces ``Flatten``, so a 1 s window of 64 × 97 log-mels costs about 6.1 M
multiply-adds instead of the ~46 M of the seed's network (count_macs, 64 × 101 input).
The shipped ``scene/2`` halves every layer (``stem_filters=8, block_filters=(16, 32,
64)``): 1.6 M multiply-adds, and no less held-out accuracy on the scene corpus.

Every model has two named outputs, the contract of ``docs/architecture.md``:
``probabilities`` (softmax for one label per window, sigmoid for tags) and
``embedding`` (the penultimate layer, optionally L2-normalized for speaker
scoring). Normalization is a layer inside the network (a frozen
``BatchNormalization`` per feature band holding the training windows' mean and
variance, set by :func:`adapt_input_norm`), so serving feeds the frontend's output
unchanged. Why not ``keras.layers.Normalization``: its statistics are captured as
eager tensors, which tf2onnx turns into extra graph *inputs*; a frozen batch norm
keeps them in variables, which are folded into constants. Absolute level is kept on purpose: a
per-window normalization would make silence and noise look alike.

TensorFlow is imported inside the functions, so ``import models`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import keras

Task = Literal["single", "multi"]

PROBABILITIES = "probabilities"
EMBEDDING = "embedding"
INPUT_NORM = "input_norm"


@dataclass(frozen=True, slots=True)
class CnnConfig:
    """Shape of the default CNN.

    Attributes
    ----------
    stem_filters: filters of the strided first convolution.
    block_filters: filters of the MaxPool → Conv → ReLU blocks after the stem.
    embedding_dim: width of the penultimate Dense layer (the ``embedding`` output).
    dropout: dropout rate before the head (training only).
    l2_normalize_embedding: emit a unit-length ``embedding`` (cosine scoring of
        speakers); the classification head still reads the un-normalized layer.
    """

    stem_filters: int = 16
    block_filters: tuple[int, ...] = (32, 64, 128)
    embedding_dim: int = 64
    dropout: float = 0.3
    l2_normalize_embedding: bool = False


def build_cnn(
    input_shape: tuple[int, int, int],
    n_labels: int,
    *,
    task: Task = "single",
    config: CnnConfig | None = None,
    name: str = "tympan_cnn",
) -> keras.Model:
    """Build the default CNN with outputs ``{"probabilities", "embedding"}``.

    Parameters
    ----------
    input_shape : (n_features, frames_per_window, 1)
        ``FeatureSpec.input_shape``; channels last, feature axis first as librosa.
    n_labels : int
        Width of the ``probabilities`` output.
    task : {"single", "multi"}
        ``"single"``: softmax (one label per window); ``"multi"``: independent
        sigmoids (tags).
    config : CnnConfig, optional
        Layer sizes; the default costs ≤ 10 M multiply-adds per window of the
        default FeatureSpec (64 log-mels × 1 s).

    Returns
    -------
    keras.Model
        Functional model; input ``[batch, *input_shape]``, outputs a dict with
        ``probabilities`` ``[batch, n_labels]`` and ``embedding``
        ``[batch, embedding_dim]``.
    """
    import keras
    from keras import layers

    cfg = config or CnnConfig()
    inputs = keras.Input(shape=input_shape, name="features")
    # Per-band standardization with the training set's statistics (constants in
    # the graph), so serving feeds raw dB values; see adapt_input_norm.
    norm = layers.BatchNormalization(axis=1, center=False, scale=False, name=INPUT_NORM)
    norm.trainable = False  # always inference mode: a fixed affine map
    x = norm(inputs)
    x = _conv_relu(x, cfg.stem_filters, strides=(2, 2), name="stem")
    for i, filters in enumerate(cfg.block_filters, start=1):
        x = layers.MaxPooling2D((2, 2), padding="same", name=f"pool{i}")(x)
        x = _conv_relu(x, filters, strides=(1, 1), name=f"block{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    hidden = layers.Dense(cfg.embedding_dim, activation="relu", name="penultimate")(x)
    embedding = (
        layers.UnitNormalization(name=EMBEDDING)(hidden)
        if cfg.l2_normalize_embedding
        else layers.Identity(name=EMBEDDING)(hidden)
    )
    x = layers.Dropout(cfg.dropout, name="dropout")(hidden)
    activation = "softmax" if task == "single" else "sigmoid"
    probabilities = layers.Dense(n_labels, activation=activation, name=PROBABILITIES)(x)
    return keras.Model(inputs, {PROBABILITIES: probabilities, EMBEDDING: embedding}, name=name)


def adapt_input_norm(model: keras.Model, x: np.ndarray) -> None:
    """Set the input normalization to the per-band mean and variance of ``x``.

    Call once with the training windows ``[n, *input_shape]`` before fitting.
    """
    layer = model.get_layer(INPUT_NORM)
    bands = range(x.shape[1])  # band by band: float64 sums without a float64 copy of x
    mean = [x[:, band].mean(dtype=np.float64) for band in bands]
    variance = [x[:, band].var(dtype=np.float64) for band in bands]
    layer.moving_mean.assign(np.asarray(mean, dtype=np.float32))
    layer.moving_variance.assign(np.asarray(variance, dtype=np.float32))


def classifier_view(model: keras.Model) -> keras.Model:
    """The same layers with ``probabilities`` as the only output, for ``fit``.

    Keras wants a loss for every output; the embedding has none, so training runs
    on this view and the two-output model shares its weights.
    """
    import keras

    return keras.Model(model.inputs, model.output[PROBABILITIES])


def _conv_relu(
    x: keras.KerasTensor, filters: int, *, strides: tuple[int, int], name: str
) -> keras.KerasTensor:
    # No BatchNormalization: small datasets give a few steps per epoch, too few for
    # its moving statistics to settle, and inference would then see other numbers
    # than training did. The input is standardized instead.
    from keras import layers

    return layers.Conv2D(
        filters, (3, 3), strides=strides, padding="same", activation="relu", name=f"{name}_conv"
    )(x)


def count_macs(model: keras.Model) -> int:
    """Multiply-adds of one forward pass for a batch of one.

    Counts ``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D`` and ``Dense`` (the
    layers that dominate); normalization, pooling and activations are ignored.

    Parameters
    ----------
    model : keras.Model
        A built model with fixed input shape (batch axis excepted).

    Returns
    -------
    int
        Multiply-adds per input window; the figure in the model card.
    """
    from keras import layers

    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, layers.SeparableConv2D):
            (_, h, w, c_out) = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            depth = h * w * c_in * layer.depth_multiplier * kh * kw
            total += depth + h * w * c_in * layer.depth_multiplier * c_out
        elif isinstance(layer, layers.DepthwiseConv2D):
            (_, h, w, c_out) = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c_out * kh * kw
        elif isinstance(layer, layers.Conv2D):
            (_, h, w, c_out) = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * c_out * c_in * kh * kw // layer.groups
        elif isinstance(layer, layers.Dense):
            positions = 1
            for size in layer.input.shape[1:-1]:
                positions *= size
            total += positions * layer.input.shape[-1] * layer.units
    return int(total)


def _leaf_layers(model: keras.Model) -> list[keras.Layer]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_leaf_layers(layer))
        else:
            out.append(layer)
    return out
