"""A track's verdict from its window probabilities: one aggregation, offline and streaming.

``tympan classify``, ``tympan evaluate`` and the worker's summary event all fold a
file's (or stream's) window probabilities through one :class:`VerdictAccumulator`, in
window order, so the same audio gives the same verdict whichever path scored it (the
windows are bit-identical, and so is the arithmetic: the same float64 sums in the same
order).

* every label: its **aggregated probability** (the mean over windows);
* single-label models (``thresholds is None``): the **dominant label**, the top label of
  the most windows (ties go to the label seen first), and the top-label timeline;
* multi-label models: the **track's tags**, each tag whose aggregated probability
  reaches its manifest threshold, best first, with the share of windows where it was
  active (window probability ≥ threshold) and its segments (runs of consecutive active
  windows). A stream that a hot swap cut between two models of one label set gets each
  window thresholded with its own model's thresholds, and its track's tags with those
  of the model that scored its last window (the one serving now).

Memory per track is the running sums (one float and one count per label) plus the
segments, never a list of windows, so a long stream costs what its verdict holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.events.records import Segment, TagSegment, TrackTag


@dataclass(slots=True)
class _Run:
    """An open run of consecutive windows (a timeline segment or a tag's segment)."""

    label: str
    start_s: float
    end_s: float
    last_index: int
    windows: int = 1
    score_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class TrackVerdict:
    """What a whole track is, from its windows.

    Attributes
    ----------
    task: ``"single"`` or ``"multi"``.
    windows: windows aggregated.
    scores: the aggregated (mean) probability of every label, in label order.
    dominant_label: single-label: the top label of the most windows; multi-label: the
        best of ``tags`` (``None`` without windows, or without a tag).
    tags: multi-label: tags whose aggregated probability reaches the threshold, best
        first (empty for single-label models).
    timeline: the top label's segments (consecutive windows with one top label).
    """

    task: str
    windows: int
    scores: tuple[tuple[str, float], ...]
    dominant_label: str | None
    tags: tuple[TrackTag, ...]
    timeline: tuple[Segment, ...]

    @property
    def labels(self) -> list[str]:
        """The verdict as a label list: ``[dominant]`` (single) or the tags, best first."""
        if self.task == "multi":
            return [t.tag for t in self.tags]
        return [] if self.dominant_label is None else [self.dominant_label]

    def to_dict(self) -> dict[str, Any]:
        """The fields a summary event and a ``classify --json`` record share, verbatim."""
        return {
            "task": self.task,
            "windows": self.windows,
            "dominant_label": self.dominant_label,
            "tags": [t.to_dict() for t in self.tags],
            "timeline": [s.to_dict() for s in self.timeline],
        }


@dataclass(slots=True)
class VerdictAccumulator:
    """Running sums over a track's windows, fed in window order.

    Parameters
    ----------
    labels: one per probability column.
    thresholds: one per label for a multi-label model; ``None`` for single-label.
    """

    labels: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None
    windows: int = 0
    last_index: int = -1
    _sums: npt.NDArray[np.float64] = field(init=False)
    _active: npt.NDArray[np.int64] = field(init=False)
    _top: npt.NDArray[np.int64] = field(init=False)
    _cuts: npt.NDArray[np.float64] = field(init=False)
    _first_top: dict[int, int] = field(init=False, default_factory=dict)
    _timeline: list[Segment] = field(init=False, default_factory=list)
    _run: _Run | None = field(init=False, default=None)
    _tag_runs: dict[int, _Run] = field(init=False, default_factory=dict)
    _tag_segments: dict[int, list[TagSegment]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.thresholds is not None and len(self.thresholds) != n:
            raise ValueError(f"{len(self.thresholds)} thresholds for {n} labels: need one each")
        self._sums = np.zeros(n, dtype=np.float64)
        self._active = np.zeros(n, dtype=np.int64)
        self._top = np.zeros(n, dtype=np.int64)
        self._cuts = np.asarray(self.thresholds or (), dtype=np.float64)

    @property
    def task(self) -> str:
        return "single" if self.thresholds is None else "multi"

    def add(
        self,
        index: int,
        start_s: float,
        end_s: float,
        probabilities: Sequence[float],
        *,
        thresholds: tuple[float, ...] | None = None,
    ) -> bool:
        """Fold in window ``index`` (its ``[n_labels]`` probabilities).

        Windows must come in ascending index; a window at or before the last one
        (re-inferred after a feature reset, or redelivered) is ignored and ``False``
        is returned, so every window counts once.

        ``thresholds``: a multi-label track's thresholds from this window on (the
        model that scored it, after a hot swap); ``None``: unchanged.

        Raises
        ------
        ValueError
            ``thresholds`` for a single-label track, or not one per label.
        """
        if index <= self.last_index:
            return False
        if thresholds is not None and thresholds is not self.thresholds:
            self._retarget(thresholds)
        p = np.asarray(probabilities, dtype=np.float64)
        self.windows += 1
        self._sums += p
        best = int(p.argmax())  # first of equal maxima: label order, like top_k
        self._top[best] += 1
        self._first_top.setdefault(best, index)
        self._extend_timeline(index, start_s, end_s, best, float(p[best]))
        if self.thresholds is not None:
            self._extend_tags(index, start_s, end_s, p)
        self.last_index = index
        return True

    def _retarget(self, thresholds: tuple[float, ...]) -> None:
        """Threshold the next windows (and the track) at ``thresholds``."""
        if self.thresholds is None or len(thresholds) != len(self.labels):
            raise ValueError(
                f"{len(thresholds)} thresholds for a {self.task}-label track of "
                f"{len(self.labels)} labels: a track keeps its task and needs one per label"
            )
        if thresholds != self.thresholds:
            self._cuts = np.asarray(thresholds, dtype=np.float64)
        self.thresholds = thresholds

    def _extend_timeline(
        self, index: int, start_s: float, end_s: float, best: int, score: float
    ) -> None:
        label = self.labels[best]
        run = self._run
        if run is not None and run.label == label:
            run.end_s, run.last_index = end_s, index
            run.windows += 1
            run.score_sum += score
            return
        if run is not None:
            self._timeline.append(_segment(run))
        self._run = _Run(label, start_s, end_s, index, 1, score)

    def _extend_tags(
        self, index: int, start_s: float, end_s: float, p: npt.NDArray[np.float64]
    ) -> None:
        assert self.thresholds is not None
        active = p >= self._cuts
        self._active += active
        for i, ending in list(self._tag_runs.items()):  # close runs that stop here
            if not active[i] or ending.last_index != index - 1:
                self._tag_segments.setdefault(i, []).append(_tag_segment(ending))
                del self._tag_runs[i]
        for i in np.flatnonzero(active).tolist():  # only active tags: cheap with many labels
            run = self._tag_runs.get(i)
            if run is None:
                self._tag_runs[i] = _Run(self.labels[i], start_s, end_s, index, 1, float(p[i]))
            else:
                run.end_s, run.last_index = end_s, index
                run.windows += 1
                run.score_sum += float(p[i])

    def scores(self) -> npt.NDArray[np.float64]:
        """The aggregated (mean) probability per label (zeros without windows)."""
        return self._sums / self.windows if self.windows else np.zeros_like(self._sums)

    def dominant_index(self) -> int | None:
        """The top label of the most windows; ties go to the label seen first."""
        if not self.windows:
            return None
        best = int(self._top.max())
        tied = [i for i in range(len(self.labels)) if self._top[i] == best]
        return min(tied, key=lambda i: self._first_top[i])

    def verdict(self) -> TrackVerdict:
        """The verdict over every window added so far (the accumulator stays usable)."""
        mean = self.scores()
        tags = self._tags(mean) if self.thresholds is not None else ()
        timeline = list(self._timeline)
        if self._run is not None:
            timeline.append(_segment(self._run))
        if self.thresholds is None:
            top = self.dominant_index()
            dominant = None if top is None else self.labels[top]
        else:
            dominant = tags[0].tag if tags else None
        return TrackVerdict(
            task=self.task,
            windows=self.windows,
            scores=tuple((lab, float(s)) for lab, s in zip(self.labels, mean, strict=True)),
            dominant_label=dominant,
            tags=tags,
            timeline=tuple(timeline),
        )

    def _tags(self, mean: npt.NDArray[np.float64]) -> tuple[TrackTag, ...]:
        assert self.thresholds is not None
        if not self.windows:
            return ()
        chosen = [i for i, t in enumerate(self.thresholds) if mean[i] >= t]
        chosen.sort(key=lambda i: (-mean[i], i))
        out = []
        for i in chosen:
            segments = list(self._tag_segments.get(i, ()))
            run = self._tag_runs.get(i)
            if run is not None:
                segments.append(_tag_segment(run))
            out.append(
                TrackTag(
                    tag=self.labels[i],
                    score=float(mean[i]),
                    active_share=float(self._active[i]) / self.windows,
                    segments=tuple(segments),
                )
            )
        return tuple(out)


def _segment(run: _Run) -> Segment:
    return Segment(run.label, run.start_s, run.end_s, run.windows, run.score_sum / run.windows)


def _tag_segment(run: _Run) -> TagSegment:
    return TagSegment(run.start_s, run.end_s, run.windows, run.score_sum / run.windows)


def track_verdict(
    probabilities: npt.NDArray[np.float32],
    spans_s: npt.NDArray[np.float64],
    labels: Sequence[str],
    thresholds: Sequence[float] | None,
) -> TrackVerdict:
    """The verdict of a whole file's windows (``classify``/``evaluate``).

    Parameters
    ----------
    probabilities: ``[n, n_labels]`` window probabilities, in window order.
    spans_s: ``[n, 2]`` window start/end in seconds.
    labels, thresholds: the model's (``thresholds`` ``None`` for single-label).
    """
    acc = VerdictAccumulator(tuple(labels), None if thresholds is None else tuple(thresholds))
    for i, (row, (start_s, end_s)) in enumerate(zip(probabilities, spans_s, strict=True)):
        acc.add(i, float(start_s), float(end_s), row)
    return acc.verdict()
