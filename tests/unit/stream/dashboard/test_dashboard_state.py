"""DashboardState: what the page shows, folded from events, within fixed memory."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.dashboard.state import (
    DashboardLimits,
    DashboardState,
    RateMeter,
    decode,
    percentiles,
)
from stream.errors import ConfigError
from stream.events import LabelEvent, ModelRef, RejectedRecord, SpeakerEvent, WindowSpan

MODEL = ModelRef("scene", "3")
T0 = 1_700_000_000.0


def label(stream_id: str, index: int, name: str, *, latency_ms: float = 5.0) -> dict[str, Any]:
    """A label event exactly as the worker writes it (hop 0.5 s, window 1 s)."""
    span = WindowSpan(index, index * 8000, index * 8000 + 16000, 16000)
    event = LabelEvent(
        f"id-{stream_id}-{index}",
        stream_id,
        span,
        name,
        0.9,
        ((name, 0.9),),
        MODEL,
        latency_ms=latency_ms,
    )
    return event.to_dict()


def summary(stream_id: str, closed_by: str = "eos") -> dict[str, Any]:
    return {
        "schema": "tympan.summary.v1",
        "stream_id": stream_id,
        "model": MODEL.to_dict(),
        "closed_by": closed_by,
        "duration_s": 4.0,
        "windows": 7,
        "timeline": [{"label": "speech", "start_s": 0, "end_s": 4, "windows": 7}],
        "dominant_label": "speech",
        "speaker": None,
        "counts": {"gaps": 1, "rejected": 0},
    }


def feed(state: DashboardState, stream_id: str, labels: list[str], t: float = T0) -> None:
    for i, name in enumerate(labels):
        state.apply("labels", label(stream_id, i, name), t)


def test_label_events_make_a_merged_timeline_and_current_label() -> None:
    state = DashboardState()
    feed(state, "call-1", ["speech"] * 4 + ["music"] * 3 + ["speech"])
    (stream,) = state.snapshot(T0)["streams"]
    assert stream["label"] == "speech"
    assert stream["model"] == "scene@3"
    assert stream["windows"] == 8
    assert [(s["label"], s["windows"]) for s in stream["segments"]] == [
        ("speech", 4),
        ("music", 3),
        ("speech", 1),
    ]


def test_timeline_segments_tile_the_stream_without_overlap() -> None:
    state = DashboardState()
    feed(state, "s", ["a", "a", "b", "a", "b", "b", "c"])
    segments = state.snapshot(T0)["streams"][0]["segments"]
    assert segments[0]["start_s"] == 0.0
    for before, after in itertools.pairwise(segments):
        assert before["end_s"] == after["start_s"]
        assert before["start_s"] <= before["end_s"]
    assert segments[-1]["end_s"] == pytest.approx(6 * 0.5 + 1.0)


def test_redelivered_windows_do_not_redraw_the_timeline() -> None:
    state = DashboardState()
    feed(state, "s", ["a", "a", "b"])
    state.apply("labels", label("s", 1, "a"), T0)  # at-least-once replay of window 1
    stream = state.snapshot(T0)["streams"][0]
    assert stream["label"] == "b"
    assert stream["windows"] == 3
    assert state.totals["labels"] == 4


def test_speaker_and_summary_update_the_stream() -> None:
    state = DashboardState()
    feed(state, "call-2", ["speech"])
    span = WindowSpan(0, 0, 16000, 16000)
    state.apply("speakers", SpeakerEvent("x", "call-2", span, "alice", 0.8, MODEL).to_dict(), T0)
    state.apply("summaries", summary("call-2"), T0 + 1)
    snap = state.snapshot(T0 + 1)
    (stream,) = snap["streams"]
    assert (stream["speaker"], stream["status"], stream["closed_by"]) == ("alice", "ended", "eos")
    assert snap["live_streams"] == 0
    assert snap["summaries"][0]["stream_id"] == "call-2"
    assert snap["summaries"][0]["dominant_label"] == "speech"
    assert snap["summaries"][0]["gaps"] == 1


def test_dead_letters_are_counted_by_reason() -> None:
    state = DashboardState()
    for reason in ["bad_payload_length", "late_frame", "bad_payload_length"]:
        record = RejectedRecord("call-9", reason, "why", "tympan.audio.v1", 0, 7)
        state.apply("rejected", record.to_dict(), T0)
    state.apply("rejected", {"stream_id": None, "reason": "missing_key", "message": "m"}, T0)
    snap = state.snapshot(T0)
    assert snap["rejected"] == {"bad_payload_length": 2, "late_frame": 1, "missing_key": 1}
    assert next(iter(snap["rejected"])) == "bad_payload_length"  # most common first
    assert snap["recent_rejected"][0]["reason"] == "missing_key"
    assert snap["streams"] == []  # a dead letter is not a stream


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("labels", b"not json"),
        ("labels", b"[1, 2]"),
        ("labels", json.dumps({"label": "x"}).encode()),
        ("speakers", json.dumps({"stream_id": 7}).encode()),
        ("rejected", json.dumps({"stream_id": "a"}).encode()),
        ("summaries", None),
    ],
)
def test_unusable_records_are_counted_not_raised(kind: Any, value: bytes | None) -> None:
    state = DashboardState()
    assert state.apply_record(kind, value, T0) is False
    snap = state.snapshot(T0)
    assert snap["unparsable"] == {kind: 1}
    assert snap["version"] == 0


def test_fields_of_the_wrong_type_read_as_missing() -> None:
    state = DashboardState()
    event = {
        "stream_id": "s",
        "label": "a",
        "score": "high",
        "latency_ms": float("nan"),
        "window_index": True,
        "start_s": None,
        "model": 3,
    }
    assert state.apply("labels", event, T0)
    (stream,) = state.snapshot(T0)["streams"]
    assert (stream["label"], stream["score"], stream["model"]) == ("a", None, None)
    assert state.snapshot(T0)["latency_ms"]["samples"] == 0


def test_stream_count_is_capped_and_ended_streams_go_first() -> None:
    state = DashboardState(DashboardLimits(max_streams=3, idle_after_s=30))
    feed(state, "ended-early", ["a"], T0)
    state.apply("summaries", summary("ended-early"), T0 + 1)
    feed(state, "live-1", ["a"], T0 + 2)
    feed(state, "live-2", ["a"], T0 + 3)
    feed(state, "live-3", ["a"], T0 + 4)  # over the cap: the ended stream makes room
    assert set(state.streams) == {"live-1", "live-2", "live-3"}
    feed(state, "live-1", ["a", "b"], T0 + 40)
    feed(state, "live-4", ["a"], T0 + 40)  # live-2 has been idle for 37 s: it goes
    assert set(state.streams) == {"live-1", "live-3", "live-4"}
    assert state.snapshot(T0 + 40)["evicted_streams"] == 2


def test_when_every_held_stream_is_live_new_streams_are_counted_not_drawn() -> None:
    state = DashboardState(DashboardLimits(max_streams=2, idle_after_s=30))
    for t in range(5):  # round robin over more live streams than the cap: no churn
        for sid in ("a", "b", "c"):
            state.apply("labels", label(sid, t, "x"), T0 + t)
    snap = state.snapshot(T0 + 5)
    assert {s["stream_id"] for s in snap["streams"]} == {"a", "b"}
    assert [s["windows"] for s in snap["streams"]] == [5, 5]
    assert snap["untracked_events"] == 5
    assert snap["totals"]["labels"] == 15
    assert snap["latency_ms"]["samples"] == 15
    state.apply("summaries", summary("c"), T0 + 6)  # its summary is still listed
    assert state.snapshot(T0 + 6)["summaries"][0]["stream_id"] == "c"


def test_timelines_and_rings_are_bounded() -> None:
    limits = DashboardLimits(segments=5, summaries=2, recent_rejected=2, latency_samples=10)
    state = DashboardState(limits)
    feed(state, "flappy", ["a", "b"] * 50)
    for i in range(5):
        state.apply("summaries", summary(f"s{i}"), T0)
        state.apply("rejected", {"stream_id": "x", "reason": f"r{i}", "message": ""}, T0)
    snap = state.snapshot(T0)
    flappy = next(s for s in snap["streams"] if s["stream_id"] == "flappy")
    assert len(flappy["segments"]) == 5
    assert flappy["segments"][-1]["end_s"] == pytest.approx(99 * 0.5 + 1.0)
    assert [s["stream_id"] for s in snap["summaries"]] == ["s4", "s3"]
    assert len(snap["recent_rejected"]) == 2
    assert snap["latency_ms"]["samples"] == 10


def test_snapshot_shows_the_newest_streams_only_but_counts_all() -> None:
    state = DashboardState(DashboardLimits(shown_streams=2))
    for i in range(4):
        feed(state, f"s{i}", ["a"], T0 + i)
    snap = state.snapshot(T0 + 4)
    assert [s["stream_id"] for s in snap["streams"]] == ["s3", "s2"]
    assert snap["stream_count"] == 4


def test_a_quiet_stream_becomes_idle() -> None:
    state = DashboardState(DashboardLimits(idle_after_s=30))
    feed(state, "s", ["a"], T0)
    assert state.snapshot(T0 + 29)["streams"][0]["status"] == "live"
    assert state.snapshot(T0 + 31)["streams"][0]["status"] == "idle"


def test_latency_percentiles_come_from_label_and_speaker_events() -> None:
    state = DashboardState()
    for i in range(100):
        state.apply("labels", label("s", i, "a", latency_ms=float(i + 1)), T0)
    latency = state.snapshot(T0)["latency_ms"]
    assert (latency["p50"], latency["p95"], latency["p99"]) == (50.0, 95.0, 99.0)


def test_rates_average_over_the_window_and_decay() -> None:
    state = DashboardState(DashboardLimits(rate_window_s=10))
    for second in range(10):
        for _ in range(3):
            state.apply("labels", label("s", 0, "a"), T0 + second)
    state.apply("rejected", {"reason": "late_frame"}, T0 + 9)
    rates = state.snapshot(T0 + 9.5)["rates"]
    assert rates["labels"] == pytest.approx(3.0)
    assert rates["total"] == pytest.approx(3.1)
    assert state.snapshot(T0 + 100)["rates"]["total"] == 0.0


def test_snapshot_is_json() -> None:
    state = DashboardState()
    feed(state, "s", ["a", "b"])
    state.apply("summaries", summary("s"), T0)
    assert json.loads(json.dumps(state.snapshot(T0), allow_nan=False))["version"] == 3


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1))
def test_percentiles_are_observed_values_in_order(values: list[float]) -> None:
    p = percentiles(values)
    assert p["p50"] is not None and p["p95"] is not None and p["p99"] is not None
    assert p["p50"] <= p["p95"] <= p["p99"] <= round(max(values), 3)
    assert all(any(abs(v - q) <= 5e-4 for v in values) for q in p.values() if q is not None)


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(1, 5)), max_size=50))
def test_rate_meter_never_counts_more_than_it_was_given(adds: list[tuple[float, int]]) -> None:
    meter = RateMeter(window_s=10)
    for t, n in sorted(adds):
        meter.add(T0 + t, n)
    assert 0 <= meter.rate(T0 + 100) * 10 <= sum(n for _, n in adds)


def test_decode() -> None:
    assert decode(b'{"a": 1}') == {"a": 1}
    assert decode(b"\xff\xfe") is None
    assert decode(b"1") is None


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_streams=0"):
        DashboardLimits(max_streams=0)


def test_a_multi_label_stream_shows_its_current_tags_and_its_tracks_tags() -> None:
    from stream.events import SummaryEvent, TrackTag, thresholded

    state = DashboardState()
    tagger = ModelRef("instruments", "1")
    labels, thresholds = ["bass", "drums", "organ"], [0.3, 0.4, 0.2]
    for index, scores in enumerate([[0.9, 0.1, 0.1], [0.35, 0.2, 0.9]]):
        span = WindowSpan(index, index * 8000, index * 8000 + 16000, 16000)
        best = max(zip(scores, labels, strict=True))
        event = LabelEvent(
            f"id-{index}", "track", span, best[1], best[0], ((best[1], best[0]),), tagger,
            tags=thresholded(labels, scores, thresholds),
        )  # fmt: skip
        state.apply("labels", event.to_dict(), T0 + index)
    done = SummaryEvent(
        "id-s", "track", tagger, "eos", 1.5, 2, (), "organ",
        task="multi", tags=(TrackTag("organ", 0.5, 0.5), TrackTag("bass", 0.625, 1.0)),
    )  # fmt: skip
    state.apply("summaries", done.to_dict(), T0 + 2)
    feed(state, "call", ["speech"])
    snap = json.loads(json.dumps(state.snapshot(T0 + 3)))
    views = {s["stream_id"]: s for s in snap["streams"]}
    assert views["track"]["tags"] == [
        {"tag": "organ", "score": 0.9},
        {"tag": "bass", "score": 0.35},
    ]
    assert views["call"]["tags"] is None  # single-label: no tags field at all
    row = snap["summaries"][0]
    assert row["task"] == "multi" and row["dominant_label"] == "organ"
    assert [(t["tag"], t["active_share"]) for t in row["tags"]] == [("organ", 0.5), ("bass", 1.0)]


def test_tags_from_the_wire_are_bounded_and_checked() -> None:
    state = DashboardState(DashboardLimits(tags=2))
    event = label("track", 0, "a")
    event["tags"] = [{"tag": "a", "score": 0.9}, "junk", {"tag": 3}, {"tag": "b"}, {"tag": "c"}]
    state.apply("labels", event, T0)
    (view,) = state.snapshot(T0)["streams"]
    assert view["tags"] == [{"tag": "a", "score": 0.9}, {"tag": "b", "score": None}]


def test_two_runs_of_one_stream_id_are_two_streams() -> None:
    state = DashboardState()
    for instance in ("run-one", "run-two"):
        state.apply("labels", {**label("up.wav", 0, "speech"), "instance": instance}, T0)
    state.apply("labels", label("up.wav", 0, "speech"), T0)  # a header-less stream
    names = sorted(s["stream_id"] for s in state.snapshot(T0)["streams"])
    assert names == ["up.wav", "up.wav#run-one", "up.wav#run-two"]
