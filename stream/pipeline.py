"""The worker's domain core, synchronous and Faust-free: records in, jobs and events out.

:class:`Pipeline` owns every open stream's state: its :class:`~stream.sequencing.Sequencer`,
its resampler, its place in the feature frontend, its summary. The Faust layer
(``stream.agents``) feeds it one Kafka record at a time and gets back a :class:`Step`:

* ``rejected``: dead letters to send (bad frames, late frames, over capacity);
* ``jobs``: model windows to batch for inference (:class:`WindowJob`);
* ``opened``: streams this record started (the caller pins their first offset);

then hands inference results back to :meth:`Pipeline.complete`, which makes the
label events (and, with a :class:`SpeakerStage`, the speech windows' embeddings to
:meth:`Pipeline.complete_speakers`, which advances each stream's speaker tracker
and makes speaker events at decision points only), and collects the summaries of
closed streams whose windows are all done with :meth:`Pipeline.take_summaries`.

Everything here is a function of the records' content and order, never of the wall
clock (except the idle timeout, which only decides *when* a stream closes, and
latency figures): a replay of the same records gives the same windows, ids and
verdicts.

Stream lifecycle::

    first frame (seq < open_limit) ─► open ─► frames … ─► EOS released ─┐
                         idle_timeout_s without a frame ─► forced close ─┤
                                        worker shutdown / partition lost ┘
    ─► flush last (padded) window ─► all windows inferred ─► summary ─► tombstone
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from stream.audio.convert import payload_to_float32
from stream.audio.resample import StreamResampler
from stream.errors import ConfigError, FrameError, InputError, SequenceError
from stream.events import (
    LabelEvent,
    ModelRef,
    RejectedRecord,
    SpeakerEvent,
    SummaryEvent,
    WindowSpan,
    event_id,
    thresholded,
    top_k,
)
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.features.windows import Window
from stream.sequencing import Released, Sequencer
from stream.settings import SequencingPolicy
from stream.summary import SpeakerVerdict, SummaryBuilder
from stream.wire import AudioFrame, Encoding, decode_frame

if TYPE_CHECKING:  # stream.speakers pulls in scikit-learn: imported only when used
    from stream.speakers.scoring import SpeakerScorer
    from stream.speakers.tracker import SpeakerDecision, SpeakerTracker, TrackerConfig

log = logging.getLogger(__name__)

Float32 = npt.NDArray[np.float32]

_TOMBSTONES_KEPT = 100_000


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, as the pipeline sees it."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class PipelinePolicy:
    """The per-worker stream policy.

    Attributes
    ----------
    sequencing: reorder window and gap limit.
    idle_timeout_s: close a stream with no frame for this long.
    max_streams: open streams at most; a new stream past it is refused
        (its frames are dead-lettered with reason ``stream_limit``).
    top_k: labels listed in each label event.
    """

    sequencing: SequencingPolicy = field(default_factory=SequencingPolicy)
    idle_timeout_s: float = 30.0
    max_streams: int = 10_000
    top_k: int = 3

    @property
    def open_limit(self) -> int:
        """A stream may start with any seq below this (its first frames reordered or lost)."""
        return self.sequencing.reorder_frames + self.sequencing.max_gap_frames + 1


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
    speech_label: the label model's label for speech. Windows whose top label is
        another one (silence, music, tones) are neither embedded nor tracked. A label
        model without it gates nothing: every window counts as speech.
    """

    model: ModelRef
    scorer: Callable[[], SpeakerScorer]
    tracker: TrackerConfig | None = None
    speech_label: str = "speech"


@dataclass(slots=True)
class WindowJob:
    """A window waiting for inference, with what its events need."""

    window: Window
    partition: int
    span: WindowSpan
    gap: bool
    ready_s: float  # time.monotonic() when the window became complete
    incarnation: int = 0  # which opening of the stream (a revoked stream may come back)
    aux_features: npt.NDArray[np.float32] | None = None  # same window, aux FeatureSpec


@dataclass(slots=True)
class Step:
    """What one record (or one idle check) produced."""

    jobs: list[WindowJob] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    opened: list[tuple[str, int, int]] = field(default_factory=list)  # stream, partition, offset

    def extend(self, other: Step) -> None:
        self.jobs.extend(other.jobs)
        self.rejected.extend(other.rejected)
        self.opened.extend(other.opened)


@dataclass(slots=True)
class _Stream:
    stream_id: str
    partition: int
    first_offset: int
    sequencer: Sequencer[tuple[Record, AudioFrame]]
    sample_rate: int
    encoding: Encoding
    channels: int
    resampler: StreamResampler
    summary: SummaryBuilder
    last_seen_s: float
    position: int = 0  # samples at spec.sr handed to the frontend (gaps included)
    pending: list[Float32] = field(default_factory=list)  # resampled, not yet pushed
    origin_us: int | None = None  # capture time of stream sample 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # zero-filled [start, end)
    outstanding: int = 0  # windows submitted, not yet completed
    rejected: int = 0
    closed_by: str | None = None
    incarnation: int = 0
    tracker: SpeakerTracker | None = None  # with a SpeakerStage


class Pipeline:
    """All open streams of one worker.

    Parameters
    ----------
    spec: the model's FeatureSpec (the frontend computes it).
    model: name and version, for event ids.
    labels: one per probabilities column.
    frontend: the streaming feature bank (one for all streams).
    policy: sequencing, idle timeout, stream cap, top-k.
    clock: monotonic seconds (tests pass a fake one).
    aux_frontend: a second feature bank (e.g. the speaker model's FeatureSpec) fed
        the same samples; its windows must align with the main ones (same rate,
        framing and window timing), and ride along in ``WindowJob.aux_features``.
    speakers: speaker tracking (see :meth:`complete_speakers`); ``None``: off.
    thresholds: a multi-label model's per-tag thresholds (its manifest's): label events
        then carry ``tags`` and summaries the track's tags; ``None``: single-label.
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
        self.model = model
        self.labels = tuple(labels)
        self.thresholds = None if thresholds is None else tuple(float(t) for t in thresholds)
        if self.thresholds is not None and len(self.thresholds) != len(self.labels):
            raise ConfigError(
                f"{len(self.thresholds)} thresholds for {len(self.labels)} labels of "
                f"{model.tag}: a multi-label model needs one per label"
            )
        self.frontend = frontend
        self.aux_frontend = aux_frontend
        if aux_frontend is not None:
            check_aligned(spec, aux_frontend.spec)
        self.policy = policy
        self.clock = clock
        self.hop_samples = spec.hop_frames * spec.hop_length
        self._streams: dict[str, _Stream] = {}
        self._done: OrderedDict[str, int | None] = OrderedDict()  # stream → eos seq
        self._refused: OrderedDict[str, int | None] = OrderedDict()
        self.late_duplicates = 0  # duplicates of ended streams, dropped
        self._closing: list[str] = []
        self._dirty: dict[str, _Stream] = {}  # streams with pending samples, in order
        self._incarnations = itertools.count(1)
        self.speakers: SpeakerStage | None = None
        self._speech_column: int | None = None
        if speakers is not None:
            self.track_speakers(speakers)

    def track_speakers(self, stage: SpeakerStage) -> None:
        """Turn speaker tracking on (before the first record: open streams keep none)."""
        self.speakers = stage
        gate = stage.speech_label
        self._speech_column = self.labels.index(gate) if gate in self.labels else None
        if self._speech_column is None:
            log.warning(
                "label model %s has no %r label: every window counts as speech for speakers",
                self.model.tag,
                gate,
            )

    # -- queries ----------------------------------------------------------------------
    @property
    def active_streams(self) -> int:
        return len(self._streams)

    def stream_partition(self, stream_id: str) -> int | None:
        state = self._streams.get(stream_id)
        return None if state is None else state.partition

    def first_offset(self, stream_id: str) -> int | None:
        state = self._streams.get(stream_id)
        return None if state is None else state.first_offset

    # -- records ----------------------------------------------------------------------
    def accept(self, record: Record) -> Step:
        """Take one audio-topic record; never raises for bad input (it becomes a dead
        letter in the returned step)."""
        return self.accept_many([record])

    def accept_many(self, records: Iterable[Record]) -> Step:
        """Take records in consumption order, with one feature-kernel call for all.

        The samples each record releases are queued per stream and pushed to the
        ``FeatureBank`` together at the end (or before a stream's reset/flush), which
        computes the same features as record-by-record pushes (the frontend is
        chunk-invariant) at a fraction of the cost.
        """
        step = Step()
        for record in records:
            try:
                frame = decode_frame(record.key, record.value, record.headers)
                self._route(record, frame, step)
            except InputError as exc:
                exc.locate(partition=record.partition, offset=record.offset)
                step.rejected.append(_rejected(record, exc))
                state = self._streams.get(exc.stream_id or "")
                if state is not None:
                    state.rejected += 1
                log.info("rejected record: %s (reason %s)", exc, exc.reason)
        self._drain(step)
        return step

    def _route(self, record: Record, frame: AudioFrame, step: Step) -> None:
        sid = frame.stream_id
        state = self._streams.get(sid)
        if state is None:
            if self._is_late_duplicate(frame):
                self.late_duplicates += 1
                return
            self._check_new(frame)
            state = self._open(record, frame)
            step.opened.append((sid, record.partition, record.offset))
        self._check_format(state, frame)
        state.last_seen_s = self.clock()
        released = state.sequencer.push(frame.seq, (record, frame), eos=frame.eos)
        self._feed(state, released, step)
        if state.sequencer.finished:
            self._close(state, "eos", step)

    def _is_late_duplicate(self, frame: AudioFrame) -> bool:
        """A frame of a stream that already ended, repeating one before its EOS."""
        eos_seq = self._done.get(frame.stream_id)
        return eos_seq is not None and frame.seq <= eos_seq

    def _check_new(self, frame: AudioFrame) -> None:
        sid, seq = frame.stream_id, frame.seq
        if sid in self._done:
            eos_seq = self._done[sid]
            raise SequenceError(
                "stream_closed",
                "frame arrived for a stream that was already closed"
                + (f" at eos seq {eos_seq}" if eos_seq is not None else " (idle timeout)"),
                stream_id=sid,
                seq=seq,
            )
        if sid in self._refused:
            raise SequenceError(
                "stream_limit",
                f"stream was refused: the worker held {self.policy.max_streams} open streams "
                "when it started",
                stream_id=sid,
                seq=seq,
            )
        if len(self._streams) >= self.policy.max_streams:
            _remember(self._refused, sid, None)
            raise SequenceError(
                "stream_limit",
                f"worker already holds max_streams={self.policy.max_streams} open streams",
                stream_id=sid,
                seq=seq,
            )
        if seq >= self.policy.open_limit:
            raise SequenceError(
                "no_stream_start",
                f"first frame seen has seq {seq}; a stream must start below seq "
                f"{self.policy.open_limit} (its start was never seen by this worker)",
                stream_id=sid,
                seq=seq,
            )

    def _open(self, record: Record, frame: AudioFrame) -> _Stream:
        sid = frame.stream_id
        state = _Stream(
            stream_id=sid,
            partition=record.partition,
            first_offset=record.offset,
            sequencer=Sequencer(sid, self.policy.sequencing),
            sample_rate=frame.sample_rate,
            encoding=frame.encoding,
            channels=frame.channels,
            resampler=StreamResampler(frame.sample_rate, self.spec.sr),
            summary=SummaryBuilder(sid, self.model, self.labels, self.thresholds),
            last_seen_s=self.clock(),
            incarnation=next(self._incarnations),
        )
        if self.speakers is not None:
            state.tracker = _new_tracker(sid, self.speakers.tracker)
        self._streams[sid] = state
        log.debug("stream %r opened (partition %d offset %d)", sid, record.partition, record.offset)
        return state

    def _check_format(self, state: _Stream, frame: AudioFrame) -> None:
        got = (frame.sample_rate, frame.encoding, frame.channels)
        want = (state.sample_rate, state.encoding, state.channels)
        if got != want:
            raise FrameError(
                "format_changed",
                f"frame is {got[0]} Hz {got[1].value} × {got[2]} but the stream started as "
                f"{want[0]} Hz {want[1].value} × {want[2]}",
                stream_id=frame.stream_id,
                seq=frame.seq,
            )

    # -- audio → windows ------------------------------------------------------------------
    def _feed(
        self, state: _Stream, released: Iterable[Released[tuple[Record, AudioFrame]]], step: Step
    ) -> None:
        for rel in released:
            _, frame = rel.item
            if state.origin_us is None:
                lead = rel.seq * frame.n_samples / frame.sample_rate
                state.origin_us = frame.capture_us - round(lead * 1e6)
            if rel.reset:
                self._reset(state, rel.gap_frames * frame.n_samples, step)
            elif rel.gap_frames:
                zeros = np.zeros(rel.gap_frames * frame.n_samples, dtype=np.float32)
                start = state.position
                self._push(state, zeros, step)
                state.gaps.append((start, state.position))
            samples = payload_to_float32(frame.payload, frame.encoding, frame.channels)
            self._push(state, samples, step, last=rel.eos)

    def _push(self, state: _Stream, samples: Float32, step: Step, *, last: bool = False) -> None:
        """Resample now (cheap, per stream); queue the samples for the next drain."""
        y = state.resampler.process(samples, last=last)
        state.position += len(y)
        if len(y):
            state.pending.append(y)
            self._dirty[state.stream_id] = state

    def _drain(self, step: Step, only: _Stream | None = None) -> None:
        """Push queued samples to the frontend: all streams at once, or one stream
        (before its reset or flush, which must see every sample before them)."""
        states = [only] if only is not None else list(self._dirty.values())
        chunks: dict[str, Float32] = {}
        for state in states:
            if state.pending:
                parts = state.pending
                chunks[state.stream_id] = parts[0] if len(parts) == 1 else np.concatenate(parts)
                state.pending = []
            self._dirty.pop(state.stream_id, None)
        if not chunks:
            return
        result = self.frontend.push(chunks)
        for sid, error in result.rejects.items():
            log.error("stream %r: the feature frontend refused samples: %s", sid, error)
        aux = self.aux_frontend.push(chunks).windows if self.aux_frontend is not None else []
        by_stream: dict[str, list[Window]] = {}
        for window in result.windows:
            by_stream.setdefault(window.stream_id, []).append(window)
        for sid, windows in by_stream.items():
            self._submit(self._streams[sid], windows, step, aux)

    def _reset(self, state: _Stream, gap_in_samples: int, step: Step) -> None:
        """A gap too long to zero-fill: finish the segment before it, restart features
        after it. The frontend keeps sample offsets and window indices true to the
        stream (``FeatureBank.reset(at_sample=...)``), so ids stay unique."""
        self._push(state, np.zeros(0, dtype=np.float32), step, last=True)
        self._drain(step, only=state)
        resume = state.position + math.ceil(gap_in_samples * self.spec.sr / state.sample_rate)
        aux = (
            self.aux_frontend.reset(state.stream_id, at_sample=resume)
            if self.aux_frontend is not None
            else []
        )
        self._submit(state, self.frontend.reset(state.stream_id, at_sample=resume), step, aux)
        state.gaps.append((state.position, resume))
        state.position = resume
        state.resampler = StreamResampler(state.sample_rate, self.spec.sr)

    def _submit(
        self, state: _Stream, windows: list[Window], step: Step, aux: list[Window] | None = None
    ) -> None:
        now = self.clock()
        aux_by_index = {w.index: w.features for w in aux or () if w.stream_id == state.stream_id}
        for w in windows:
            index, start, end = w.index, w.start_sample, w.end_sample
            capture_s = None
            if state.origin_us is not None:
                capture_s = (state.origin_us + end * 1e6 / self.spec.sr) / 1e6
            span = WindowSpan(index, start, end, self.spec.sr, capture_s)
            gap = any(a < end and start < b for a, b in state.gaps)
            job = WindowJob(w, state.partition, span, gap, now, state.incarnation)
            job.aux_features = aux_by_index.get(w.index)
            step.jobs.append(job)
            state.outstanding += 1

    # -- closing ------------------------------------------------------------------------
    def _close(self, state: _Stream, closed_by: str, step: Step) -> None:
        if state.closed_by is not None:
            return
        self._feed(state, state.sequencer.flush(), step)
        if not state.sequencer.finished:  # an EOS frame already flushed the resampler
            self._push(state, np.zeros(0, dtype=np.float32), step, last=True)
        self._drain(step, only=state)
        aux = self.aux_frontend.flush(state.stream_id) if self.aux_frontend is not None else []
        self._submit(state, self.frontend.flush(state.stream_id), step, aux)
        self._close_banks(state.stream_id)
        state.closed_by = closed_by
        self._closing.append(state.stream_id)
        log.debug("stream %r closing (%s)", state.stream_id, closed_by)

    def _close_banks(self, stream_id: str) -> None:
        self.frontend.close(stream_id)
        if self.aux_frontend is not None:
            self.aux_frontend.close(stream_id)

    def expire(self) -> Step:
        """Close streams idle for longer than ``idle_timeout_s``."""
        step = Step()
        deadline = self.clock() - self.policy.idle_timeout_s
        for state in list(self._streams.values()):
            if state.closed_by is None and state.last_seen_s < deadline:
                self._close(state, "idle", step)
        return step

    def close_all(self, closed_by: str = "shutdown") -> Step:
        step = Step()
        for state in list(self._streams.values()):
            self._close(state, closed_by, step)
        return step

    def drop_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Forget the streams of revoked partitions (their new owner replays them)."""
        lost = set(partitions)
        dropped = [sid for sid, s in self._streams.items() if s.partition in lost]
        for sid in dropped:
            del self._streams[sid]
            self._dirty.pop(sid, None)
            self._close_banks(sid)
        self._closing = [sid for sid in self._closing if sid in self._streams]
        return dropped

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
        from ``self.model``); default ``self.model``. With ``thresholds`` (multi-label)
        each event carries its ``tags``. Each window's probabilities go to its stream's
        summary, folded in window order once the stream has no window in flight.
        """
        now = self.clock()
        out: list[LabelEvent] = []
        k = self.policy.top_k
        scored_by = model or self.model
        tag = scored_by.tag
        cuts = self.thresholds
        for job, row in zip(jobs, probabilities, strict=True):
            sid = job.window.stream_id
            scores = row.tolist()
            best = top_k(self.labels, scores, k)
            label, score = best[0]
            out.append(
                LabelEvent(
                    event_id=event_id(sid, job.span.index, "label", tag),
                    stream_id=sid,
                    span=job.span,
                    label=label,
                    score=score,
                    top_k=best,
                    model=scored_by,
                    gap=job.gap,
                    padded=job.window.padded,
                    latency_ms=(now - job.ready_s) * 1000.0,
                    tags=None if cuts is None else thresholded(self.labels, scores, cuts),
                )
            )
            state = self._streams.get(sid)
            if state is not None and state.incarnation == job.incarnation:
                state.outstanding -= 1
                span = job.span
                state.summary.add_window(span.index, span.start_s, span.end_s, scores)
                if state.outstanding == 0:
                    state.summary.settle()
        return out

    def speech_mask(self, probabilities: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        """Which inferred windows carry speech worth a speaker embedding.

        The label model's top label must be the stage's ``speech_label``: silence,
        hold music and tones carry no voice and would drag the span average towards
        whoever they happen to resemble. All ``False`` without speaker tracking.
        """
        n = probabilities.shape[0]
        if self.speakers is None:
            return np.zeros(n, dtype=bool)
        if self._speech_column is None:
            return np.ones(n, dtype=bool)
        mask: npt.NDArray[np.bool_] = np.argmax(probabilities, axis=1) == self._speech_column
        return mask

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
        stage = self.speakers
        if stage is None:
            return []
        items: list[tuple[SpeakerTracker, npt.NDArray[np.float32], int, int, bool]] = []
        owners: list[WindowJob] = []
        for job, emb in zip(jobs, embeddings, strict=True):
            state = self._streams.get(job.window.stream_id)
            if emb is None or state is None or state.tracker is None:
                continue
            if state.incarnation != job.incarnation:
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
        now = self.clock()
        out: list[SpeakerEvent] = []
        for job, (tracker, *_), decision in zip(owners, items, decisions, strict=True):
            if decision is not None:
                previous = current[id(tracker)]
                out.append(self._speaker_event(job, decision, previous, now, registry))
                current[id(tracker)] = decision.speaker
        return out

    def _speaker_event(
        self,
        job: WindowJob,
        decision: SpeakerDecision,
        previous: str | None,
        now: float,
        registry: str = "",
    ) -> SpeakerEvent:
        assert self.speakers is not None
        model = self.speakers.model
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
                decision.stream_id, job.span.index, "speaker", f"{model.tag}#{registry}"
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
        )

    def take_summaries(self) -> list[tuple[int, SummaryEvent]]:
        """Summaries of closed streams whose windows are all inferred, with partitions.

        The streams are forgotten (tombstoned) here; their pins are the caller's to
        release once the summary is delivered.
        """
        ready = [sid for sid in self._closing if self._streams[sid].outstanding == 0]
        out: list[tuple[int, SummaryEvent]] = []
        for sid in ready:
            state = self._streams.pop(sid)
            self._closing.remove(sid)
            _remember(self._done, sid, state.sequencer.eos_seq)
            out.append((state.partition, self._summary(state)))
        return out

    def _summary(self, state: _Stream) -> SummaryEvent:
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
        if state.tracker is not None and self.speakers is not None:
            final = state.tracker.final(self.speakers.scorer())
            state.summary.set_speaker(
                SpeakerVerdict(
                    final.speaker, final.score, final.margin, final.runner_up, final.windows
                )
            )
        return state.summary.build(
            closed_by=state.closed_by or "eos",
            duration_s=state.position / self.spec.sr,
            counts=counts,
        )


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


def _new_tracker(stream_id: str, config: TrackerConfig | None) -> SpeakerTracker:
    from stream.speakers.tracker import DEFAULT_TRACKER, SpeakerTracker

    return SpeakerTracker(stream_id, config=config or DEFAULT_TRACKER)


def _remember(lru: OrderedDict[str, int | None], key: str, value: int | None) -> None:
    lru[key] = value
    lru.move_to_end(key)
    while len(lru) > _TOMBSTONES_KEPT:
        lru.popitem(last=False)


def _rejected(record: Record, exc: InputError) -> RejectedRecord:
    stream_id = exc.stream_id
    if stream_id is None and record.key is not None:
        stream_id = record.key.decode("utf-8", "replace")
    return RejectedRecord(
        stream_id=stream_id,
        reason=exc.reason,
        message=str(exc),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        headers=record.headers,
        payload=record.value or b"",
        seq=exc.seq,
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
