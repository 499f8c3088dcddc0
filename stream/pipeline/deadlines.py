"""Deadlines: a segment closes when its partition's Kafka time passes its last record
by ``idle_timeout_s`` (``idle``) or its first record by ``max_segment_age_s``
(``rolled``).

Decided by the records' Kafka timestamps, never by the wall clock, so a replay of the
same records closes the same segments at the same records. Each partition keeps a heap
of ``(deadline_ms, offset, stream, incarnation)``; a record of the partition pops
those it has passed. The wall clock serves one fallback (:meth:`Deadlines.expire`):
a partition that went quiet has no record to close its idle streams, so they close
when the partition has had no record for ``idle_timeout_s`` of wall time — with the
same content a replay would give (see docs/delivery.md, "Deterministic closing");
and a segment whose records carry no timestamp is idle or too old by the wall clock.
Together they bound how long any segment pins its partition's commit
(docs/delivery.md, "How far the commit trails").
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from stream.pipeline.records import Record, Step, timestamp_ms

if TYPE_CHECKING:
    from stream.pipeline.segments import Segment, Segments


class Deadlines:
    """The idle deadlines of every open segment, by partition.

    Parameters
    ----------
    segments: the open segments (read) and their closing (called for idle ones).
    idle_timeout_s: the policy's idle timeout.
    max_age_s: a segment's age limit (``StreamLimits.max_segment_age_s``).
    clock: monotonic seconds: when each partition last had a record (the fallback).
    """

    def __init__(
        self,
        segments: Segments,
        idle_timeout_s: float,
        max_age_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.segments = segments
        self.open = segments.open
        self.idle_timeout_s = idle_timeout_s
        self.idle_ms = round(idle_timeout_s * 1000)
        self.max_age_s = max_age_s
        self.age_ms = round(max_age_s * 1000)
        self.clock = clock
        self.heaps: dict[int, list[tuple[int, int, str, int]]] = {}  # partition → heap
        self.partition_seen_s: dict[int, float] = {}

    def touch(self, state: Segment, record: Record) -> None:
        """Note the record's Kafka time on its stream (its idle deadline, and for the
        segment's first timestamped record its age deadline)."""
        ts = timestamp_ms(record)
        if ts is None:
            return
        state.last_ms = ts
        heap = self.heaps.setdefault(state.partition, [])
        heapq.heappush(heap, (ts + self.idle_ms, record.offset, state.stream_id, state.incarnation))
        if state.first_ms is None:
            state.first_ms = ts
            heapq.heappush(
                heap, (ts + self.age_ms, record.offset, state.stream_id, state.incarnation)
            )
        if len(heap) > 4 * len(self.open) + 64:
            self._compact(state.partition)

    def _compact(self, partition: int) -> None:
        mine = [(sid, s) for sid, s in self.open.items() if s.partition == partition]
        heap = [
            (s.last_ms + self.idle_ms, s.first_offset, sid, s.incarnation)
            for sid, s in mine
            if s.last_ms is not None
        ]
        heap += [
            (s.first_ms + self.age_ms, s.first_offset, sid, s.incarnation)
            for sid, s in mine
            if s.first_ms is not None
        ]
        heapq.heapify(heap)
        self.heaps[partition] = heap

    def close_idle(self, record: Record, step: Step) -> None:
        """Close the streams of the record's partition whose last record is more than
        ``idle_timeout_s`` older (Kafka time) than this one (``idle``), and roll those
        whose first record is more than ``max_segment_age_s`` older (``rolled``)."""
        self.partition_seen_s[record.partition] = self.clock()
        ts = timestamp_ms(record)
        heap = self.heaps.get(record.partition)
        if ts is None or not heap:
            return
        while heap and heap[0][0] < ts:
            deadline, _, sid, incarnation = heapq.heappop(heap)
            state = self.open.get(sid)
            if state is None or state.incarnation != incarnation or state.last_ms is None:
                continue
            if state.last_ms + self.idle_ms == deadline:
                self.segments.close_safely(state, "idle", step)
            elif state.first_ms is not None and state.first_ms + self.age_ms == deadline:
                self.segments.close_safely(state, "rolled", step)

    def expire(self) -> Step:
        """The wall-clock fallback: close idle streams of partitions that went quiet.

        A stream is closed here when its partition has had no record for
        ``idle_timeout_s`` (so no record's Kafka time can close it), or, for a
        stream whose records carry no timestamp, when it had none for that long; a
        segment none of whose records carried a timestamp is rolled when it has been
        open for ``max_segment_age_s``.
        """
        step = Step()
        now = self.clock()
        idle = self.idle_timeout_s
        for state in list(self.open.values()):
            quiet = now - self.partition_seen_s.get(state.partition, state.last_seen_s) > idle
            silent = now - state.last_seen_s > idle
            if silent and (quiet or state.last_ms is None):
                self.segments.close_safely(state, "idle", step)
            elif state.first_ms is None and now - state.opened_s > self.max_age_s:
                self.segments.close_safely(state, "rolled", step)
        return step

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the deadlines of revoked partitions."""
        for partition in partitions:
            self.heaps.pop(partition, None)
            self.partition_seen_s.pop(partition, None)
