"""OffsetLedger: a record is released only when no pin of its partition is at or
below it; revoked partitions are forgotten."""

from __future__ import annotations

from stream.delivery import OffsetLedger


def test_records_are_released_below_the_lowest_pin() -> None:
    ledger: OffsetLedger[int] = OffsetLedger()
    for offset in range(6):
        ledger.hold(0, offset, offset)
    ledger.pin(0, "call-a", 1)
    ledger.pin(0, "call-b", 3)
    assert ledger.releasable(0) == [0]
    ledger.unpin(0, "call-a")
    assert ledger.releasable(0) == [1, 2]
    assert ledger.floor(0) == 3
    ledger.unpin(0, "call-b")
    assert ledger.releasable(0) == [3, 4, 5]
    assert ledger.held(0) == 0


def test_partitions_are_independent_and_drop_forgets() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.hold(0, 10, "p0")
    ledger.hold(1, 10, "p1")
    ledger.pin(0, "s", 10)
    assert ledger.releasable(1) == ["p1"]
    assert ledger.releasable(0) == []
    ledger.drop([0])
    assert ledger.releasable(0) == [] and ledger.partitions == [1]


def test_a_pin_keeps_its_lowest_offset() -> None:
    ledger: OffsetLedger[int] = OffsetLedger()
    ledger.pin(0, "s", 5)
    ledger.pin(0, "s", 9)
    assert ledger.floor(0) == 5
