"""The kinds of record the worker writes, each described once.

An :class:`EventKind` says everything the rest of tympan needs to know about one kind:
its name (the ``tympan tail --topic`` choice, the dashboard's key, and the topic's name
under the prefix: ``labels`` gives ``tympan.labels.v1``), the class in
:mod:`stream.events` that writes it, the ``schema`` its records carry (and
``docs/schemas/<...>.schema.json``), the field its Kafka key is, how many partitions
its topic has, and how a reader decodes a record of it. Like quix-streams' serializers,
one small object both writes (:meth:`EventKind.serialize`) and reads
(:meth:`EventKind.deserialize`) a kind.

:data:`EVENT_KINDS` is the registry that :class:`~stream.kafka.topics.Topics` (its topic specs),
``tympan tail``, the dashboard and the worker runtime read: adding a kind is one entry
here (and its event class); a reader with no special view of it shows its JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from stream.control.json_records import decode_object
from stream.errors import ConfigError
from stream.events.records import LabelEvent, SpeakerEvent, SummaryEvent
from stream.events.rejected import RejectedRecord

Event = LabelEvent | SpeakerEvent | SummaryEvent | RejectedRecord
"""Every record class of :mod:`stream.events` that the worker writes to a topic."""

RECORD_MAX_BYTES = 4 * 1024 * 1024
"""A reader's bound on one record: a dead letter carries at most ~1 MB of base64 payload."""
RECORD_MAX_DEPTH = 32
"""A reader's bound on nesting: events nest 3 deep."""


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of record the worker writes, and the topic that holds it.

    Attributes
    ----------
    name : str
        The topic's name under the prefix (``<prefix>.<name>.v1``), the attribute of
        :class:`~stream.kafka.topics.Topics` that gives it, and the name readers use.
    event : type
        The :mod:`stream.events` class whose ``to_json`` writes the records.
    key : str
        The event field that keys the record (``None`` keys as ``b""``).
    partitions : {"results", "one"}
        ``results``: ``Topics.result_partitions`` (keyed by stream, read in parallel);
        ``one``: a single partition (dead letters, read in order by people).
    """

    name: str
    event: type[Event]
    key: str = "stream_id"
    partitions: Literal["results", "one"] = "results"

    @property
    def schema(self) -> str:
        """The ``schema`` field of every record of this kind (``tympan.label.v1``)."""
        return self.event.SCHEMA

    @property
    def schema_file(self) -> str:
        """Its JSON Schema, relative to ``docs/schemas/`` (``label.schema.json``)."""
        return f"{self.schema.split('.')[1]}.schema.json"

    def serialize(self, event: Event) -> tuple[bytes, bytes]:
        """The record's ``(key, value)``."""
        key = getattr(event, self.key)
        return (key or "").encode(), event.to_json()

    def deserialize(self, value: bytes | None) -> dict[str, Any]:
        """A record's value as a JSON object, bounded (records are untrusted input).

        Raises
        ------
        JsonRecordError
            Too large, nested too deep, not JSON, or not an object.
        """
        return decode_object(
            value or b"null",
            what=f"{self.name} record",
            max_bytes=RECORD_MAX_BYTES,
            max_depth=RECORD_MAX_DEPTH,
        )


LABELS = EventKind("labels", LabelEvent)
SPEAKERS = EventKind("speakers", SpeakerEvent)
SUMMARIES = EventKind("summaries", SummaryEvent)
REJECTED = EventKind("rejected", RejectedRecord, partitions="one")

EVENT_KINDS: tuple[EventKind, ...] = (LABELS, SPEAKERS, SUMMARIES, REJECTED)
"""Every kind, in data-flow order (as their topics in :meth:`Topics.specs`)."""

BY_NAME: Mapping[str, EventKind] = MappingProxyType({kind.name: kind for kind in EVENT_KINDS})


def kind_named(name: str) -> EventKind:
    """The kind called ``name``.

    Raises
    ------
    ConfigError
        No kind has that name; the message lists them.
    """
    kind = BY_NAME.get(name)
    if kind is None:
        raise ConfigError(f"event kind {name!r} is not one of {', '.join(BY_NAME)}")
    return kind
