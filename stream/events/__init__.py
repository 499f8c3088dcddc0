"""What the worker writes: the event records, the topics' kinds, and the track verdict.

* :mod:`~stream.events.records`: label, speaker and summary events, frozen dataclasses
  rendered to compact JSON, with deterministic event ids;
* :mod:`~stream.events.rejected`: the dead letter of a record the worker could not use;
* :mod:`~stream.events.kinds`: one :class:`EventKind` per result topic (record class,
  schema, reader), the registry that topics, ``tympan tail``, the dashboard and the
  runtime read;
* :mod:`~stream.events.verdict`: a track's verdict from its window probabilities, the
  one aggregation behind ``tympan classify``, ``tympan evaluate`` and summary events.
"""

from __future__ import annotations

from stream.events.kinds import EVENT_KINDS, EventKind, kind_named
from stream.events.records import (
    LABEL_SCHEMA,
    SCHEMA_VERSION,
    SPEAKER_SCHEMA,
    SUMMARY_SCHEMA,
    LabelEvent,
    ModelRef,
    Segment,
    SpeakerEvent,
    SummaryEvent,
    TagSegment,
    TrackTag,
    WindowSpan,
    event_id,
    stream_name,
    thresholded,
    top_k,
)
from stream.events.rejected import (
    DEAD_LETTER_HEADER_BYTES,
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_PAYLOAD_BYTES,
    DEAD_LETTER_TEXT_CHARS,
    REJECTED_SCHEMA,
    RejectedRecord,
)
from stream.events.verdict import TrackVerdict, VerdictAccumulator, track_verdict

__all__ = [
    "DEAD_LETTER_HEADERS",
    "DEAD_LETTER_HEADER_BYTES",
    "DEAD_LETTER_PAYLOAD_BYTES",
    "DEAD_LETTER_TEXT_CHARS",
    "EVENT_KINDS",
    "LABEL_SCHEMA",
    "REJECTED_SCHEMA",
    "SCHEMA_VERSION",
    "SPEAKER_SCHEMA",
    "SUMMARY_SCHEMA",
    "EventKind",
    "LabelEvent",
    "ModelRef",
    "RejectedRecord",
    "Segment",
    "SpeakerEvent",
    "SummaryEvent",
    "TagSegment",
    "TrackTag",
    "TrackVerdict",
    "VerdictAccumulator",
    "WindowSpan",
    "event_id",
    "kind_named",
    "stream_name",
    "thresholded",
    "top_k",
    "track_verdict",
]
