"""What a stream's summary event says, accumulated window by window.

A :class:`SummaryBuilder` sees every window verdict of one stream (in any order;
the timeline is built in window order at the end) and, when the stream closes,
turns them into a :class:`~stream.events.SummaryEvent`: merged label segments, the
dominant label, the speaker verdict (set at close from the stream's speaker tracker)
and the sequencing counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from stream.events import ModelRef, Segment, SummaryEvent, event_id


@dataclass(frozen=True, slots=True)
class WindowVerdict:
    """One window's top label, as the summary needs it."""

    index: int
    start_s: float
    end_s: float
    label: str
    score: float


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


def merge_segments(verdicts: list[WindowVerdict]) -> tuple[Segment, ...]:
    """Merge consecutive windows with the same label into segments.

    Windows overlap (hop < window), so a segment ends where its last window ends;
    the next segment starts where its first window starts.
    """
    out: list[Segment] = []
    run: list[WindowVerdict] = []
    for verdict in sorted(verdicts, key=lambda v: v.index):
        if run and verdict.label != run[-1].label:
            out.append(_segment(run))
            run = []
        run.append(verdict)
    if run:
        out.append(_segment(run))
    return tuple(out)


def _segment(run: list[WindowVerdict]) -> Segment:
    return Segment(
        label=run[0].label,
        start_s=run[0].start_s,
        end_s=run[-1].end_s,
        windows=len(run),
        mean_score=sum(v.score for v in run) / len(run),
    )


def dominant(verdicts: list[WindowVerdict]) -> str | None:
    """The label of the most windows; ties go to the label seen first."""
    if not verdicts:
        return None
    ordered = sorted(verdicts, key=lambda v: v.index)
    counts = Counter(v.label for v in ordered)
    best = max(counts.values())
    return next(v.label for v in ordered if counts[v.label] == best)


@dataclass(slots=True)
class SummaryBuilder:
    """Accumulates one stream's verdicts until it closes."""

    stream_id: str
    model: ModelRef
    verdicts: dict[int, WindowVerdict] = field(default_factory=dict)
    speaker: SpeakerVerdict | None = None
    # what the event id hashes for the stream (``stream.pipeline.segment_key``): a
    # segment of a stream cut by a roll or an idle close has its own summary
    id_key: str | None = None

    @property
    def event_id(self) -> str:
        """The summary's id, known from the segment's opening (the runtime's pin)."""
        return event_id(self.id_key or self.stream_id, -1, "summary", self.model.tag)

    def add_label(self, verdict: WindowVerdict) -> None:
        # keyed by index: a window re-inferred after a feature reset counts once
        self.verdicts[verdict.index] = verdict

    def set_speaker(self, verdict: SpeakerVerdict) -> None:
        """The stream's speaker verdict (the tracker's final one), set once at close."""
        self.speaker = verdict

    def build(self, *, closed_by: str, duration_s: float, counts: dict[str, int]) -> SummaryEvent:
        verdicts = list(self.verdicts.values())
        spk = self.speaker
        return SummaryEvent(
            event_id=self.event_id,
            stream_id=self.stream_id,
            model=self.model,
            closed_by=closed_by,
            duration_s=duration_s,
            windows=len(verdicts),
            timeline=merge_segments(verdicts),
            dominant_label=dominant(verdicts),
            speaker=None if spk is None else spk.speaker,
            speaker_score=None if spk is None else spk.score,
            counts={**counts, "windows": len(verdicts)},
            speaker_margin=None if spk is None else spk.margin,
            speaker_runner_up=None if spk is None else spk.runner_up,
            speaker_windows=None if spk is None else spk.windows,
        )
