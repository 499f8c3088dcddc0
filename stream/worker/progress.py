"""What a partition's committed transactions already hold: the exactly-once bookkeeping.

With ``--guarantee exactly-once`` a worker writes its events and commits its audio
offsets in one Kafka transaction per audio partition (``stream.kafka.transactions``).
That alone is not exactly-once here: a stream pins its first offset while it is open
(``stream.worker.delivery``), so the committed offset trails the events already
written, and a new owner that replays from it rebuilds every open stream and
re-emits its windows. :class:`PartitionProgress` is what makes the replay silent
where the output is already committed. It is written, as one record per audio
partition, into the *same* transaction as the events and the offsets, to the
compacted progress topic; the next owner reads it (``read_committed``) before it
consumes the partition, and

* mutes a window's events (label, speaker, ``invalid_model_output``) when the
  window's segment (stream key + the offset of its first record) already committed
  that window index or a later one: a segment's windows are completed in index
  order and all events of one window leave in one transaction;
* mutes every output of a segment that starts inside a segment whose summary is
  committed (first record ≤ its first offset ≤ its last record): the segment itself
  replayed, or the partial segment a replay starting in its middle opens;
* mutes the dead letter of a record whose offset already has one committed.

Entries below the committed offset can never be replayed again and are pruned at
each commit, so the record holds the open segments, the segments closed since the
committed offset and the dead-lettered offsets since then. Plain bookkeeping, no
Kafka; ``docs/delivery.md`` ("Exactly-once") has the argument.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.errors import TympanError

SCHEMA = "tympan.progress.v1"
MAX_PROGRESS_BYTES = 8 * 1024 * 1024  # a record we read back: bounded like any input


class ProgressError(TympanError):
    """A progress record that cannot be read (not ours, corrupt, or over the bound)."""


@dataclass(slots=True)
class PartitionProgress:
    """Outputs of one audio partition already in committed transactions.

    Attributes
    ----------
    partition: the audio partition.
    opened: per stream key, ``(first offset, highest window index sent)`` of its open
        segment.
    closed: per stream key, ``[first, last]`` offsets of its segments whose summary
        was sent.
    dead: offsets ``[start, stop)`` whose records' dead letters were sent.
    """

    partition: int
    opened: dict[str, tuple[int, int]] = field(default_factory=dict)
    closed: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    dead: list[list[int]] = field(default_factory=list)

    # -- what to mute ---------------------------------------------------------------------
    def segment_done(self, sid: str, first: int) -> bool:
        """The segment of ``sid`` opened at ``first`` lies in one whose summary is out."""
        return any(lo <= first <= hi for lo, hi in self.closed.get(sid, ()))

    def window_done(self, sid: str, first: int, index: int) -> bool:
        """Window ``index`` of the segment of ``sid`` opened at ``first`` is out."""
        if self.segment_done(sid, first):
            return True
        seen = self.opened.get(sid)
        return seen is not None and seen[0] == first and index <= seen[1]

    def record_done(self, offset: int) -> bool:
        """The record at ``offset`` already has its dead letter out."""
        return any(start <= offset < stop for start, stop in self.dead)

    # -- what was sent -------------------------------------------------------------------
    def window_sent(self, sid: str, first: int, index: int) -> None:
        seen = self.opened.get(sid)
        if seen is None or seen[0] != first or index > seen[1]:
            self.opened[sid] = (first, index)

    def segment_sent(self, sid: str, first: int, last: int) -> None:
        """The summary of the segment ``[first, last]`` of ``sid`` was sent."""
        seen = self.opened.get(sid)
        if seen is not None and seen[0] <= last:
            del self.opened[sid]
        self.closed.setdefault(sid, []).append((first, max(first, last)))

    def record_sent(self, offset: int) -> None:
        if self.dead and self.dead[-1][1] == offset:
            self.dead[-1][1] = offset + 1
        elif not self.record_done(offset):
            self.dead.append([offset, offset + 1])
            self.dead.sort()

    def prune(self, committed: int) -> None:
        """Forget what a replay from ``committed`` can no longer meet."""
        for sid in list(self.closed):
            kept = [(lo, hi) for lo, hi in self.closed[sid] if hi >= committed]
            if kept:
                self.closed[sid] = kept
            else:
                del self.closed[sid]
        self.dead = [[max(s, committed), e] for s, e in self.dead if e > committed]
        # an open segment pins its first offset, so the committed offset never passes
        # it: an entry behind it is a segment that ended without a summary (dropped)
        self.opened = {sid: v for sid, v in self.opened.items() if v[0] >= committed}

    # -- the record -------------------------------------------------------------------------
    def to_json(self) -> bytes:
        return json.dumps(
            {
                "schema": SCHEMA,
                "partition": self.partition,
                "opened": {sid: list(v) for sid, v in self.opened.items()},
                "closed": {sid: [list(r) for r in v] for sid, v in self.closed.items()},
                "dead": self.dead,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, *, partition: int) -> PartitionProgress:
        """Read a progress record back; anything but our own shape is a
        :class:`ProgressError` naming what is wrong."""
        if len(data) > MAX_PROGRESS_BYTES:
            raise ProgressError(
                f"progress record of partition {partition}: {len(data)} bytes, over "
                f"{MAX_PROGRESS_BYTES}"
            )
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
                raise ValueError("not a tympan.progress.v1 object")
            if raw.get("partition") != partition:
                raise ValueError(f"it names partition {raw.get('partition')!r}")
            return cls(
                partition,
                opened={str(k): _pair(v) for k, v in _mapping(raw["opened"]).items()},
                closed={
                    str(k): [_pair(r) for r in _list(v)] for k, v in _mapping(raw["closed"]).items()
                },
                dead=[list(_pair(r)) for r in _list(raw["dead"])],
            )
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ProgressError(
                f"progress record of partition {partition} cannot be read: {exc}"
            ) from exc


class CommittedOutputs:
    """Exactly-once, the runtime's side: per owned audio partition, what its committed
    transactions hold plus what was sent since (one :class:`PartitionProgress` each).

    The runtime asks before each output (``send_*``): ``False`` mutes it (a committed
    transaction holds it); ``True`` counts it as sent from now on, so it must be sent
    before the partition's next commit (the runtime sends with no commit in between:
    the commit runs inside :meth:`~stream.worker.runtime.WorkerRuntime.quiet`).
    """

    def __init__(self, on_muted: Callable[[], object] | None = None) -> None:
        self.partitions: dict[int, PartitionProgress] = {}
        self.muted = 0  # outputs left out because a committed transaction held them
        self._on_muted = on_muted  # the worker's counter (``tympan_muted_outputs``)

    def load(self, progress: PartitionProgress) -> None:
        """What a newly assigned partition's committed transactions hold."""
        self.partitions[progress.partition] = progress

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)

    def of(self, partition: int) -> PartitionProgress:
        found = self.partitions.get(partition)
        if found is None:
            found = self.partitions[partition] = PartitionProgress(partition)
        return found

    def _mute(self) -> None:
        self.muted += 1
        if self._on_muted is not None:
            self._on_muted()

    def send_window(self, partition: int, sid: str, first: int, index: int) -> bool:
        """An event of window ``index`` of the segment of ``sid`` opened at ``first``."""
        progress = self.of(partition)
        if progress.window_done(sid, first, index):
            self._mute()
            return False
        progress.window_sent(sid, first, index)
        return True

    def send_summary(self, partition: int, sid: str, first: int, last: int) -> bool:
        """The summary of the segment ``[first, last]`` of ``sid``."""
        progress = self.of(partition)
        if progress.segment_done(sid, first):
            self._mute()
            return False
        progress.segment_sent(sid, first, last)
        return True

    def send_dead_letter(self, partition: int, offset: int) -> bool:
        """The dead letter of the record at ``offset``."""
        progress = self.of(partition)
        if progress.record_done(offset):
            self._mute()
            return False
        progress.record_sent(offset)
        return True


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _pair(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(type(v) is int and v >= -1 for v in value)
    ):
        raise ValueError(f"expected two offsets, got {value!r}")
    return value[0], value[1]
