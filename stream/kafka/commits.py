"""Which offset to commit per partition: the worker's side of the offset ledger.

The runtime (:class:`~stream.worker.runtime.WorkerRuntime`) acks ranges ``[start, stop)``
that :class:`~stream.worker.delivery.OffsetLedger` released, in order per partition, so
everything below ``stop`` is done: the offset to commit is simply the highest
``stop`` acked. Acking a range is O(1) whatever its length (a stream held open for
an hour releases millions of offsets at once).

Plain bookkeeping, no Kafka: the consumer loop (``stream.kafka.consumer``) asks
:meth:`CommitLog.due` what to commit and reports back with :meth:`CommitLog.committed`.
Two rules keep a committed offset from ever moving backwards:

* acks for a partition this worker does not own now are ignored (a delivery that
  settles after its partition was revoked must not commit for the new owner);
* a partition's committable offset only grows while it is owned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class CommitLog:
    """Committable and committed offsets of the partitions this worker owns."""

    def __init__(self) -> None:
        self._owned: set[int] = set()
        self._next: dict[int, int] = {}  # offset to commit: every offset below is done
        self._committed: dict[int, int] = {}

    def assign(self, partitions: Iterable[int]) -> None:
        """Partitions now owned (a rebalance's new assignment)."""
        self._owned.update(partitions)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Partitions taken away: forget them (commit what is due *before* this)."""
        for partition in partitions:
            self._owned.discard(partition)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)

    def ack(self, partition: int, start: int, stop: int) -> None:
        """Offsets ``[start, stop)`` of ``partition`` are done (the runtime's ``ack``)."""
        if partition in self._owned and stop > self._next.get(partition, -1):
            self._next[partition] = stop

    def committable(self, partition: int) -> int:
        """The offset that would be committed for ``partition`` now (-1: none yet)."""
        return self._next.get(partition, -1)

    def due(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Offsets to commit now (of ``partitions``, default all owned): those that
        moved since the last commit."""
        wanted = self._owned if partitions is None else self._owned.intersection(partitions)
        return {
            p: offset
            for p, offset in self._next.items()
            if p in wanted and offset > self._committed.get(p, -1)
        }

    def committed(self, offsets: Mapping[int, int]) -> None:
        """The broker accepted these commits."""
        for partition, offset in offsets.items():
            if partition in self._owned:
                self._committed[partition] = max(offset, self._committed.get(partition, -1))

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)
