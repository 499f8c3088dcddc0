"""Labels: inferred windows → label events, with the thresholds of the model that
scored them (a hot swap may change the model between a batch and its results)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from stream.errors import ConfigError
from stream.events import LabelEvent, ModelRef, event_id, thresholded, top_k
from stream.pipeline.jobs import WindowJob
from stream.pipeline.segments import Segment

# models whose thresholds are kept after a swap: a batch scored by the old one may still
# complete after it (one swap per batch at most; a few more for swaps in quick succession)
_MODELS_KEPT = 8


class Labels:
    """The serving label model, its labels and thresholds, and recent models' thresholds.

    Parameters
    ----------
    model: name and version, for event ids.
    labels: one per probabilities column.
    thresholds: a multi-label model's per-tag thresholds; ``None``: single-label.
    top_k: labels per event.
    """

    def __init__(
        self,
        model: ModelRef,
        labels: Sequence[str],
        thresholds: Sequence[float] | None,
        top_k: int,
    ) -> None:
        self.labels = tuple(labels)
        self.model = model
        self.thresholds = self._checked(model, thresholds)
        self.top_k = top_k
        # thresholds of the models that may have scored a window still to complete
        self._cuts: OrderedDict[ModelRef, tuple[float, ...] | None] = OrderedDict(
            [(model, self.thresholds)]
        )

    def _checked(
        self, model: ModelRef, thresholds: Sequence[float] | None
    ) -> tuple[float, ...] | None:
        cuts = None if thresholds is None else tuple(float(t) for t in thresholds)
        if cuts is not None and len(cuts) != len(self.labels):
            raise ConfigError(
                f"{len(cuts)} thresholds for {len(self.labels)} labels of "
                f"{model.tag}: a multi-label model needs one per label"
            )
        return cuts

    def serve(self, model: ModelRef, thresholds: Sequence[float] | None) -> None:
        """``model`` scores from now on, with ``thresholds`` (see ``Pipeline.serve``)."""
        cuts = self._checked(model, thresholds)
        if (cuts is None) != (self.thresholds is None):
            raise ConfigError(
                f"model {model.tag} is {'single' if cuts is None else 'multi'}-label, the "
                f"serving {self.model.tag} is not: a live swap keeps the task"
            )
        self.model, self.thresholds = model, cuts
        self._cuts[model] = cuts
        self._cuts.move_to_end(model)
        while len(self._cuts) > _MODELS_KEPT:
            self._cuts.popitem(last=False)

    def complete(
        self,
        jobs: Sequence[WindowJob],
        probabilities: npt.NDArray[np.float32],
        model: ModelRef | None,
        segment_of: Callable[[WindowJob], Segment | None],
        now: float,
    ) -> list[LabelEvent]:
        """Label events for inferred windows; each window's probabilities also go to
        its segment's summary (see ``Pipeline.complete``)."""
        out: list[LabelEvent] = []
        k = self.top_k
        labels = self.labels
        scored_by = model or self.model
        tag = scored_by.tag
        cuts = self._cuts.get(scored_by, self.thresholds)
        for job, scores in zip(jobs, probabilities.tolist(), strict=True):
            best = top_k(labels, scores, k)
            label, score = best[0]
            key = job.key or job.window.stream_id
            out.append(
                LabelEvent(
                    event_id=event_id(key, job.span.index, "label", tag),
                    stream_id=job.stream_id,
                    span=job.span,
                    label=label,
                    score=score,
                    top_k=best,
                    model=scored_by,
                    gap=job.gap,
                    padded=job.window.padded,
                    latency_ms=(now - job.ready_s) * 1000.0,
                    tags=None if cuts is None else thresholded(labels, scores, cuts),
                    attributes=job.attributes,
                    instance=job.instance,
                )
            )
            state = segment_of(job)
            if state is not None:
                state.outstanding -= 1
                span = job.span
                state.summary.add_window(span.index, span.start_s, span.end_s, scores, cuts)
                if state.outstanding == 0:
                    state.summary.settle()
        return out
