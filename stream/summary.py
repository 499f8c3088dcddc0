"""What a stream's summary event says, accumulated window by window.

A :class:`SummaryBuilder` sees every window of one stream with its probabilities and,
when the stream closes, turns them into a :class:`~stream.events.SummaryEvent`: the
track verdict (:mod:`stream.verdict`, the same aggregation ``tympan classify`` uses:
merged top-label segments and the dominant label, or a multi-label model's tags), the
speaker verdict (set at close from the stream's speaker tracker) and the sequencing
counts.

The verdict folds windows into running sums in window order. A window that completes
in order (the next index: the usual case, batches run first in, first out) is folded at
once; one that completes ahead of an earlier in-flight window waits until that one
arrives, or until no window of the stream is in flight (:meth:`SummaryBuilder.settle`;
window indices jump after a feature reset). So the builder holds the verdict and at
most the out-of-order windows, not the stream's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stream.events import ModelRef, SummaryEvent, event_id
from stream.verdict import VerdictAccumulator

# a window waiting for an earlier one: start_s, end_s, probabilities, thresholds
_Window = tuple[float, float, tuple[float, ...], tuple[float, ...] | None]


@dataclass(frozen=True, slots=True)
class SpeakerVerdict:
    """The stream's speaker as the summary reports it (``SpeakerTracker.final``):
    every speech window of the stream averaged and scored once, so the dominant voice
    wins rather than whoever the most single windows resembled."""

    speaker: str
    score: float
    margin: float
    runner_up: str | None
    windows: int


@dataclass(slots=True)
class SummaryBuilder:
    """Accumulates one stream's windows until it closes.

    Parameters
    ----------
    stream_id, model: name the summary event (and key its id).
    labels: one per probability column.
    thresholds: the manifest's per-tag thresholds for a multi-label model, else ``None``
        (a window may bring those of another model: :meth:`add_window`).
    """

    stream_id: str
    model: ModelRef
    labels: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None
    speaker: SpeakerVerdict | None = None
    pending: dict[int, _Window] = field(default_factory=dict)
    accumulator: VerdictAccumulator = field(init=False)
    # what the event id hashes for the stream (``stream.pipeline.segment_key``): a
    # segment of a stream cut by a roll or an idle close has its own summary
    id_key: str | None = None

    @property
    def event_id(self) -> str:
        """The summary's id, known from the segment's opening (the runtime's pin)."""
        return event_id(self.id_key or self.stream_id, -1, "summary", self.model.tag)

    def __post_init__(self) -> None:
        self.accumulator = VerdictAccumulator(self.labels, self.thresholds)

    def add_window(
        self,
        index: int,
        start_s: float,
        end_s: float,
        probabilities: Sequence[float],
        thresholds: tuple[float, ...] | None = None,
    ) -> None:
        """A completed window; it counts once per index (a window re-inferred after a
        feature reset replaces the pending one, and is ignored once folded in).

        ``thresholds``: those of the model that scored it, when a hot swap may have
        changed them (``VerdictAccumulator.add``); ``None``: the builder's.
        """
        acc = self.accumulator
        if not self.pending and index == acc.last_index + 1:
            acc.add(index, start_s, end_s, probabilities, thresholds=thresholds)
            return
        self.pending[index] = (start_s, end_s, tuple(probabilities), thresholds)
        while acc.last_index + 1 in self.pending:
            start_s, end_s, row, cuts = self.pending.pop(acc.last_index + 1)
            acc.add(acc.last_index + 1, start_s, end_s, row, thresholds=cuts)

    def settle(self) -> None:
        """Fold the pending windows in, in window order: call it when no window of the
        stream is in flight (every earlier window is then among them)."""
        if not self.pending:  # the usual case: called after each window of a stream
            return
        for index in sorted(self.pending):
            start_s, end_s, row, cuts = self.pending[index]
            self.accumulator.add(index, start_s, end_s, row, thresholds=cuts)
        self.pending.clear()

    def set_speaker(self, verdict: SpeakerVerdict) -> None:
        """The stream's speaker verdict (the tracker's final one), set once at close."""
        self.speaker = verdict

    def build(self, *, closed_by: str, duration_s: float, counts: dict[str, int]) -> SummaryEvent:
        self.settle()
        verdict = self.accumulator.verdict()
        spk = self.speaker
        return SummaryEvent(
            event_id=self.event_id,
            stream_id=self.stream_id,
            model=self.model,
            closed_by=closed_by,
            duration_s=duration_s,
            windows=verdict.windows,
            timeline=verdict.timeline,
            dominant_label=verdict.dominant_label,
            speaker=None if spk is None else spk.speaker,
            speaker_score=None if spk is None else spk.score,
            counts={**counts, "windows": verdict.windows},
            speaker_margin=None if spk is None else spk.margin,
            speaker_runner_up=None if spk is None else spk.runner_up,
            speaker_windows=None if spk is None else spk.windows,
            task=verdict.task,
            tags=verdict.tags,
        )
