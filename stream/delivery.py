"""Which consumed offsets may be committed: the at-least-once bookkeeping.

Faust commits, per partition, the highest offset below which *every* record has been
acked. So the worker acks a record only when nothing it feeds is still owed to
Kafka. A record is owed while

* its stream is open (a replay after a crash must rebuild the stream's state from its
  first frame, because frames carry no sample offset and the summary covers the whole
  stream): the stream *pins* its first offset until its summary is delivered;
* a dead letter for it is in flight: it pins its own offset until the send is acked.

:class:`OffsetLedger` holds every consumed record (in offset order per partition)
until the lowest pin of its partition moves past it, then hands it back to be acked.
It is plain bookkeeping, no Faust, no asyncio; ``docs/delivery.md`` explains the
design and what it costs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Token = TypeVar("Token")


@dataclass(slots=True)
class _Partition(Generic[Token]):
    held: deque[tuple[int, Token]] = field(default_factory=deque)
    pins: dict[Hashable, int] = field(default_factory=dict)


class OffsetLedger(Generic[Token]):
    """Consumed-but-unacked records and the pins that hold them, per partition."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition[Token]] = {}

    def hold(self, partition: int, offset: int, token: Token) -> None:
        """Remember a consumed record; offsets of one partition arrive increasing."""
        self._part(partition).held.append((offset, token))

    def pin(self, partition: int, key: Hashable, offset: int) -> None:
        """Keep ``offset`` (and everything after it) uncommitted until ``unpin(key)``."""
        pins = self._part(partition).pins
        pins[key] = min(offset, pins.get(key, offset))

    def unpin(self, partition: int, key: Hashable) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part.pins.pop(key, None)

    def floor(self, partition: int) -> int | None:
        """The lowest pinned offset of ``partition`` (``None``: nothing pinned)."""
        part = self._parts.get(partition)
        if part is None or not part.pins:
            return None
        return min(part.pins.values())

    def releasable(self, partition: int) -> list[Token]:
        """Pop and return the held records below the partition's lowest pin."""
        part = self._parts.get(partition)
        if part is None:
            return []
        floor = min(part.pins.values()) if part.pins else None
        out: list[Token] = []
        while part.held and (floor is None or part.held[0][0] < floor):
            out.append(part.held.popleft()[1])
        return out

    def held(self, partition: int) -> int:
        part = self._parts.get(partition)
        return 0 if part is None else len(part.held)

    def lowest_held(self, partition: int) -> int | None:
        """Offset of the oldest unacked record (what a restart would re-read from)."""
        part = self._parts.get(partition)
        return part.held[0][0] if part is not None and part.held else None

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions: their records are never acked here (their new
        owner re-reads them from the committed offset)."""
        for partition in partitions:
            self._parts.pop(partition, None)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def _part(self, partition: int) -> _Partition[Token]:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        return part
