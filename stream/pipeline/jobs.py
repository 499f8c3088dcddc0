"""Window jobs: each complete feature window, stamped with what its events need.

The conditioning stage hands windows here as the feature frontend cuts them; a
:class:`WindowJob` carries the window to inference with its span in the stream (and
capture time), its ``gap`` flag, its segment (``incarnation``, ``key``) and the stream's
attributes, so the label and speaker stages can make events without the segment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from stream.errors import ConfigError
from stream.events import WindowSpan
from stream.features.spec import FeatureSpec
from stream.features.windows import Window
from stream.pipeline.records import wire_id

if TYPE_CHECKING:
    from stream.pipeline.records import Step
    from stream.pipeline.segments import Segment


@dataclass(slots=True)
class WindowJob:
    """A window waiting for inference, with what its events need."""

    window: Window
    partition: int
    span: WindowSpan
    gap: bool
    ready_s: float  # time.monotonic() when the window became complete
    incarnation: int = 0  # which segment / opening of the stream
    aux_features: npt.NDArray[np.float32] | None = None  # same window, aux FeatureSpec
    attributes: tuple[tuple[str, str], ...] = ()  # the stream's attr-* headers
    key: str = ""  # what event ids hash for the stream: segment_key(); "" = stream id
    instance: str | None = None  # the stream's instance header (window.stream_id: its key)
    speech: bool | None = None  # voice activity over the window; None: not measured

    @property
    def stream_id(self) -> str:
        """The stream id its events name (``window.stream_id`` is the pipeline's key)."""
        return wire_id(self.window.stream_id, self.instance)


class WindowJobs:
    """Turns a segment's windows into jobs (and counts them as outstanding).

    Parameters
    ----------
    sr: the feature rate: spans and capture times are in its samples.
    clock: monotonic seconds; a job's ``ready_s`` (its latency's start).
    """

    def __init__(self, sr: int, clock: Callable[[], float]) -> None:
        self.sr = sr
        self.clock = clock

    def submit(
        self, state: Segment, windows: list[Window], step: Step, aux: list[Window] | None = None
    ) -> None:
        """Append a job per window of ``state`` to ``step``; ``aux``: the aux frontend's
        windows of the same call, matched by index."""
        now = self.clock()
        sr = self.sr
        aux_by_index = {w.index: w.features for w in aux or () if w.stream_id == state.stream_id}
        for w in windows:
            index, start, end = w.index, w.start_sample, w.end_sample
            capture_s = None
            if state.origin_us is not None:
                capture_s = (state.origin_us + end * 1e6 / sr) / 1e6
            span = WindowSpan(index, start, end, sr, capture_s)
            gap = any(a < end and start < b for a, b in state.gaps)
            job = WindowJob(
                w,
                state.partition,
                span,
                gap,
                now,
                state.incarnation,
                attributes=state.attributes,
                key=state.key,
                instance=state.instance,
            )
            job.aux_features = aux_by_index.get(w.index)
            step.jobs.append(job)
            state.outstanding += 1


def check_aligned(spec: FeatureSpec, aux: FeatureSpec) -> None:
    """The aux frontend must cut the same windows from the same samples."""
    fields: tuple[str, ...] = ("sr", "n_fft", "hop_length", "win_length")
    fields += ("window_seconds", "hop_seconds", "partial_window")
    differ = [f for f in fields if getattr(spec, f) != getattr(aux, f)]
    if differ or spec.window_span(3) != aux.window_span(3):
        raise ConfigError(
            "the second FeatureSpec must cut the same windows as the label model's; "
            + ", ".join(f"{f}={getattr(aux, f)!r} vs {getattr(spec, f)!r}" for f in differ)
        )
