"""Events: deterministic ids, JSON that matches docs/schemas, compact rendering."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.events import (
    LabelEvent,
    ModelRef,
    RejectedRecord,
    Segment,
    SpeakerEvent,
    SummaryEvent,
    TagSegment,
    TrackTag,
    WindowSpan,
    event_id,
    thresholded,
    top_k,
)
from tests.schema_check import check, schema

MODEL = ModelRef("scene", "3")
SPAN = WindowSpan(4, 32000, 47872, 16000, 1_700_000_002.992)


def _label() -> LabelEvent:
    best = top_k(["quiet", "speech", "music"], [0.1, 0.7, 0.2], 2)
    return LabelEvent(
        event_id=event_id("call-1", 4, "label", MODEL.tag),
        stream_id="call-1",
        span=SPAN,
        label=best[0][0],
        score=best[0][1],
        top_k=best,
        model=MODEL,
        gap=True,
        latency_ms=12.5,
    )


def test_event_ids_are_deterministic_and_distinct() -> None:
    a = event_id("call-1", 4, "label", "scene@3")
    assert a == event_id("call-1", 4, "label", "scene@3")
    others = {
        event_id("call-2", 4, "label", "scene@3"),
        event_id("call-1", 5, "label", "scene@3"),
        event_id("call-1", 4, "speaker", "scene@3"),
        event_id("call-1", 4, "label", "scene@4"),
        event_id("call-14", 4, "label", "scene@3"),
    }
    assert a not in others and len(others) == 5
    assert len(a) == 32 and int(a, 16) >= 0


_scores = st.lists(
    st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 0.25, 1.0])), max_size=12
)


@given(scores=_scores, k=st.integers(1, 13), cut=st.floats(0.0, 1.0))
def test_top_k_and_tags_follow_the_score_then_label_order(
    scores: list[float], k: int, cut: float
) -> None:
    labels = [f"l{i}" for i in range(len(scores))]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # the definition
    assert top_k(labels, scores, k) == tuple((labels[i], scores[i]) for i in order[:k])
    cuts = [cut] * len(scores)
    expected = tuple((labels[i], scores[i]) for i in order if scores[i] >= cut)
    assert thresholded(labels, scores, cuts) == expected


def test_top_k_is_best_first_and_stable_on_ties() -> None:
    assert top_k(["a", "b", "c"], [0.2, 0.5, 0.2], 3) == (("b", 0.5), ("a", 0.2), ("c", 0.2))
    assert top_k(["a", "b"], [0.4, 0.6], 5) == (("b", 0.6), ("a", 0.4))


def test_label_event_matches_itsschema() -> None:
    data = json.loads(_label().to_json())
    check(data, schema("label"))
    assert data["label"] == "speech" and data["gap"] is True
    assert data["start_s"] == 2.0 and data["end_s"] == 2.992
    assert data["model"] == {"name": "scene", "version": "3"}


def test_multi_label_event_carries_its_tags_and_matches_theschema() -> None:
    labels, scores = ["bass", "drums", "organ"], [0.35, 0.2, 0.9]
    tags = thresholded(labels, scores, [0.3, 0.4, 0.2])
    assert tags == (("organ", 0.9), ("bass", 0.35))  # best first, drums under its threshold
    best = top_k(labels, scores, 2)
    event = LabelEvent(
        event_id=event_id("track-1", 4, "label", "instruments@1"),
        stream_id="track-1",
        span=SPAN,
        label=best[0][0],
        score=best[0][1],
        top_k=best,
        model=ModelRef("instruments", "1"),
        tags=tags,
    )
    data = json.loads(event.to_json())
    check(data, schema("label"))
    assert data["tags"] == [{"tag": "organ", "score": 0.9}, {"tag": "bass", "score": 0.35}]
    assert data["schema"] == "tympan.label.v1"  # an optional field: the same version
    assert "tags" not in json.loads(_label().to_json())  # single-label events unchanged


def test_speaker_event_matches_itsschema() -> None:
    event = SpeakerEvent(
        event_id=event_id("call-1", 4, "speaker", "spk@1"),
        stream_id="call-1",
        span=SPAN,
        speaker="unknown",
        score=0.31,
        model=ModelRef("spk", "1"),
    )
    check(json.loads(event.to_json()), schema("speaker"))


def test_summary_event_matches_itsschema() -> None:
    event = SummaryEvent(
        event_id=event_id("call-1", -1, "summary", MODEL.tag),
        stream_id="call-1",
        model=MODEL,
        closed_by="idle",
        duration_s=12.0,
        windows=23,
        timeline=(Segment("speech", 0.0, 6.0, 11, 0.8), Segment("music", 5.5, 12.0, 12, 0.9)),
        dominant_label="music",
        counts={
            "frames": 600,
            "duplicates": 2,
            "late": 0,
            "gaps": 1,
            "gap_frames": 3,
            "resets": 0,
            "rejected": 1,
            "windows": 23,
        },
    )
    data = json.loads(event.to_json())
    check(data, schema("summary"))
    assert list(data["counts"]) == sorted(data["counts"])
    assert (data["task"], data["tags"]) == ("single", [])


def test_multi_label_summary_matches_itsschema() -> None:
    organ = TrackTag(
        "organ", 0.71, 0.9, (TagSegment(0.0, 4.0, 7, 0.8), TagSegment(5.0, 9.0, 2, 0.5))
    )
    event = SummaryEvent(
        event_id=event_id("track-1", -1, "summary", "instruments@1"),
        stream_id="track-1",
        model=ModelRef("instruments", "1"),
        closed_by="eos",
        duration_s=9.0,
        windows=17,
        timeline=(Segment("organ", 0.0, 9.0, 17, 0.7),),
        dominant_label="organ",
        counts=dict.fromkeys(("duplicates", "late", "gaps", "gap_frames", "resets"), 0)
        | {"frames": 90, "rejected": 0, "windows": 17},
        task="multi",
        tags=(organ, TrackTag("bass", 0.4, 0.5)),
    )
    data = json.loads(event.to_json())
    check(data, schema("summary"))
    assert [t["tag"] for t in data["tags"]] == ["organ", "bass"]
    assert data["tags"][0]["segments"][1] == {
        "start_s": 5.0,
        "end_s": 9.0,
        "windows": 2,
        "mean_score": 0.5,
    }


def test_rejected_record_keeps_headers_and_payload() -> None:
    record = RejectedRecord(
        stream_id=None,
        reason="missing_key",
        message="record has no key",
        topic="tympan.audio.v1",
        partition=3,
        offset=17,
        headers=(("seq", b"4"), ("rate", b"8000")),
        payload=b"\x00\xff",
    )
    data = json.loads(record.to_json())
    check(data, schema("rejected"))
    assert data["headers"][0] == {"key": "seq", "value_b64": "NA=="}
    assert data["payload_b64"] == "AP8=" and data["payload_bytes"] == 2


def test_non_finite_scores_are_refused() -> None:
    bad = LabelEvent(
        event_id="0" * 32,
        stream_id="s",
        span=SPAN,
        label="x",
        score=float("nan"),
        top_k=(),
        model=MODEL,
    )
    with pytest.raises(ValueError):
        bad.to_json()
