"""CommitLog: the offset to commit is the highest released stop of an owned
partition; it never moves backwards and never commits for a partition not owned."""

from __future__ import annotations

from stream.kafka.commits import CommitLog
from stream.worker.delivery import OffsetLedger


def test_the_highest_released_stop_is_due_once() -> None:
    log = CommitLog()
    log.assign([0, 1])
    log.ack(0, 0, 10)
    log.ack(0, 10, 25)
    log.ack(1, 3, 4)
    assert log.due() == {0: 25, 1: 4}
    log.committed({0: 25, 1: 4})
    assert log.due() == {}
    log.ack(0, 25, 30)
    assert log.due() == {0: 30}
    assert log.due([1]) == {}


def test_a_late_or_lower_ack_never_moves_the_offset_back() -> None:
    log = CommitLog()
    log.assign([0])
    log.ack(0, 0, 100)
    log.committed({0: 100})
    log.ack(0, 0, 50)
    assert log.due() == {}


def test_acks_of_a_revoked_partition_are_ignored() -> None:
    log = CommitLog()
    log.assign([0, 1])
    log.ack(1, 0, 7)
    assert log.due([1]) == {1: 7}
    log.revoke([1])
    log.ack(1, 7, 9)  # a delivery that settled after the revocation
    assert log.due() == {}
    assert log.owned == [0]
    log.assign([1])  # owned again: starts from what the runtime releases next
    assert log.due() == {}


def test_a_million_offsets_released_at_once_cost_one_ack() -> None:
    ledger, log = OffsetLedger(), CommitLog()
    log.assign([3])
    for offset in range(1_000_000):
        ledger.hold(3, offset)
    ledger.pin(3, "call", 0)
    assert ledger.releasable(3) == []
    ledger.unpin(3, "call")
    runs = ledger.releasable(3)
    for start, stop in runs:
        log.ack(3, start, stop)
    assert len(runs) == 1 and log.due() == {3: 1_000_000}
