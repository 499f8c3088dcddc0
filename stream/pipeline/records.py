"""What enters the pipeline and what one call gives back.

A :class:`Record` is one consumed Kafka record as the pipeline sees it; a :class:`Step`
is what a batch of them (or an idle check, or a close) produced: window jobs for
inference, dead letters, and the segments opened, whose first offsets the runtime pins
(:class:`Opened`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from stream.events import RejectedRecord

if TYPE_CHECKING:
    from stream.pipeline.jobs import WindowJob

_INSTANCE_SEP = "\x1d"  # stream id / instance, inside the pipeline's stream keys only


def stream_key(stream_id: str, instance: str | None) -> str:
    """What the pipeline keys a stream by: its id, and its ``instance`` when the frames
    carry one (``docs/wire-format.md``, "Stream instances").

    The stream id alone for header-less frames, so their state and event ids are what
    they always were; ``id`` + separator + ``instance`` otherwise, so every instance of
    a reused stream id is a stream of its own, with its own segments and event ids.
    """
    return stream_id if instance is None else f"{stream_id}{_INSTANCE_SEP}{instance}"


def wire_id(key: str, instance: str | None) -> str:
    """The stream id of a :func:`stream_key` (what events and dead letters name)."""
    return key if instance is None else key[: -len(instance) - len(_INSTANCE_SEP)]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, as the pipeline sees it.

    ``timestamp_ms``: the record's Kafka timestamp (``None`` or negative: unknown);
    idle streams are closed by it, not by the wall clock.
    """

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


class Opened(NamedTuple):
    """A segment that a record opened: pin ``offset`` of ``partition`` under ``pin``
    until the summary with ``event_id == pin`` is delivered."""

    stream_id: str
    partition: int
    offset: int
    pin: str


@dataclass(slots=True)
class Step:
    """What one record (or one idle check) produced."""

    jobs: list[WindowJob] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    opened: list[Opened] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.jobs.extend(other.jobs)
        self.rejected.extend(other.rejected)
        self.opened.extend(other.opened)


def timestamp_ms(record: Record) -> int | None:
    """The record's Kafka timestamp, ``None`` when unknown (absent or negative)."""
    ts = record.timestamp_ms
    return ts if isinstance(ts, int) and ts >= 0 else None
