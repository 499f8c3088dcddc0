"""The worker's domain core, synchronous and Faust-free: records in, jobs and events out.

:class:`Pipeline` wires the stages (``stream/pipeline/*``) behind the API the runtime
(``stream.worker.runtime``) uses. It feeds Kafka records in and gets back a
:class:`~stream.pipeline.records.Step`:

* ``rejected``: dead letters to send (bad frames, late frames, bounds exceeded);
* ``jobs``: model windows to batch for inference (:class:`~stream.pipeline.jobs.WindowJob`);
* ``opened``: segments this record started (``Opened``: the caller pins their
  first offset under ``Opened.pin`` and releases it when the summary whose
  ``event_id`` equals that pin is delivered);

then hands inference results back to :meth:`Pipeline.complete`, which makes the
label events (and, with a ``SpeakerStage``, the speech windows' embeddings to
:meth:`Pipeline.complete_speakers`, which advances each stream's speaker tracker
and makes speaker events at decision points only), and collects the summaries of
closed segments whose windows are all done with :meth:`Pipeline.take_summaries`.

Everything here is a function of the records (content, order and Kafka timestamp),
never of the wall clock: a replay of the same records gives the same windows, ids
and verdicts. The clock serves latency figures and one fallback: a partition that
went quiet closes its idle streams by wall clock, which closes them with the same
content a replay would give (see docs/delivery.md, "Deterministic closing").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from stream.events import LabelEvent, ModelRef, SpeakerEvent, SummaryEvent
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.pipeline.conditioning import Conditioner
from stream.pipeline.deadlines import Deadlines
from stream.pipeline.intake import Intake
from stream.pipeline.jobs import WindowJob, WindowJobs, check_aligned
from stream.pipeline.labels import Labels
from stream.pipeline.records import Record, Step
from stream.pipeline.segments import Segments
from stream.pipeline.speakers import Speakers, SpeakerStage
from stream.pipeline.summary import summarize
from stream.settings import PipelinePolicy


class Pipeline:
    """All open streams of one worker.

    Parameters
    ----------
    spec: the model's FeatureSpec (the frontend computes it).
    model: name and version, for event ids.
    labels: one per probabilities column.
    frontend: the streaming feature bank (one for all streams).
    policy: sequencing, idle timeout, stream cap, top-k, bounds.
    clock: monotonic seconds (tests pass a fake one): latency figures and the
        quiet-partition fallback only.
    aux_frontend: a second feature bank (e.g. the speaker model's FeatureSpec) fed
        the same samples; its windows must align with the main ones (same rate,
        framing and window timing), and ride along in ``WindowJob.aux_features``.
    speakers: speaker tracking (see :meth:`complete_speakers`); ``None``: off.
    thresholds: a multi-label model's per-tag thresholds (its manifest's): label events
        then carry ``tags`` and summaries the track's tags; ``None``: single-label.
        After a hot swap (:meth:`serve`) each window is thresholded with those of the
        model that scored it.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        model: ModelRef,
        labels: Sequence[str],
        frontend: FeatureBank,
        policy: PipelinePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        aux_frontend: FeatureBank | None = None,
        speakers: SpeakerStage | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> None:
        self.spec = spec
        self._labels = Labels(model, labels, thresholds, policy.top_k)
        self.frontend = frontend
        self.aux_frontend = aux_frontend
        if aux_frontend is not None:
            check_aligned(spec, aux_frontend.spec)
        self.policy = policy
        self.clock = clock
        self.hop_samples = spec.hop_frames * spec.hop_length
        self._speakers = Speakers()
        jobs = WindowJobs(spec.sr, clock)
        self._conditioning = Conditioner(
            spec, frontend, aux_frontend, jobs, policy.limits.max_gap_s
        )
        self._segments = Segments(
            policy, spec.sr, self._conditioning, self._labels, self._speakers, clock
        )
        self._deadlines = Deadlines(
            self._segments, policy.idle_timeout_s, policy.limits.max_segment_age_s, clock
        )
        self._intake = Intake(
            policy, spec.sr, self._segments, self._deadlines, self._conditioning, clock
        )
        if speakers is not None:
            self.track_speakers(speakers)

    # -- the serving models -----------------------------------------------------------
    @property
    def model(self) -> ModelRef:
        """The label model segments opened from now on name in their summaries."""
        return self._labels.model

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels.labels

    @property
    def thresholds(self) -> tuple[float, ...] | None:
        return self._labels.thresholds

    @property
    def speakers(self) -> SpeakerStage | None:
        return self._speakers.stage

    def serve(self, model: ModelRef, thresholds: Sequence[float] | None) -> None:
        """A hot swap: ``model`` scores from now on, with its manifest's ``thresholds``.

        Segments opened from now on name ``model`` in their summaries. Windows are
        thresholded with the thresholds of the model :meth:`complete` is told scored
        them, so a batch the previous model scored keeps its thresholds after the swap.

        Raises
        ------
        ConfigError
            ``thresholds`` do not fit the labels, or the task changes (single-label to
            multi-label or back): open segments' verdicts could not be folded on
            (``stream.control.gate.prepare`` refuses such a model before the swap).
        """
        self._labels.serve(model, thresholds)

    def track_speakers(self, stage: SpeakerStage) -> None:
        """Turn speaker tracking on (before the first record: open streams keep none)."""
        self._speakers.track(stage, self._labels.labels, self._labels.model)
        if stage.vad is not None:
            from stream.speakers.vad import DEFAULT_VAD, VadBank

            self._conditioning.vad = VadBank(stage.vad, history_chunks=None)
            self._conditioning.vad_config = stage.vad_config or DEFAULT_VAD

    # -- queries ----------------------------------------------------------------------
    @property
    def active_streams(self) -> int:
        return len(self._segments.open)

    def stream_partition(self, stream_id: str) -> int | None:
        """The partition of the stream's open or closing segment (``None``: neither)."""
        state = self._segments.open.get(stream_id) or self._segments.closing_of(stream_id)
        return None if state is None else state.partition

    def first_offset(self, stream_id: str) -> int | None:
        """The first offset of the stream's open segment."""
        state = self._segments.open.get(stream_id)
        return None if state is None else state.first_offset

    def origin(self, stream_id: str, job: WindowJob | None = None) -> tuple[int, int] | None:
        """Partition and first offset of the segment ``job`` was cut from, else of the
        stream's open segment, else of one of its closing segments (``None``: gone)."""
        segments = self._segments
        state = segments.of_job(job) if job is not None else None
        state = state or segments.open.get(stream_id) or segments.closing_of(stream_id)
        return None if state is None else (state.partition, state.first_offset)

    def held_frames(self) -> int:
        """Frames held for reordering in all open segments (memory bound checks)."""
        return sum(s.sequencer.held for s in self._segments.open.values())

    # -- records ----------------------------------------------------------------------
    def accept(self, record: Record) -> Step:
        """Take one audio-topic record; never raises for anything the record holds
        (it becomes a dead letter in the returned step)."""
        return self.accept_many([record])

    def accept_many(self, records: Iterable[Record]) -> Step:
        """Take records in consumption order, with one feature-kernel call for all.

        The samples each record releases are queued per stream and pushed to the
        ``FeatureBank`` together at the end (or before a stream's reset/flush), which
        computes the same features as record-by-record pushes (the frontend is
        chunk-invariant) at a fraction of the cost.

        Nothing a record holds escapes as an exception: an ``InputError`` is a
        dead letter with its reason; any other exception is a dead letter
        ``internal_error`` naming it, and the stream it hit is closed with a summary
        (its state may be corrupt), while other streams go on.
        """
        return self._intake.accept_many(records)

    def expire(self) -> Step:
        """The wall-clock fallback: close idle streams of partitions that went quiet.

        A stream is closed here when its partition has had no record for
        ``idle_timeout_s`` (so no record's Kafka time can close it), or, for a
        stream whose records carry no timestamp, when it had none for that long.
        """
        return self._deadlines.expire()

    # -- closing ----------------------------------------------------------------------
    def close_all(self, closed_by: str = "shutdown") -> Step:
        step = Step()
        self._segments.close_all(closed_by, step)
        return step

    def drop_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Forget the streams of revoked partitions (their new owner replays them)."""
        lost = set(partitions)
        dropped = self._segments.drop(lost)
        self._deadlines.forget(lost)
        return dropped

    def abandon(self, stream_id: str, closed_by: str = "internal_error") -> bool:
        """Close a stream whose state can no longer be trusted (the runtime caught an
        unexpected exception for it): no flush, windows in flight no longer count,
        and its summary is ready at once (``closed_by``). ``False``: not open here.
        """
        return self._segments.abandon(stream_id, closed_by)

    def skip(self, jobs: Sequence[WindowJob]) -> None:
        """Count windows done without a label event (their model output was unusable,
        see ``docs/delivery.md``): their stream's summary no longer waits for them."""
        for job in jobs:
            state = self._segments.of_job(job)
            if state is not None:
                state.outstanding -= 1

    # -- results ------------------------------------------------------------------------
    def complete(
        self,
        jobs: Sequence[WindowJob],
        probabilities: npt.NDArray[np.float32],
        *,
        model: ModelRef | None = None,
    ) -> list[LabelEvent]:
        """Label events for inferred windows (rows of ``probabilities`` match ``jobs``).

        ``model``: the model that really scored them (after a hot swap it may differ
        from ``self.model``); default ``self.model``. With thresholds (multi-label) each
        event carries its ``tags``, cut at ``model``'s thresholds (:meth:`serve`). Each
        window's probabilities go to its stream's summary, with those thresholds, folded
        in window order once the stream has no window in flight.
        """
        now = self.clock()
        return self._labels.complete(jobs, probabilities, model, self._segments.of_job, now)

    def speech_mask(
        self, probabilities: npt.NDArray[np.float32], jobs: Sequence[WindowJob] | None = None
    ) -> npt.NDArray[np.bool_]:
        """Which inferred windows carry speech worth a speaker embedding.

        Silence, hold music and tones carry no voice and would drag the span average
        towards whoever they happen to resemble. With the stage's voice activity model,
        each job's measured ``speech`` decides; elsewhere the label model's top label
        must be the stage's ``speech_label``. All ``False`` without speaker tracking.
        """
        return self._speakers.speech_mask(probabilities, jobs)

    def complete_speakers(
        self,
        jobs: Sequence[WindowJob],
        embeddings: Sequence[npt.NDArray[np.float32] | None],
    ) -> list[SpeakerEvent]:
        """Advance the streams' speaker trackers; events only where a decision is made.

        Call it with the same batch as :meth:`complete`, before any await between
        them, so a closing stream's summary sees every window. ``embeddings`` holds
        one speaker embedding per job, ``None`` for windows that are not speech
        (:meth:`speech_mask`). All streams of the batch are scored in one call
        against the registry current at this moment.
        """
        return self._speakers.complete(jobs, embeddings, self._segments.of_job, self.clock)

    def take_summaries(self) -> list[tuple[int, SummaryEvent]]:
        """Summaries of closed segments whose windows are all inferred, with partitions.

        The segments are forgotten here; their pins (``summary.event_id``) are the
        caller's to release once the summary is delivered.
        """
        return [(partition, summary) for partition, summary, _, _ in self.take_closed()]

    def take_closed(self) -> list[tuple[int, SummaryEvent, int, int]]:
        """As :meth:`take_summaries`, with each segment's first and last offsets in its
        partition (the exactly-once progress record names segments by them)."""
        stage, sr = self._speakers.stage, self.spec.sr
        return [
            (
                state.partition,
                summarize(state, stage, sr),
                state.first_offset,
                max(state.first_offset, state.last_offset),
            )
            for state in self._segments.take_done()
        ]
