"""Speakers: speech windows' embeddings → each stream's speaker tracker → speaker events
at decision points only.

Only windows that carry speech are embedded (silence, hold music and tones carry no
voice): the voice activity model (Silero VAD, ``SpeakerStage.vad``) decides, run per
stream on the conditioned audio in batched calls (``Conditioner``); without it, or for
a window it has not measured, the label model's top label must be ``speech_label``.
Every stream of a batch is scored in one call against the registry current at that
moment (:class:`SpeakerStage`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from stream.events import ModelRef, SpeakerEvent, WindowSpan, event_id
from stream.pipeline.jobs import WindowJob
from stream.pipeline.segments import Segment
from stream.roles import SPEECH_LABEL
from stream.types import Float32

if TYPE_CHECKING:  # stream.speakers pulls in scikit-learn: imported only when used
    from stream.speakers.scoring import SpeakerScorer
    from stream.speakers.tracker import SpeakerDecision, SpeakerTracker, TrackerConfig
    from stream.speakers.vad import SileroVad, VadConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpeakerStage:
    """Speaker identification in the stream: who decides, against which registry.

    Attributes
    ----------
    model: the speaker (embedding) model, named in speaker events and their ids.
    scorer: returns the *current* registry's scorer; it is asked at every decision
        and at every stream's end, so a registry update (``RegistryFollower``)
        reaches live streams at their next window without a restart.
    tracker: span, confirmation and margin policy (``None``: the tracker's default).
    speech_label: the label model's label for speech, the gate for windows the voice
        activity model did not measure (or without one). A label model without it
        gates nothing there: every such window counts as speech.
    vad: the voice activity model that decides which windows are speech (``None``:
        the label model alone decides).
    vad_config: its thresholds (``None``: ``DEFAULT_VAD``).
    """

    model: ModelRef
    scorer: Callable[[], SpeakerScorer]
    tracker: TrackerConfig | None = None
    speech_label: str = SPEECH_LABEL
    vad: SileroVad | None = None
    vad_config: VadConfig | None = None


class Speakers:
    """Speaker tracking for all streams: off until :meth:`track` is called."""

    def __init__(self) -> None:
        self.stage: SpeakerStage | None = None
        self._speech_column: int | None = None

    def track(self, stage: SpeakerStage, labels: Sequence[str], model: ModelRef) -> None:
        """Turn tracking on with ``stage``; ``labels``: the label model's (``model``)."""
        self.stage = stage
        gate = stage.speech_label
        self._speech_column = labels.index(gate) if gate in labels else None
        if self._speech_column is None:
            log.warning(
                "label model %s has no %r label: every window counts as speech for speakers",
                model.tag,
                gate,
            )

    def new_tracker(self, stream_id: str) -> SpeakerTracker | None:
        """A new segment's tracker (``None``: tracking is off)."""
        if self.stage is None:
            return None
        from stream.speakers.tracker import DEFAULT_TRACKER, SpeakerTracker

        return SpeakerTracker(stream_id, config=self.stage.tracker or DEFAULT_TRACKER)

    def speech_mask(
        self, probabilities: npt.NDArray[np.float32], jobs: Sequence[WindowJob] | None = None
    ) -> npt.NDArray[np.bool_]:
        """Which inferred windows carry speech worth an embedding (``Pipeline.speech_mask``):
        the voice activity of each job where measured, else the label model's top label."""
        n = probabilities.shape[0]
        if self.stage is None:
            return np.zeros(n, dtype=bool)
        if self._speech_column is None:
            mask: npt.NDArray[np.bool_] = np.ones(n, dtype=bool)
        else:
            mask = np.argmax(probabilities, axis=1) == self._speech_column
        for i, job in enumerate(jobs or ()):
            if job.speech is not None:
                mask[i] = job.speech
        return mask

    def complete(
        self,
        jobs: Sequence[WindowJob],
        embeddings: Sequence[npt.NDArray[np.float32] | None],
        segment_of: Callable[[WindowJob], Segment | None],
        clock: Callable[[], float],
    ) -> list[SpeakerEvent]:
        """Advance the trackers of the jobs' segments (``Pipeline.complete_speakers``)."""
        stage = self.stage
        if stage is None:
            return []
        items: list[tuple[SpeakerTracker, npt.NDArray[np.float32], int, int, bool]] = []
        owners: list[WindowJob] = []
        for job, emb in zip(jobs, embeddings, strict=True):
            state = segment_of(job)
            if emb is None or state is None or state.tracker is None:
                continue
            items.append((state.tracker, emb, job.span.start_sample, job.span.end_sample, True))
            owners.append(job)
        if not items:
            return []
        from stream.speakers.tracker import track_batch

        current = {id(tracker): tracker.current for tracker, *_ in items}  # before the batch
        scorer = stage.scorer()
        decisions = track_batch(items, scorer)
        registry = str(getattr(scorer, "digest", ""))  # the registry's version
        now = clock()
        out: list[SpeakerEvent] = []
        for job, (tracker, *_), decision in zip(owners, items, decisions, strict=True):
            if decision is not None:
                previous = current[id(tracker)]
                out.append(_speaker_event(stage.model, job, decision, previous, now, registry))
                current[id(tracker)] = decision.speaker
        return out


def _speaker_event(
    model: ModelRef,
    job: WindowJob,
    decision: SpeakerDecision,
    previous: str | None,
    now: float,
    registry: str = "",
) -> SpeakerEvent:
    span = WindowSpan(
        job.span.index,
        decision.start_sample,
        decision.end_sample,
        job.span.sr,
        job.span.capture_time_s,
    )
    return SpeakerEvent(
        # the registry's digest is part of the id: the same window scored against
        # another set of enrollments is another event, not a duplicate
        event_id=event_id(
            job.key or job.window.stream_id, job.span.index, "speaker", f"{model.tag}#{registry}"
        ),
        stream_id=decision.stream_id,
        span=span,
        speaker=decision.speaker,
        score=decision.score,
        model=model,
        latency_ms=(now - job.ready_s) * 1000.0,
        margin=decision.margin,
        runner_up=decision.runner_up,
        windows=decision.windows,
        previous=previous,
        instance=job.instance,
    )


EmbedJobs = Callable[[Sequence[WindowJob]], npt.NDArray[np.float32]]


def embed_speech(
    jobs: Sequence[WindowJob], speech: npt.NDArray[np.bool_], embed: EmbedJobs
) -> list[Float32 | None]:
    """Speaker embeddings of the speech windows only (one model call), ``None`` elsewhere.

    ``embed`` maps jobs to unit embeddings ``[n, d]`` (the speaker hook's, which picks
    ``WindowJob.aux_features`` when the speaker model has its own FeatureSpec).
    """
    picked = [job for job, is_speech in zip(jobs, speech, strict=True) if is_speech]
    out: list[Float32 | None] = [None] * len(jobs)
    if not picked:
        return out
    rows = iter(embed(picked))
    for i, is_speech in enumerate(speech):
        if is_speech:
            out[i] = next(rows)
    return out
