"""The registry of event kinds covers every event topic and every event class, and is
what topics, ``tympan tail``, the dashboard and the runtime read."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import stream.events.records
import stream.events.rejected
from stream.cli.tail import HEADERS, ROWS
from stream.control.json_records import JsonRecordError
from stream.dashboard.server import DashboardConfig
from stream.dashboard.state import KINDS, DashboardState
from stream.errors import ConfigError
from stream.events import (
    LabelEvent,
    ModelRef,
    RejectedRecord,
    Segment,
    SpeakerEvent,
    SummaryEvent,
    WindowSpan,
    top_k,
)
from stream.events.kinds import (
    BY_NAME,
    EVENT_KINDS,
    LABELS,
    REJECTED,
    SPEAKERS,
    SUMMARIES,
    Event,
    EventKind,
    kind_named,
)
from stream.kafka.topics import Topics
from tests.schema_check import check

SCHEMAS = Path(__file__).resolve().parents[4] / "docs" / "schemas"
TOPICS = Topics().with_prefix("unit-kinds")
NOT_EVENTS = {"audio", "control", "control_status", "speaker_registry", "progress"}  # other records
MODEL = ModelRef("scene", "1")
SPAN = WindowSpan(2, 16000, 31872, 16000)
SAMPLES: dict[str, Event] = {
    "labels": LabelEvent(
        "0" * 32, "call-1", SPAN, "speech", 0.9, top_k(["speech", "music"], [0.9, 0.1], 2), MODEL
    ),
    "speakers": SpeakerEvent("1" * 32, "call-1", SPAN, "anna", 0.8, ModelRef("speaker-embed", "1")),
    "summaries": SummaryEvent(
        "2" * 32,
        "call-1",
        MODEL,
        "eos",
        2.0,
        3,
        (Segment("speech", 0, 2, 3, 0.9),),
        "speech",
        counts=dict.fromkeys(
            ("frames", "duplicates", "late", "gaps", "gap_frames", "resets", "rejected", "windows"),
            0,
        ),
    ),
    "rejected": RejectedRecord(None, "bad_payload_length", "odd", "t", 0, 7, payload=b"\x01"),
}


def _topic_attributes() -> dict[str, str]:
    """Every ``Topics`` property that names a topic, with the name it gives."""
    return {
        name: getattr(TOPICS, name)
        for name, member in inspect.getmembers(Topics)
        if isinstance(member, property) and getattr(TOPICS, name) in TOPICS.names()
    }


def test_every_topic_is_an_event_kinds_or_one_of_the_other_records() -> None:
    attributes = _topic_attributes()
    assert set(attributes.values()) == set(TOPICS.names())
    kinds = {name for name, topic in attributes.items() if name not in NOT_EVENTS}
    assert kinds == set(BY_NAME)
    for kind in EVENT_KINDS:
        assert TOPICS.of(kind) == attributes[kind.name] == f"unit-kinds.{kind.name}.v1"


def test_every_event_class_has_one_kind() -> None:
    classes = {
        cls
        for module in (stream.events.records, stream.events.rejected)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and hasattr(cls, "SCHEMA")
    }
    assert classes == {kind.event for kind in EVENT_KINDS}
    assert len(EVENT_KINDS) == len(BY_NAME) == len({kind.schema for kind in EVENT_KINDS})


def test_topic_specs_follow_the_kinds_partitions() -> None:
    topics = Topics(result_partitions=5)
    specs = {spec.name: spec for spec in topics.specs()}
    assert [specs[topics.of(kind)].partitions for kind in EVENT_KINDS] == [5, 5, 5, 1]
    assert REJECTED.partitions == "one"


@pytest.mark.parametrize("kind", EVENT_KINDS, ids=lambda k: k.name)
def test_a_kind_writes_and_reads_its_records(kind: EventKind) -> None:
    event = SAMPLES[kind.name]
    key, value = kind.serialize(event)
    assert key == (getattr(event, kind.key) or "").encode()
    data = kind.deserialize(value)
    assert data == event.to_dict() and data["schema"] == kind.schema
    check(data, json.loads((SCHEMAS / kind.schema_file).read_text()))


@pytest.mark.parametrize("value", [None, b"[]", b"{", b"[" * 10_000, b"x" * (5 << 20)])
def test_a_kind_refuses_what_is_not_a_bounded_json_object(value: bytes | None) -> None:
    with pytest.raises(JsonRecordError):
        LABELS.deserialize(value)


def test_kinds_are_found_by_name() -> None:
    assert [kind_named(name) for name in ("labels", "speakers", "summaries", "rejected")] == [
        LABELS,
        SPEAKERS,
        SUMMARIES,
        REJECTED,
    ]
    with pytest.raises(ConfigError, match="'label' is not one of labels, speakers"):
        kind_named("label")


def test_tail_and_the_dashboard_read_every_kind() -> None:
    assert set(ROWS) == set(HEADERS) <= set(BY_NAME)
    assert tuple(BY_NAME) == KINDS
    config = DashboardConfig(topics=TOPICS)
    assert config.topic_kinds() == {TOPICS.of(kind): kind.name for kind in EVENT_KINDS}
    state = DashboardState()
    for kind in EVENT_KINDS:
        _, value = kind.serialize(SAMPLES[kind.name])
        assert state.apply_record(kind.name, value, now_s=1.0)
    assert state.snapshot(1.0)["totals"] == dict.fromkeys(BY_NAME, 1)


def test_tail_lists_every_kind_as_a_topic_choice() -> None:
    from stream.cli import build_parser

    parser = build_parser()
    for kind in EVENT_KINDS:
        assert parser.parse_args(["tail", "--topic", kind.name]).topic == kind.name
