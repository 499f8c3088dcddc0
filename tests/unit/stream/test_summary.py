"""Summary building: merged segments, dominant label, speaker verdict."""

from __future__ import annotations

from stream.events import ModelRef
from stream.summary import SpeakerVerdict, SummaryBuilder, WindowVerdict, dominant, merge_segments


def _v(index: int, label: str, score: float = 0.9) -> WindowVerdict:
    return WindowVerdict(index, index * 0.5, index * 0.5 + 1.0, label, score)


def test_consecutive_windows_with_one_label_merge_in_window_order() -> None:
    verdicts = [_v(2, "music"), _v(0, "speech", 0.8), _v(1, "speech", 0.6), _v(3, "music")]
    segments = merge_segments(verdicts)
    assert [(s.label, s.start_s, s.end_s, s.windows) for s in segments] == [
        ("speech", 0.0, 1.5, 2),
        ("music", 1.0, 2.5, 2),
    ]
    assert segments[0].mean_score == 0.7


def test_dominant_is_the_most_windows_and_ties_go_to_the_first_seen() -> None:
    assert dominant([_v(0, "a"), _v(1, "b"), _v(2, "b")]) == "b"
    assert dominant([_v(1, "b"), _v(0, "a")]) == "a"
    assert dominant([]) is None


def test_the_speaker_verdict_set_at_close_is_the_summarys() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"))
    builder.set_speaker(SpeakerVerdict("alice", 0.8, 0.3, "bob", 12))
    event = builder.build(closed_by="eos", duration_s=1.0, counts={})
    assert (event.speaker, event.speaker_score, event.speaker_margin) == ("alice", 0.8, 0.3)
    assert (event.speaker_runner_up, event.speaker_windows) == ("bob", 12)


def test_summary_event_counts_windows_once_per_index() -> None:
    builder = SummaryBuilder("s", ModelRef("m", "1"))
    builder.add_label(_v(0, "a"))
    builder.add_label(_v(0, "a"))
    event = builder.build(closed_by="eos", duration_s=1.0, counts={"frames": 50})
    assert event.windows == 1 and event.counts == {"frames": 50, "windows": 1}
    assert event.speaker is None
