"""Which consumed offsets may be committed: the at-least-once bookkeeping.

The batch consumer (:mod:`stream.kafka.consumer`) commits, per partition, the highest
offset below which *every* record has been acked. So the worker acks a record only when
nothing it feeds is still owed to Kafka. A record is owed while

* its stream is open (a replay after a crash must rebuild the stream's state from its
  first frame, because frames carry no sample offset and the summary covers the whole
  stream): the stream *pins* its first offset until its summary is delivered;
* a dead letter for it is in flight: it pins its own offset until the send is acked.

:class:`OffsetLedger` holds every consumed offset (in order per partition) until the
lowest pin of its partition moves past it, then hands it back to be acked.
It is plain bookkeeping, no Faust, no asyncio; ``docs/delivery.md`` explains the
design and what it costs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

Run = tuple[int, int]  # offsets [start, stop)


@dataclass(slots=True)
class _Partition:
    runs: deque[list[int]] = field(default_factory=deque)  # [start, stop) in order
    pins: dict[Hashable, int] = field(default_factory=dict)


class OffsetLedger:
    """Consumed-but-unacked offsets and the pins that hold them, per partition.

    Held offsets are kept as runs ``[start, stop)``: a stream open for an hour holds
    its partition's offsets for an hour, and a run costs the same for one record as
    for a million (no record objects are kept alive).
    """

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def hold(self, partition: int, offset: int) -> None:
        """Remember a consumed offset; offsets of one partition arrive increasing."""
        runs = self._part(partition).runs
        if runs and runs[-1][1] == offset:
            runs[-1][1] = offset + 1
        else:
            runs.append([offset, offset + 1])

    def pin(self, partition: int, key: Hashable, offset: int) -> None:
        """Keep ``offset`` (and everything after it) unacked until ``unpin(key)``."""
        pins = self._part(partition).pins
        pins[key] = min(offset, pins.get(key, offset))

    def unpin(self, partition: int, key: Hashable) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part.pins.pop(key, None)

    def pinned(self, partition: int, key: Hashable) -> int | None:
        """The offset ``key`` pins in ``partition`` (``None``: not pinned)."""
        part = self._parts.get(partition)
        return None if part is None else part.pins.get(key)

    def floor(self, partition: int) -> int | None:
        """The lowest pinned offset of ``partition`` (``None``: nothing pinned)."""
        part = self._parts.get(partition)
        if part is None or not part.pins:
            return None
        return min(part.pins.values())

    def releasable(self, partition: int) -> list[Run]:
        """Pop and return the held offsets below the partition's lowest pin, as runs."""
        part = self._parts.get(partition)
        if part is None:
            return []
        floor = min(part.pins.values()) if part.pins else None
        out: list[Run] = []
        while part.runs:
            start, stop = part.runs[0]
            if floor is not None and stop > floor:
                if start < floor:
                    out.append((start, floor))
                    part.runs[0][0] = floor
                break
            out.append((start, stop))
            part.runs.popleft()
        return out

    def held(self, partition: int) -> int:
        """Offsets held (consumed, not acked) in ``partition``."""
        part = self._parts.get(partition)
        return 0 if part is None else sum(stop - start for start, stop in part.runs)

    def lowest_held(self, partition: int) -> int | None:
        """Offset of the oldest unacked record (what a restart would re-read from)."""
        part = self._parts.get(partition)
        return part.runs[0][0] if part is not None and part.runs else None

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions: their offsets are never acked here (their new
        owner re-reads them from the committed offset)."""
        for partition in partitions:
            self._parts.pop(partition, None)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        return part
