"""``tympan tail``'s table rows show a multi-label stream's tags."""

from __future__ import annotations

import dataclasses

from stream.cli.tail import ROWS
from stream.events import (
    LabelEvent,
    ModelRef,
    Segment,
    SummaryEvent,
    TrackTag,
    WindowSpan,
    thresholded,
    top_k,
)

MODEL = ModelRef("instruments", "1")


def _label(tags: tuple[tuple[str, float], ...] | None) -> LabelEvent:
    best = top_k(["bass", "drums", "organ"], [0.35, 0.2, 0.9], 2)
    span = WindowSpan(3, 24000, 40000, 16000)
    return LabelEvent("0" * 32, "up-1", span, "organ", 0.9, best, MODEL, tags=tags)


def test_label_rows_show_the_tags_of_a_multi_label_window() -> None:
    tags = thresholded(["bass", "drums", "organ"], [0.35, 0.2, 0.9], [0.3, 0.4, 0.2])
    assert " organ,bass " in ROWS["labels"](_label(tags).to_dict())
    assert " - " in ROWS["labels"](_label(()).to_dict())  # no tag over its threshold
    assert " organ " in ROWS["labels"](_label(None).to_dict())  # single-label: the label


def test_summary_rows_show_the_tracks_tags() -> None:
    event = SummaryEvent(
        "0" * 32, "up-1", MODEL, "eos", 8.0, 15, (Segment("organ", 0.0, 8.0, 15, 0.9),),
        "organ", task="multi", tags=(TrackTag("organ", 0.93, 1.0), TrackTag("bass", 0.41, 0.6)),
    )  # fmt: skip
    row = ROWS["summaries"](event.to_dict())
    assert "tags: organ(0.93,100%) bass(0.41,60%)" in row


def test_rows_name_the_instance_of_a_reused_stream_id() -> None:
    long_id = "an-upload-with-a-long-name.wav"
    event = dataclasses.replace(_label(None), stream_id=long_id, instance="0123456789abcdef")
    row = ROWS["labels"](event.to_dict())
    assert row.startswith(long_id[:15] + "#01234567 ")
    assert ROWS["labels"](_label(None).to_dict()).startswith("up-1 ")  # no instance: the id
