"""The default CNN: its contract (outputs, shapes) and its cost bound."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

MAX_MACS_PER_WINDOW = 10_000_000


@pytest.fixture(scope="module")
def keras():
    from models.train import configure_tensorflow

    configure_tensorflow(seed=0, threads=2)
    import keras

    return keras


def test_default_cnn_costs_at_most_10m_macs_per_window(keras) -> None:
    from models.architectures import build_cnn, count_macs
    from stream.features.spec import FeatureSpec

    model = build_cnn(FeatureSpec().input_shape, 5)
    assert 1_000_000 < count_macs(model) <= MAX_MACS_PER_WINDOW


def test_count_macs_matches_hand_count(keras) -> None:
    from keras import layers

    from models.architectures import count_macs

    inputs = keras.Input((8, 10, 1))
    x = layers.Conv2D(4, (3, 3), padding="same")(inputs)  # 8*10*4 * 1*9 = 2880
    x = layers.SeparableConv2D(6, (3, 3), padding="valid")(x)  # 6*8*(4*9) + 6*8*4*6 = 2880
    x = layers.DepthwiseConv2D((3, 3), padding="same")(x)  # 6*8*6*9 = 2592
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3)(x)  # 6*3 = 18
    assert count_macs(keras.Model(inputs, outputs)) == 2880 + 2880 + 2592 + 18


def test_outputs_are_named_probabilities_and_embedding(keras) -> None:
    from models.architectures import CnnConfig, build_cnn

    model = build_cnn((64, 98, 1), 4, config=CnnConfig(embedding_dim=32))
    x = np.random.default_rng(0).normal(-50, 20, (3, 64, 98, 1)).astype(np.float32)
    out = model(x, training=False)
    assert set(out) == {"probabilities", "embedding"}
    assert out["probabilities"].shape == (3, 4) and out["embedding"].shape == (3, 32)
    np.testing.assert_allclose(np.sum(out["probabilities"], axis=1), 1.0, rtol=1e-5)


def test_l2_normalized_embedding_has_unit_length(keras) -> None:
    from models.architectures import CnnConfig, build_cnn

    model = build_cnn((64, 98, 1), 3, task="multi", config=CnnConfig(l2_normalize_embedding=True))
    x = np.random.default_rng(1).normal(-50, 20, (4, 64, 98, 1)).astype(np.float32)
    out = model(x, training=False)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
    probs = np.asarray(out["probabilities"])
    assert np.all((probs > 0) & (probs < 1))  # independent sigmoids


def test_input_norm_standardizes_each_band_with_training_statistics(keras) -> None:
    from models.architectures import INPUT_NORM, adapt_input_norm, build_cnn

    model = build_cnn((4, 6, 1), 2)
    rng = np.random.default_rng(2)
    x = (rng.normal(0, 1, (50, 4, 6, 1)) * [[[3]], [[1]], [[5]], [[2]]] - 60).astype(np.float32)
    adapt_input_norm(model, x)
    norm = keras.Model(model.input, model.get_layer(INPUT_NORM).output)
    z = np.asarray(norm(x, training=True))  # frozen: same in training mode
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, atol=1e-3)
