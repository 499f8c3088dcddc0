"""Synthetic speakers for the speaker tests: clusters of unit vectors."""

from __future__ import annotations

import numpy as np

from stream.speakers.registry import ModelBinding

DIM = 16
MODEL = ModelBinding("speaker-embed", "1", DIM)


def cluster(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    """``n`` unit vectors scattered by ``spread`` around ``centre``."""
    x = centre[None, :] + spread * rng.normal(size=(n, centre.size))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
