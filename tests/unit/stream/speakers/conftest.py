"""Synthetic speakers: clusters of unit vectors around random directions."""

from __future__ import annotations

import numpy as np
import pytest
from speaker_fakes import DIM, MODEL, cluster

from stream.speakers.registry import SpeakerRegistry


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def centres(rng: np.random.Generator) -> dict[str, np.ndarray]:
    names = ["alice", "bob", "carol", "dave", "erin"]
    return {n: rng.normal(size=DIM) / np.sqrt(DIM) for n in names}


@pytest.fixture
def registry(rng: np.random.Generator, centres: dict[str, np.ndarray]) -> SpeakerRegistry:
    reg = SpeakerRegistry.empty(MODEL)
    for name in ["alice", "bob", "carol", "dave"]:
        reg = reg.with_speaker(name, cluster(rng, centres[name], 24, 0.04), model=MODEL)
    return reg
