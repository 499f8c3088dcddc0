"""Weight averaging over epochs: the model a run ships is the mean of its epochs.

Stochastic weight averaging (Izmailov et al., 2018, "Averaging Weights Leads to Wider
Optima and Better Generalization") at a constant learning rate: the trainable weights at
the end of every epoch from ``start_epoch`` on are summed, and when training ends the
model gets their mean. Why: on scene/4's recipe the initialization seed moves the
synthetic hold-out by six points, and the weak runs are those whose validation loss was
lowest at epoch 1–3, so early stopping shipped an early, noisy point of the path; a mean
over many epochs depends less on which single epoch scored best on a small validation
split.

Only trainable weights are averaged. The scene network has no batch normalization that
trains (its input normalization is frozen), so no statistics need recomputing after the
average. TensorFlow and Keras are imported inside functions only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


class WeightSum:
    """A running sum of weight lists in float64, and how many were added.

    float64 so the mean of float32 snapshots is exact to the last float32 bit for any
    number of epochs a run has (the mean of identical snapshots is the snapshot).
    """

    def __init__(self) -> None:
        self.total: list[np.ndarray] = []
        self.count = 0

    def add(self, weights: list[np.ndarray]) -> None:
        """Add one snapshot ``[arrays of any shapes]`` (the same shapes every time)."""
        arrays = [np.asarray(w, dtype=np.float64) for w in weights]
        if not self.total:
            self.total = arrays
        else:
            self.total = [t + a for t, a in zip(self.total, arrays, strict=True)]
        self.count += 1

    def mean(self) -> list[np.ndarray]:
        """The mean of the snapshots added, in float64; an empty list before the first."""
        return [t / self.count for t in self.total] if self.count else []


def weight_average(start_epoch: int) -> keras.callbacks.Callback:
    """A Keras callback that averages the trainable weights from ``start_epoch`` (1-based).

    At the end of every epoch ``>= start_epoch`` the trainable weights join the sum; at
    the end of training the model's trainable weights become the mean. A run that ended
    before ``start_epoch`` keeps its last weights (and says so in the log).
    Put it before any callback that changes the weights at an epoch's end.

    Raises
    ------
    ValueError
        ``start_epoch`` is below 1.
    """
    import keras

    if start_epoch < 1:
        raise ValueError(f"average_from must be an epoch number >= 1, got {start_epoch}")

    class WeightAverage(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.sum = WeightSum()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            if epoch + 1 >= start_epoch:
                self.sum.add([v.numpy() for v in self.model.trainable_weights])

        def on_train_end(self, logs: object = None) -> None:
            if not self.sum.count:
                log.warning("training ended before epoch %d: no weights averaged", start_epoch)
                return
            for variable, mean in zip(self.model.trainable_weights, self.sum.mean(), strict=True):
                variable.assign(mean.astype(variable.dtype))

    return WeightAverage()


__all__ = ["WeightSum", "weight_average"]
