"""Sequencer laws: reorder within the window restores order, duplicates vanish, gaps
are reported (zero-fill or reset), late and post-EOS frames are refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.errors import SequenceError
from stream.pipeline.sequencing import Released, Sequencer
from stream.settings import SequencingPolicy

POLICY = SequencingPolicy(reorder_frames=4, max_gap_frames=3)


def _run(
    seqs: list[int], policy: SequencingPolicy = POLICY
) -> tuple[list[Released[int]], Sequencer[int]]:
    seq = Sequencer("s", policy)
    out: list[Released[int]] = []
    last = max(seqs)
    for s in seqs:
        out.extend(seq.push(s, s, eos=s == last))
    out.extend(seq.flush())
    return out, seq


def test_in_order_frames_are_released_at_once() -> None:
    seq: Sequencer[str] = Sequencer("s", POLICY)
    assert [r.seq for r in seq.push(0, "a")] == [0]
    assert [r.seq for r in seq.push(1, "b")] == [1]
    assert seq.held == 0


@st.composite
def _local_shuffle(draw: st.DrawFn) -> list[int]:
    n = draw(st.integers(1, 60))
    rng = random.Random(draw(st.integers(0, 2**32)))
    block = POLICY.reorder_frames + 1  # displacement at most reorder_frames
    out = []
    for i in range(0, n, block):
        chunk = list(range(i, min(i + block, n)))
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


@settings(max_examples=200, deadline=None)
@given(_local_shuffle(), st.lists(st.integers(0, 59), max_size=10))
def test_reorder_within_window_gives_the_ordered_stream(order: list[int], dups: list[int]) -> None:
    n = len(order)
    eos = n - 1
    seq: Sequencer[int] = Sequencer("s", POLICY)
    out: list[Released[int]] = []
    pushed = list(order)
    for d in dups:  # a duplicate right after its original
        if d < n:
            pushed.insert(pushed.index(d) + 1, d)
    for s in pushed:
        if seq.finished:
            break
        out.extend(seq.push(s, s * 10, eos=s == eos))
    assert [r.seq for r in out] == list(range(n))
    assert [r.item for r in out] == [s * 10 for s in range(n)]
    assert all(r.gap_frames == 0 and not r.reset for r in out)
    assert out[-1].eos and seq.finished
    assert seq.counts.gaps == 0


def test_duplicates_are_dropped_and_counted() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY)
    seq.push(0, 0)
    assert seq.push(0, 0) == []
    seq.push(2, 2)
    assert seq.push(2, 2) == []  # held duplicate
    assert seq.counts.duplicates == 2


def test_a_short_gap_is_released_for_zero_filling() -> None:
    out, seq = _run([0, 3, 4, 5, 6, 7, 8])
    assert [(r.seq, r.gap_frames, r.reset) for r in out][:2] == [(0, 0, False), (3, 2, False)]
    assert seq.counts.gaps == 1 and seq.counts.gap_frames == 2


def test_a_long_gap_resets() -> None:
    out, seq = _run([0, 10, 11, 12, 13, 14])
    assert (out[1].seq, out[1].gap_frames, out[1].reset) == (10, 9, True)
    assert seq.counts.resets == 1


def test_a_frame_after_its_slot_was_filled_is_late() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY)
    for s in [0, 2, 3, 4, 5, 6]:
        seq.push(s, s)
    with pytest.raises(SequenceError) as err:
        seq.push(1, 1)
    assert err.value.reason == "late_frame" and err.value.seq == 1
    assert "stream 's'" in str(err.value)


def test_frames_after_eos_are_refused() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY)
    seq.push(0, 0)
    seq.push(1, 1, eos=True)
    with pytest.raises(SequenceError) as err:
        seq.push(2, 2)
    assert err.value.reason == "after_eos"


def test_negative_seq_is_refused() -> None:
    with pytest.raises(SequenceError) as err:
        Sequencer("s", POLICY).push(-1, 0)
    assert err.value.reason == "bad_seq"


def test_eos_with_a_missing_frame_waits_then_flush_releases_it() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY)
    seq.push(0, 0)
    assert seq.push(2, 2, eos=True) == []
    assert not seq.finished
    out = seq.flush()
    assert [(r.seq, r.gap_frames, r.eos) for r in out] == [(2, 1, True)]
    assert seq.finished


def test_a_seq_jump_past_the_bound_is_refused_and_changes_nothing() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY, max_seq_jump=100)
    seq.push(0, 0)
    with pytest.raises(SequenceError) as info:
        seq.push(10**18, 1)
    assert info.value.reason == "seq_jump" and seq.held == 0
    assert [r.seq for r in seq.push(1, 1)] == [1]
    assert [r.seq for r in seq.push(101, 2)] == []  # within the bound of the highest (1)


def test_an_eos_below_held_frames_evicts_them() -> None:
    seq: Sequencer[str] = Sequencer("s", POLICY)
    seq.push(0, "a")
    assert seq.push(2, "c") == [] and seq.push(3, "d") == []
    out = seq.push(1, "eos", eos=True)
    assert [(r.seq, r.eos) for r in out] == [(1, True)] and seq.finished
    assert seq.take_evicted() == [(2, "c"), (3, "d")] and seq.take_evicted() == []
    with pytest.raises(SequenceError, match="end-of-stream"):
        seq.push(4, "e")


def test_an_eos_below_a_released_frame_still_finishes() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY)
    for s in range(5):
        seq.push(s, s)
    assert seq.push(2, 99, eos=True) == [] and seq.finished
    assert seq.eos_seq == 4 and seq.counts.late == 1


def test_a_segment_refuses_frames_below_its_first_seq() -> None:
    seq: Sequencer[int] = Sequencer("s", POLICY, first_seq=500)
    assert [r.seq for r in seq.push(500, 0)] == [500]
    with pytest.raises(SequenceError) as info:
        seq.push(499, 1)
    assert info.value.reason == "late_frame"
