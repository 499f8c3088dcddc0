from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from speaker_fakes import DIM, MODEL, cluster

from stream.speakers.calibration import (
    DEFAULT_CALIBRATION,
    CalibrationConfig,
    calibrate,
    config_for_model,
    equal_error,
    rates,
    segments,
)
from stream.speakers.registry import SpeakerRegistry, load_registry, save_registry


def test_equal_error_is_zero_for_separated_scores() -> None:
    eer, threshold = equal_error([0.8, 0.9, 0.95], [0.1, 0.2, 0.3])
    assert eer == 0.0
    assert 0.3 < threshold <= 0.8


def test_equal_error_is_half_for_identical_distributions() -> None:
    scores = np.linspace(0, 1, 101)
    eer, _ = equal_error(scores, scores)
    assert abs(eer - 0.5) < 0.02


@given(
    st.lists(st.floats(-1, 1), min_size=1, max_size=30),
    st.lists(st.floats(-1, 1), min_size=1, max_size=30),
    st.floats(-1, 1),
)
def test_rates_are_probabilities(g: list[float], i: list[float], t: float) -> None:
    far, frr = rates(g, i, t)
    assert 0.0 <= far <= 1.0 and 0.0 <= frr <= 1.0


def test_segments_are_unit_and_cover_the_windows(rng: np.random.Generator) -> None:
    emb = cluster(rng, rng.normal(size=8), 10, 0.5)
    seg = segments(emb, 4)
    assert seg.shape == (3, 8)  # 4 + 4 + 2 (half a segment is kept)
    np.testing.assert_allclose(np.linalg.norm(seg, axis=1), 1.0, rtol=1e-5)


def test_threshold_lies_between_genuine_and_impostor(registry) -> None:  # type: ignore[no-untyped-def]
    cal = registry.calibration
    assert cal.method in ("far", "eer")
    assert cal.n_genuine > 0 and cal.n_impostor > 0
    by = registry.by_speaker()
    own = float(np.mean(by["alice"] @ by["alice"].mean(axis=0)))
    other = float(np.mean(by["alice"] @ (by["bob"].mean(axis=0))))
    assert other < cal.threshold < own


def test_one_speaker_falls_back_to_the_default(rng: np.random.Generator) -> None:
    cal = calibrate(
        {"solo": cluster(rng, rng.normal(size=8), 12, 0.1)},
        config=CalibrationConfig(default_threshold=0.42),
    )
    assert (cal.method, cal.threshold, cal.eer) == ("default", 0.42, None)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"open_set_threshold": 0.84}, 0.84),
        ({}, DEFAULT_CALIBRATION.default_threshold),
        ({"open_set_threshold": True}, DEFAULT_CALIBRATION.default_threshold),
        ({"open_set_threshold": "0.8"}, DEFAULT_CALIBRATION.default_threshold),
        ({"open_set_threshold": 1.5}, DEFAULT_CALIBRATION.default_threshold),
        ({"open_set_threshold": float("nan")}, DEFAULT_CALIBRATION.default_threshold),
    ],
)
def test_a_models_own_threshold_is_its_one_speaker_default(
    metrics: dict[str, object], expected: float
) -> None:
    assert config_for_model(metrics).default_threshold == expected


def test_a_one_speaker_registry_keeps_its_models_threshold(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    """The model's calibration follows the registry through enroll, remove, save and
    load: a one-speaker registry never falls back to 0.5 for a model that says more."""
    config = config_for_model({"open_set_threshold": 0.84})
    a, b = (rng.normal(size=DIM) / np.sqrt(DIM) for _ in range(2))
    reg = SpeakerRegistry.empty(MODEL, config=config)
    assert reg.threshold == 0.84
    one = reg.with_speaker("alice", cluster(rng, a, 12, 0.04), model=MODEL)
    assert (one.calibration.method, one.threshold) == ("default", 0.84)
    two = one.with_speaker("bob", cluster(rng, b, 12, 0.04), model=MODEL)
    assert two.calibration.method != "default"
    assert two.without("bob").threshold == 0.84
    save_registry(one, tmp_path / "reg")
    assert load_registry(tmp_path / "reg", model=MODEL, config=config).threshold == 0.84
    assert load_registry(tmp_path / "reg", model=MODEL).threshold == 0.5


def test_shipped_models_bring_their_one_speaker_threshold() -> None:
    """speaker-embed/2's different-speaker cosines run 0.6-0.9: its one-speaker default
    is the threshold measured on real voices (models/speaker_calibration.py), not 0.5;
    speaker-embed/1 has none and keeps 0.5."""
    from stream.inference.repository import default_repo
    from stream.speakers.embedder import SpeakerEmbedder

    v2 = SpeakerEmbedder(default_repo() / "speaker-embed" / "2")
    assert 0.8 < v2.calibration.default_threshold == v2.manifest.metrics["open_set_threshold"]
    v1 = SpeakerEmbedder(default_repo() / "speaker-embed" / "1")
    assert v1.calibration == DEFAULT_CALIBRATION
