"""Summary building: merged segments, dominant label, track tags, speaker verdict."""

from __future__ import annotations

import numpy as np

from stream.events import ModelRef
from stream.events.verdict import track_verdict
from stream.pipeline.summary import SpeakerVerdict, SummaryBuilder

LABELS = ("speech", "music")


def _row(label: str, score: float = 0.9) -> tuple[float, ...]:
    return (score, 1 - score) if label == "speech" else (1 - score, score)


def _add(builder: SummaryBuilder, index: int, label: str, score: float = 0.9) -> None:
    builder.add_window(index, index * 0.5, index * 0.5 + 1.0, _row(label, score))


def _build(builder: SummaryBuilder) -> object:
    return builder.build(closed_by="eos", duration_s=1.0, counts={})


def test_consecutive_windows_with_one_label_merge_in_window_order() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    for index, label, score in [(2, "music", 0.9), (0, "speech", 0.8), (1, "speech", 0.6)]:
        _add(builder, index, label, score)
    _add(builder, 3, "music")
    event = builder.build(closed_by="eos", duration_s=2.5, counts={})
    assert [(s.label, s.start_s, s.end_s, s.windows) for s in event.timeline] == [
        ("speech", 0.0, 1.5, 2),
        ("music", 1.0, 2.5, 2),
    ]
    assert event.timeline[0].mean_score == 0.7
    assert event.task == "single" and event.tags == ()


def test_dominant_is_the_most_windows_and_ties_go_to_the_first_seen() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    for index, label in enumerate(["speech", "music", "music"]):
        _add(builder, index, label)
    assert builder.build(closed_by="eos", duration_s=1.0, counts={}).dominant_label == "music"
    tied = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    _add(tied, 1, "music")
    _add(tied, 0, "speech")
    assert tied.build(closed_by="eos", duration_s=1.0, counts={}).dominant_label == "speech"
    empty = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    assert empty.build(closed_by="eos", duration_s=0.0, counts={}).dominant_label is None


def test_the_speaker_verdict_set_at_close_is_the_summarys() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    builder.set_speaker(SpeakerVerdict("alice", 0.8, 0.3, "bob", 12))
    event = builder.build(closed_by="eos", duration_s=1.0, counts={})
    assert (event.speaker, event.speaker_score, event.speaker_margin) == ("alice", 0.8, 0.3)
    assert (event.speaker_runner_up, event.speaker_windows) == ("bob", 12)


def test_summary_event_counts_windows_once_per_index() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    _add(builder, 0, "speech")
    _add(builder, 0, "speech")
    builder.settle()
    _add(builder, 0, "music")  # after settling: a window already folded in
    event = builder.build(closed_by="eos", duration_s=1.0, counts={"frames": 50})
    assert event.windows == 1 and event.counts == {"frames": 50, "windows": 1}
    assert event.dominant_label == "speech"
    assert event.speaker is None


def test_multi_label_summary_is_the_offline_verdict_whatever_the_completion_order() -> None:
    rng = np.random.default_rng(3)
    labels, thresholds = ("a", "b", "c"), (0.5, 0.3, 0.7)
    probs = rng.random((40, 3)).astype(np.float32)
    spans = np.array([(i * 0.5, i * 0.5 + 1.0) for i in range(40)])
    builder = SummaryBuilder("s", ModelRef("m", "1"), labels, thresholds)
    for batch in np.array_split(np.arange(40), 7):  # each batch completes in reverse
        for i in batch[::-1]:
            builder.add_window(int(i), float(spans[i, 0]), float(spans[i, 1]), probs[i].tolist())
        builder.settle()
    event = builder.build(closed_by="eos", duration_s=20.5, counts={})
    offline = track_verdict(probs, spans, labels, thresholds)
    assert event.task == "multi" and event.tags == offline.tags and event.tags
    assert event.to_dict()["tags"] == offline.to_dict()["tags"]
    assert event.dominant_label == offline.tags[0].tag


def test_windows_completing_in_order_are_folded_at_once_and_others_wait() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"), LABELS)
    for index in range(100):
        _add(builder, index, "speech")
    assert not builder.pending and builder.accumulator.windows == 100  # nothing kept
    _add(builder, 101, "music")  # 100 still in flight
    assert list(builder.pending) == [101]
    _add(builder, 100, "music")
    assert not builder.pending and builder.accumulator.windows == 102
