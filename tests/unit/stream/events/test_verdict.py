"""The track verdict: per-tag aggregation, thresholds, active share and segments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stream.events.verdict import VerdictAccumulator, track_verdict

LABELS = ("bass", "drums", "organ")
THRESHOLDS = (0.5, 0.4, 0.2)


def _spans(n: int) -> np.ndarray:
    return np.array([(i * 0.5, i * 0.5 + 1.0) for i in range(n)])


def test_tags_are_thresholded_means_best_first_with_share_and_segments() -> None:
    probs = np.array(
        [
            [0.9, 0.1, 0.3],
            [0.8, 0.5, 0.1],
            [0.1, 0.6, 0.3],
            [0.7, 0.1, 0.3],
        ],
        dtype=np.float32,
    )
    verdict = track_verdict(probs, _spans(4), LABELS, THRESHOLDS)
    assert [t.tag for t in verdict.tags] == ["bass", "organ"]  # drums' mean 0.325 < 0.4
    bass, organ = verdict.tags
    assert bass.score == pytest.approx(0.625) and bass.active_share == 0.75
    assert [(s.start_s, s.end_s, s.windows) for s in bass.segments] == [
        (0.0, 1.5, 2),
        (1.5, 2.5, 1),
    ]
    assert organ.active_share == 0.75 and len(organ.segments) == 2
    assert verdict.dominant_label == "bass" and verdict.labels == ["bass", "organ"]
    assert verdict.to_dict()["tags"][0]["segments"][0] == {
        "start_s": 0.0,
        "end_s": 1.5,
        "windows": 2,
        "mean_score": pytest.approx(0.85),
    }


def test_a_track_with_no_tag_over_threshold_has_no_dominant_label() -> None:
    probs = np.full((3, 3), 0.1, dtype=np.float32)
    verdict = track_verdict(probs, _spans(3), LABELS, (0.5, 0.5, 0.5))
    assert verdict.tags == () and verdict.dominant_label is None and verdict.windows == 3


def test_single_label_verdict_has_no_tags_and_the_most_windows_label() -> None:
    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]], dtype=np.float32)
    verdict = track_verdict(probs, _spans(3), LABELS, None)
    # bass tops two windows though drums has the highest single score
    assert (verdict.task, verdict.dominant_label, verdict.tags) == ("single", "bass", ())
    assert [s.label for s in verdict.timeline] == ["drums", "bass"]


def test_windows_out_of_order_or_repeated_count_once() -> None:
    acc = VerdictAccumulator(LABELS, THRESHOLDS)
    assert acc.add(0, 0.0, 1.0, [0.9, 0.1, 0.1])
    assert not acc.add(0, 0.0, 1.0, [0.1, 0.9, 0.1])
    assert acc.windows == 1


def test_threshold_count_must_match_labels() -> None:
    with pytest.raises(ValueError, match="2 thresholds for 3 labels"):
        VerdictAccumulator(LABELS, (0.5, 0.5))


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.float32, st.tuples(st.integers(1, 30), st.just(3)), elements=st.floats(0, 1, width=32)
    ),
    st.integers(1, 8),
)
def test_streaming_in_chunks_equals_offline(probs: np.ndarray, chunk: int) -> None:
    """The law the summary relies on: the verdict is a function of the windows only."""
    spans = _spans(len(probs))
    offline = track_verdict(probs, spans, LABELS, THRESHOLDS)
    acc = VerdictAccumulator(LABELS, THRESHOLDS)
    for start in range(0, len(probs), chunk):
        for i in range(start, min(start + chunk, len(probs))):
            acc.add(i, float(spans[i, 0]), float(spans[i, 1]), probs[i].tolist())
        acc.verdict()  # asking mid-stream changes nothing
    assert acc.verdict() == offline
