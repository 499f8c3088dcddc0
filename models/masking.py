"""SpecAugment masks on feature windows, drawn afresh for every training batch.

Why beside the waveform augmentation (:mod:`models.augment`): those copies are drawn
once, before training, so a model that fits them in a dozen epochs has seen every
one of them a dozen times. Masking a band of mel bins or a stretch of frames in each
batch as it is drawn (Park et al., 2019, "SpecAugment") shows a different window
every epoch at no feature-extraction cost, and teaches the model not to rest on one
band (a guitar's body resonance, a piano's hammer noise) to name an instrument.
Training only: serving never masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class MaskConfig:
    """How many masks a training window gets, and how wide.

    Attributes
    ----------
    freq_masks: bands of mel bins masked per window (0: none).
    freq_width: largest band, in mel bins (each drawn uniformly in ``0..freq_width``).
    time_masks: stretches of frames masked per window (0: none).
    time_width: largest stretch, in frames.
    prob: probability that a window is masked at all.

    The defaults mask nothing, so recipes without masks train as before.
    """

    freq_masks: int = 0
    freq_width: int = 8
    time_masks: int = 0
    time_width: int = 10
    prob: float = 1.0

    @property
    def active(self) -> bool:
        """Whether any window can be masked."""
        return self.prob > 0 and (self.freq_masks > 0 or self.time_masks > 0)


def mask_windows(x: np.ndarray, rng: np.random.Generator, config: MaskConfig) -> np.ndarray:
    """A masked copy of a batch of feature windows.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, n_mels, t, 1)]
        Raw frontend output (log-mel), as the network's input takes it.
    rng : np.random.Generator
        Source of every draw (seeded by the caller).
    config : MaskConfig
        Counts and widths.

    Returns
    -------
    np.ndarray [shape=(batch, n_mels, t, 1)]
        Same dtype; a masked band or stretch holds its window's mean, so it carries
        no level the model could read as a feature once the input is standardized.
    """
    out = np.array(x, copy=True)
    n_mels, t = out.shape[1], out.shape[2]
    for i in range(out.shape[0]):
        if rng.random() >= config.prob:
            continue
        fill = out[i].mean()
        for _ in range(config.freq_masks):
            width = int(rng.integers(0, config.freq_width + 1))
            start = int(rng.integers(0, n_mels - width + 1))
            out[i, start : start + width] = fill
        for _ in range(config.time_masks):
            width = int(rng.integers(0, config.time_width + 1))
            start = int(rng.integers(0, t - width + 1))
            out[i, :, start : start + width] = fill
    return out
