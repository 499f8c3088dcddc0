"""Per-stream sequencing: reorder within a grace window, drop duplicates, judge gaps.

Kafka keeps a partition in order, but producers retry and networks reorder, so a
stream's frames can arrive shuffled or twice. A :class:`Sequencer` holds frames back
until the next expected ``seq`` arrives, for at most ``reorder_frames`` frames; past
that it gives up on the missing ones and releases what it has, saying how many
frames are missing (a *gap*). The caller zero-fills a short gap (so window timing
stays right) and resets the stream's feature state after a long one.

The grace window is counted in frames, not wall-clock time, on purpose: a replay of
the same records after a crash makes exactly the same decisions, so it produces
the same windows and the same event ids.

Verdicts for a frame that does not fit:

* ``seq`` already released as a real frame → *duplicate*: dropped, counted.
* ``seq`` already given up on (zero-filled or skipped) → :class:`SequenceError`
  ``late_frame``: dead-lettered, its slot has been filled with silence.
* ``seq`` after the end-of-stream frame → :class:`SequenceError` ``after_eos``;
  frames already held above an end-of-stream frame that arrives after them are
  evicted (:meth:`Sequencer.take_evicted`) for the caller to dead-letter the same way.
* an end-of-stream frame below a frame already released (a *late EOS*) still ends
  the stream: the sequencer is ``finished`` at once, its own payload is counted late.
* ``seq`` below the segment's ``first_seq`` → :class:`SequenceError` ``late_frame``.
* ``seq`` more than ``max_seq_jump`` past the highest seen → :class:`SequenceError`
  ``seq_jump``: a gap that large is a broken or hostile producer, not lost frames,
  and zero-filling or skipping it would cost unbounded memory or integer range.
* negative ``seq`` → :class:`SequenceError` ``bad_seq``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from stream.errors import SequenceError
from stream.settings import SequencingPolicy

T = TypeVar("T")

_SKIPPED_RANGES_KEPT = 64


class Released(NamedTuple, Generic[T]):
    """A frame leaving the sequencer, in ``seq`` order.

    A named tuple rather than a frozen dataclass: one is made per frame, and a frozen
    dataclass costs 0.75 µs to build (each field through ``object.__setattr__``), this
    0.2 µs.

    Attributes
    ----------
    seq: the frame's sequence number.
    item: the caller's payload for the frame.
    gap_frames: frames missing right before this one (0 = contiguous).
    reset: the gap exceeded ``max_gap_frames``: restart feature state here
        instead of zero-filling.
    eos: this is the stream's last frame.
    """

    seq: int
    item: T
    gap_frames: int = 0
    reset: bool = False
    eos: bool = False


@dataclass(slots=True)
class SequenceCounts:
    """What the sequencer saw, for the stream's summary."""

    frames: int = 0
    duplicates: int = 0
    late: int = 0
    gaps: int = 0
    gap_frames: int = 0
    resets: int = 0


class Sequencer(Generic[T]):
    """Put one stream's frames in order.

    Parameters
    ----------
    stream_id: named in every error.
    policy: ``reorder_frames`` and ``max_gap_frames``.
    first_seq: the ``seq`` a stream (or a segment of it) starts at (0 by the wire
        contract; a segment opened mid-stream starts at its first frame's seq).
    max_seq_jump: frames further than this past the highest seq seen are refused
        (``None``: no bound).
    """

    def __init__(
        self,
        stream_id: str,
        policy: SequencingPolicy,
        *,
        first_seq: int = 0,
        max_seq_jump: int | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.policy = policy
        self.first_seq = first_seq
        self.next_seq = first_seq
        self.max_seq_jump = max_seq_jump
        self.eos_seq: int | None = None
        self.finished = False
        self.counts = SequenceCounts()
        self._held: dict[int, T] = {}
        self._highest = first_seq - 1
        self._evicted: list[tuple[int, T]] = []
        self._skipped: deque[tuple[int, int]] = deque(maxlen=_SKIPPED_RANGES_KEPT)

    @property
    def held(self) -> int:
        """Frames waiting for an earlier one."""
        return len(self._held)

    def push(self, seq: int, item: T, *, eos: bool = False) -> list[Released[T]]:
        """Accept frame ``seq``; return the frames now releasable, in order.

        Raises
        ------
        SequenceError
            ``late_frame``, ``after_eos`` or ``bad_seq`` (see module docstring).
        """
        if seq == self.next_seq and not eos and not self._held and self.eos_seq is None:
            # in order, nothing waiting: what nearly every frame is (no check can fail)
            self.next_seq = seq + 1
            self._highest = max(self._highest, seq)
            self.counts.frames += 1
            return [Released(seq, item)]
        late_eos = eos and self.first_seq <= seq < self.next_seq
        if late_eos and (self.eos_seq is None or seq <= self.eos_seq):
            return self._late_eos()
        self._check(seq)
        if seq < self.next_seq or seq in self._held:
            self.counts.duplicates += 1
            return []
        if eos:
            self._end_at(seq)
        self._held[seq] = item
        self._highest = max(self._highest, seq)
        out = self._release_contiguous()
        while len(self._held) > self.policy.reorder_frames:
            out.extend(self._release_next_with_gap())
            out.extend(self._release_contiguous())
        return out

    def take_evicted(self) -> list[tuple[int, T]]:
        """Frames dropped because an end-of-stream frame below them arrived later
        (``(seq, item)``, to be dead-lettered ``after_eos``); cleared on return."""
        out, self._evicted = self._evicted, []
        return out

    def flush(self) -> list[Released[T]]:
        """Release everything held, gaps and all (stream closing)."""
        out: list[Released[T]] = []
        while self._held:
            out.extend(self._release_next_with_gap())
            out.extend(self._release_contiguous())
        return out

    # -- internals -------------------------------------------------------------------
    def _end_at(self, seq: int) -> None:
        """Record the end of the stream at ``seq``; evict held frames above it."""
        self.eos_seq = seq if self.eos_seq is None else min(self.eos_seq, seq)
        for above in sorted(s for s in self._held if s > self.eos_seq):
            self._evicted.append((above, self._held.pop(above)))

    def _late_eos(self) -> list[Released[T]]:
        """An end-of-stream frame below a frame already released: end here."""
        self.counts.late += 1
        self._end_at(self.next_seq - 1)
        self.finished = True
        return []

    def _check(self, seq: int) -> None:
        if seq < 0:
            raise SequenceError(
                "bad_seq", f"seq {seq} is negative", stream_id=self.stream_id, seq=seq
            )
        if seq < self.first_seq:
            self.counts.late += 1
            raise SequenceError(
                "late_frame",
                f"seq {seq} is below seq {self.first_seq}, where this segment of the "
                "stream started",
                stream_id=self.stream_id,
                seq=seq,
            )
        if self.max_seq_jump is not None and seq > self._highest + self.max_seq_jump:
            raise SequenceError(
                "seq_jump",
                f"seq {seq} is more than max_seq_jump={self.max_seq_jump} past the highest "
                f"seq seen ({self._highest})",
                stream_id=self.stream_id,
                seq=seq,
            )
        if self.eos_seq is not None and seq > self.eos_seq:
            raise SequenceError(
                "after_eos",
                f"seq {seq} arrived after the end-of-stream frame (seq {self.eos_seq})",
                stream_id=self.stream_id,
                seq=seq,
            )
        if seq < self.next_seq and self._was_skipped(seq):
            self.counts.late += 1
            raise SequenceError(
                "late_frame",
                f"seq {seq} arrived after the stream moved past it (next seq "
                f"{self.next_seq}, reorder window {self.policy.reorder_frames} frames)",
                stream_id=self.stream_id,
                seq=seq,
            )

    def _was_skipped(self, seq: int) -> bool:
        return any(lo <= seq < hi for lo, hi in self._skipped)

    def _release_contiguous(self) -> list[Released[T]]:
        out: list[Released[T]] = []
        while self.next_seq in self._held:
            out.append(self._emit(self.next_seq, gap_frames=0))
        return out

    def _release_next_with_gap(self) -> list[Released[T]]:
        seq = min(self._held)
        gap = seq - self.next_seq
        self._skipped.append((self.next_seq, seq))
        self.counts.gaps += 1
        self.counts.gap_frames += gap
        return [self._emit(seq, gap_frames=gap)]

    def _emit(self, seq: int, *, gap_frames: int) -> Released[T]:
        item = self._held.pop(seq)
        reset = gap_frames > self.policy.max_gap_frames
        if reset:
            self.counts.resets += 1
        eos = seq == self.eos_seq
        self.finished = self.finished or eos
        self.next_seq = seq + 1
        self.counts.frames += 1
        return Released(seq=seq, item=item, gap_frames=gap_frames, reset=reset, eos=eos)
