from __future__ import annotations

import numpy as np
import pytest
from speaker_fakes import DIM, cluster

from stream.speakers.scoring import UNKNOWN, ScoringConfig, SpeakerScorer


@pytest.mark.parametrize("method", ["centroid", "knn"])
def test_enrolled_speakers_are_found_and_strangers_are_unknown(
    registry, centres, rng, method: str
) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer(config=ScoringConfig(method))  # type: ignore[arg-type]
    for name in ["alice", "bob", "carol", "dave"]:
        verdicts = scorer.identify(cluster(rng, centres[name], 5, 0.04))
        assert [v.speaker for v in verdicts] == [name] * 5
        assert all(v.margin > 0 and v.runner_up not in (None, name) for v in verdicts)
    strangers = scorer.identify(cluster(rng, centres["erin"], 5, 0.04))
    assert [v.speaker for v in strangers] == [UNKNOWN] * 5
    assert all(v.nearest in registry for v in strangers)


def test_batch_equals_one_by_one(registry, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    batch = rng.normal(size=(7, DIM)).astype(np.float32)
    one_by_one = [scorer.identify(row[None, :])[0] for row in batch]
    for together, alone in zip(scorer.identify(batch), one_by_one, strict=True):
        assert (together.speaker, together.nearest) == (alone.speaker, alone.nearest)
        assert together.score == pytest.approx(alone.score, abs=1e-5)


def test_scores_are_scale_invariant(registry, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    x = rng.normal(size=(3, DIM)).astype(np.float32)
    np.testing.assert_allclose(scorer.speaker_scores(x), scorer.speaker_scores(5 * x), atol=1e-5)


def test_empty_registry_answers_unknown() -> None:
    scorer = SpeakerScorer({}, threshold=0.5)
    verdicts = scorer.identify(np.ones((3, DIM), dtype=np.float32))
    assert scorer.empty
    assert [(v.speaker, v.score, v.nearest) for v in verdicts] == [(UNKNOWN, 0.0, None)] * 3


def test_single_speaker_has_no_runner_up(rng, centres) -> None:  # type: ignore[no-untyped-def]
    scorer = SpeakerScorer({"alice": cluster(rng, centres["alice"], 8, 0.04)}, threshold=0.5)
    (verdict,) = scorer.identify(cluster(rng, centres["alice"], 1, 0.04))
    assert verdict.speaker == "alice"
    assert verdict.runner_up is None and verdict.margin == verdict.score
