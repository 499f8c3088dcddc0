"""OffsetLedger: an offset is released only when no pin of its partition is at or
below it; held offsets are kept as runs; revoked partitions are forgotten."""

from __future__ import annotations

from stream.worker.delivery import OffsetLedger


def _offsets(runs: list[tuple[int, int]]) -> list[int]:
    return [o for start, stop in runs for o in range(start, stop)]


def test_offsets_are_released_below_the_lowest_pin() -> None:
    ledger = OffsetLedger()
    for offset in range(6):
        ledger.hold(0, offset)
    ledger.pin(0, "call-a", 1)
    ledger.pin(0, "call-b", 3)
    assert _offsets(ledger.releasable(0)) == [0]
    ledger.unpin(0, "call-a")
    assert _offsets(ledger.releasable(0)) == [1, 2]
    assert ledger.floor(0) == 3 and ledger.lowest_held(0) == 3
    ledger.unpin(0, "call-b")
    assert _offsets(ledger.releasable(0)) == [3, 4, 5]
    assert ledger.held(0) == 0


def test_held_offsets_are_runs_and_gaps_are_kept() -> None:
    ledger = OffsetLedger()
    for offset in [*range(100), *range(150, 160)]:
        ledger.hold(0, offset)
    assert ledger.held(0) == 110
    assert ledger.releasable(0) == [(0, 100), (150, 160)]


def test_partitions_are_independent_and_drop_forgets() -> None:
    ledger = OffsetLedger()
    ledger.hold(0, 10)
    ledger.hold(1, 10)
    ledger.pin(0, "s", 10)
    assert ledger.releasable(1) == [(10, 11)]
    assert ledger.releasable(0) == []
    ledger.drop([0])
    assert ledger.releasable(0) == [] and ledger.partitions == [1]


def test_a_pin_keeps_its_lowest_offset() -> None:
    ledger = OffsetLedger()
    ledger.pin(0, "s", 5)
    ledger.pin(0, "s", 9)
    assert ledger.floor(0) == 5
