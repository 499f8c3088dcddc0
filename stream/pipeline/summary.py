"""What a stream's summary event says, accumulated window by window.

A :class:`SummaryBuilder` sees every window of one stream with its probabilities and,
when the stream closes, turns them into a :class:`~stream.events.SummaryEvent`: the
track verdict (:mod:`stream.events.verdict`, the same aggregation ``tympan classify`` uses:
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

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stream.events import ModelRef, SummaryEvent, event_id
from stream.events.verdict import VerdictAccumulator

if TYPE_CHECKING:
    from stream.pipeline.segments import Segment
    from stream.pipeline.speakers import SpeakerStage

log = logging.getLogger(__name__)

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
    # what the event id hashes for the stream (``stream.pipeline.segments.segment_key``): a
    # segment of a stream cut by a roll or an idle close has its own summary
    id_key: str | None = None
    instance: str | None = None  # the stream's instance header, named in the event

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
            instance=self.instance,
        )


def summarize(state: Segment, speakers: SpeakerStage | None, sr: int) -> SummaryEvent:
    """The summary event of a closed segment whose windows are all done.

    An exception while making it (e.g. the speaker scorer) is contained: the summary
    goes out without a speaker verdict, closed as ``internal_error``.
    """
    try:
        return _summary(state, speakers, sr)
    except Exception:
        log.exception("stream %r: summary failed; sent without speaker", state.stream_id)
        state.tracker = None
        state.closed_by = "internal_error"
        return _summary(state, speakers, sr)


def _summary(state: Segment, speakers: SpeakerStage | None, sr: int) -> SummaryEvent:
    c = state.sequencer.counts
    counts = {
        "frames": c.frames,
        "duplicates": c.duplicates,
        "late": c.late,
        "gaps": c.gaps,
        "gap_frames": c.gap_frames,
        "resets": c.resets,
        "rejected": state.rejected,
    }
    if state.tracker is not None and speakers is not None:
        final = state.tracker.final(speakers.scorer())
        state.summary.set_speaker(
            SpeakerVerdict(final.speaker, final.score, final.margin, final.runner_up, final.windows)
        )
    summary = state.summary.build(
        closed_by=state.closed_by or "eos",
        duration_s=state.position / sr,
        counts=counts,
    )
    if not state.attributes:
        return summary
    return dataclasses.replace(summary, attributes=state.attributes)
