"""Weight averaging: the shipped weights are the mean of the epochs' weights."""

from __future__ import annotations

import numpy as np
import pytest

from models.averaging import WeightSum, weight_average


def test_mean_of_identical_float32_snapshots_is_the_snapshot() -> None:
    rng = np.random.default_rng(0)
    snapshot = [rng.standard_normal((3, 5)).astype(np.float32) * 1e3, np.float32([0.1, 1 / 3])]
    total = WeightSum()
    for _ in range(7):
        total.add(snapshot)
    for mean, original in zip(total.mean(), snapshot, strict=True):
        np.testing.assert_array_equal(mean.astype(np.float32), original)
    assert WeightSum().mean() == []


def test_epoch_numbers_start_at_one() -> None:
    pytest.importorskip("keras")
    with pytest.raises(ValueError, match="got 0"):
        weight_average(0)


@pytest.mark.tf
def test_fit_ends_with_the_mean_of_the_epochs_from_the_start_epoch() -> None:
    """Fit a tiny model four epochs averaging from epoch 2: its weights are then the mean
    of the weights seen at the end of epochs 2, 3 and 4, not the last epoch's."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    seen: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append([w.numpy() for w in model.trainable_weights])
    )
    x = np.random.default_rng(1).standard_normal((64, 4)).astype(np.float32)
    y = x @ np.float32([[1.0], [-2.0], [0.5], [3.0]])
    model.fit(x, y, epochs=4, batch_size=8, callbacks=[record, weight_average(2)], verbose=0)
    final = [w.numpy() for w in model.trainable_weights]
    assert len(seen) == 4
    for i, weights in enumerate(final):
        expected = np.mean([np.float64(epoch[i]) for epoch in seen[1:]], axis=0)
        np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-7)
        assert not np.allclose(weights, seen[-1][i])


def test_the_card_says_which_epochs_were_averaged_and_that_none_was_restored() -> None:
    from models.zoo.card import _epochs_line

    summary = {"epochs_run": 12, "max_epochs": 12, "best_epoch": 2, "patience": 8}
    assert "best epoch 2 restored" in _epochs_line(summary)
    averaged = _epochs_line({**summary, "average_from": 3})
    assert "averaged over epochs 3–12" in averaged
    assert "restored" not in averaged


@pytest.mark.tf
def test_ema_training_ships_the_moving_average_of_every_step(make_dataset) -> None:
    """With ``ema_momentum`` the trained model holds Keras' per-step moving average: the
    recurrence ``a = m a + (1 - m) w`` over the weights after each step, from the first
    step's weights (recomputed here from a recording of every step)."""
    import keras

    from models.architectures import build_cnn
    from models.train import TrainConfig, _fit, prepare_data
    from stream.features.spec import FeatureSpec

    spec = FeatureSpec()
    config = TrainConfig(epochs=2, progress=False, seed=3, ema_momentum=0.9, patience=1)
    data = prepare_data(make_dataset(files_per_label=3), spec=spec, config=config)
    keras.utils.set_random_seed(3)
    model = build_cnn(spec.input_shape, len(data.labels), task="single", config=config.cnn)
    steps: list[list[np.ndarray]] = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            steps.append([w.numpy().astype(np.float64) for w in model.trainable_weights])

    sets = data.sets
    _fit(model, sets["train"], sets["val"], task="single", config=config, observers=(Record(),))
    average = steps[0]
    for weights in steps[1:]:
        average = [0.9 * a + 0.1 * w for a, w in zip(average, weights, strict=True)]
    for shipped, expected in zip(model.trainable_weights, average, strict=True):
        np.testing.assert_allclose(shipped.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(model.trainable_weights[-1].numpy(), steps[-1][-1])
