"""The worker's domain core, synchronous and Faust-free: records in, jobs and events out.

:class:`Pipeline` owns every open stream's state: its :class:`~stream.sequencing.Sequencer`,
its resampler, its place in the feature frontend, its summary. The Faust layer
(``stream.worker.runtime``) feeds it Kafka records and gets back a :class:`Step`:

* ``rejected``: dead letters to send (bad frames, late frames, bounds exceeded);
* ``jobs``: model windows to batch for inference (:class:`WindowJob`);
* ``opened``: segments this record started (:class:`Opened`: the caller pins their
  first offset under ``Opened.pin`` and releases it when the summary whose
  ``event_id`` equals that pin is delivered);

then hands inference results back to :meth:`Pipeline.complete`, which makes the
label events (and, with a :class:`SpeakerStage`, the speech windows' embeddings to
:meth:`Pipeline.complete_speakers`, which advances each stream's speaker tracker
and makes speaker events at decision points only), and collects the summaries of
closed segments whose windows are all done with :meth:`Pipeline.take_summaries`.

Everything here is a function of the records (content, order and Kafka timestamp),
never of the wall clock: a replay of the same records gives the same windows, ids
and verdicts. The clock serves latency figures and one fallback: a partition that
went quiet closes its idle streams by wall clock, which closes them with the same
content a replay would give (see docs/delivery.md, "Deterministic closing").

A stream is cut into *segments*. A segment opens at the first record of a stream
this worker sees (or the first after the previous segment closed). Its window
events hash ``(stream id, seq of its first released frame)`` and its summary
``(stream id, seq of its first record)``, or the stream id alone for a stream's start
(:func:`segment_key`): for a stream seen from seq 0 both are the stream id alone, as
they always were, whatever order its first frames arrive in. So a replay that
starts in the middle of an already finished segment makes events under other ids,
never other content under the same id.

Segment lifecycle::

    first frame ─► open ─► frames … ─► EOS released ──────────────────────► "eos"
                 Kafka time passes last frame + idle_timeout_s ───────────► "idle"
                 audio (gaps included) reaches max_segment_s ─────────────► "rolled"
                 max_streams open and a new stream arrives, longest silent ► "evicted"
                 an unexpected exception while handling its record ───────► "internal_error"
                 worker shutdown / partition lost ─────────────────────────► "shutdown"
    ─► flush last (padded) window ─► all windows inferred ─► summary ─► remembered

A frame of a stream closed otherwise than by EOS opens the next segment.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from stream.audio.convert import g711_to_float32, payload_to_float32, pcm_s16le_to_float32
from stream.audio.resample import StreamResampler, process_many
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
from stream.roles import SPEECH_LABEL
from stream.sequencing import Released, Sequencer
from stream.settings import PipelinePolicy
from stream.summary import SpeakerVerdict, SummaryBuilder
from stream.types import Float32
from stream.wire import AudioFrame, Encoding, decode_frame

if TYPE_CHECKING:  # stream.speakers pulls in scikit-learn: imported only when used
    from stream.speakers.scoring import SpeakerScorer
    from stream.speakers.tracker import SpeakerDecision, SpeakerTracker, TrackerConfig

log = logging.getLogger(__name__)


_TOMBSTONES_KEPT = 100_000
# at capacity, streams with fewer frames than this are closed first (a flood of
# one-frame streams), before any stream that has proven to be a real call
EVICT_UNPROVEN_FRAMES = 4
# models whose thresholds are kept after a swap: a batch scored by the old one may still
# complete after it (one swap per batch at most; a few more for swaps in quick succession)
_MODELS_KEPT = 8
_SEGMENT_SEP = "\x1e"  # stream id / first seq, inside event-id hashes only
_G711 = (Encoding.MULAW, Encoding.ALAW)
_NO_SAMPLES = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, as the pipeline sees it.

    ``timestamp_ms``: the record's Kafka timestamp (``None`` or negative: unknown);
    idle streams are closed by it, not by the wall clock.
    """

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


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
    speech_label: str = SPEECH_LABEL


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


class Opened(NamedTuple):
    """A segment that a record opened: pin ``offset`` of ``partition`` under ``pin``
    until the summary with ``event_id == pin`` is delivered."""

    stream_id: str
    partition: int
    offset: int
    pin: str


@dataclass(slots=True)
class Step:
    """What one record (or one idle check) produced."""

    jobs: list[WindowJob] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    opened: list[Opened] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.jobs.extend(other.jobs)
        self.rejected.extend(other.rejected)
        self.opened.extend(other.opened)


def segment_key(stream_id: str, first_seq: int) -> str:
    """What the event ids of a segment hash in place of the stream id.

    The stream id itself for a segment opened by seq 0 (a stream seen from its
    start), so streams that are never cut keep the ids they always had.
    """
    return stream_id if first_seq == 0 else f"{stream_id}{_SEGMENT_SEP}{first_seq}"


@dataclass(slots=True)
class _Stream:
    """One open (or closing) segment of a stream."""

    stream_id: str
    partition: int
    first_offset: int
    key: str  # segment_key() of the first released frame: what window event ids hash
    sequencer: Sequencer[tuple[Record, AudioFrame]]
    sample_rate: int
    encoding: Encoding
    channels: int
    resampler: StreamResampler
    summary: SummaryBuilder
    last_seen_s: float  # clock: only for the quiet-partition fallback
    last_ms: int | None = None  # Kafka timestamp of the last record
    position: int = 0  # samples at spec.sr handed to the frontend (gaps included)
    frame_samples: int | None = None  # n_samples of the last released frame: a gap's unit
    # resampled samples not yet pushed; for a raw_pcm stream, its frames' payloads
    pending: list[Float32 | bytes] = field(default_factory=list)
    raw_pcm: bool = False  # mono pcm_s16le at spec.sr: decoded at the drain (_chunks)
    # mono G.711 through the low-delay resampler (or none): its frames' payloads and gap
    # zeros wait here at the input rate, to be decoded and resampled at the drain
    # (_resample_deferred); ``owed`` is their output (``resampler.output_size`` of
    # ``deferred_in``), already counted in ``position``
    deferred: list[Float32 | bytes] | None = None
    deferred_in: int = 0  # input samples in ``deferred``
    owed: int = 0
    flush: bool = False  # the resampler's last chunk is in ``deferred``
    origin_us: int | None = None  # capture time of segment sample 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # zero-filled [start, end)
    outstanding: int = 0  # windows submitted, not yet completed
    rejected: int = 0
    closed_by: str | None = None
    incarnation: int = 0
    ended: bool = False  # the resampler had its last chunk
    tracker: SpeakerTracker | None = None  # with a SpeakerStage
    attributes: tuple[tuple[str, str], ...] = ()  # attr-* headers of its opening frame

    @property
    def pin(self) -> str:
        """The id of this segment's summary: the pin the runtime holds for it."""
        return self.summary.event_id


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
        self.model = model
        self.labels = tuple(labels)
        self.thresholds = self._checked(model, thresholds)
        # thresholds of the models that may have scored a window still to complete
        self._cuts: OrderedDict[ModelRef, tuple[float, ...] | None] = OrderedDict(
            [(model, self.thresholds)]
        )
        self.frontend = frontend
        self.aux_frontend = aux_frontend
        if aux_frontend is not None:
            check_aligned(spec, aux_frontend.spec)
        self.policy = policy
        self.clock = clock
        self.hop_samples = spec.hop_frames * spec.hop_length
        self._idle_ms = round(policy.idle_timeout_s * 1000)
        self._segment_samples = round(policy.limits.max_segment_s * spec.sr)
        # open segments, least recently fed first (the eviction order)
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._closing: dict[int, _Stream] = {}  # incarnation → closed, windows out
        # stream → (eos seq or None, last seq) of its last closed segment
        self._done: OrderedDict[str, tuple[int | None, int]] = OrderedDict()
        self._deadlines: dict[int, list[tuple[int, int, str, int]]] = {}  # partition → heap
        self._partition_seen_s: dict[int, float] = {}
        self._dirty: dict[str, _Stream] = {}  # streams with pending samples, in order
        self._incarnations = itertools.count(1)
        self.speakers: SpeakerStage | None = None
        self._speech_column: int | None = None
        if speakers is not None:
            self.track_speakers(speakers)

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
        """A hot swap: ``model`` scores from now on, with its manifest's ``thresholds``.

        Segments opened from now on name ``model`` in their summaries. Windows are
        thresholded with the thresholds of the model :meth:`complete` is told scored
        them, so a batch the previous model scored keeps its thresholds after the swap.

        Raises
        ------
        ConfigError
            ``thresholds`` do not fit the labels, or the task changes (single-label to
            multi-label or back): open segments' verdicts could not be folded on
            (``stream.worker.reload.prepare`` refuses such a model before the swap).
        """
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
        """The partition of the stream's open or closing segment (``None``: neither)."""
        state = self._streams.get(stream_id)
        if state is not None:
            return state.partition
        for closing in self._closing.values():
            if closing.stream_id == stream_id:
                return closing.partition
        return None

    def first_offset(self, stream_id: str) -> int | None:
        """The first offset of the stream's open segment."""
        state = self._streams.get(stream_id)
        return None if state is None else state.first_offset

    def origin(self, stream_id: str, job: WindowJob | None = None) -> tuple[int, int] | None:
        """Partition and first offset of the segment ``job`` was cut from, else of the
        stream's open segment, else of one of its closing segments (``None``: gone)."""
        state = self._segment(job) if job is not None else None
        state = state or self._streams.get(stream_id)
        if state is None:
            state = next((s for s in self._closing.values() if s.stream_id == stream_id), None)
        return None if state is None else (state.partition, state.first_offset)

    def held_frames(self) -> int:
        """Frames held for reordering in all open segments (memory bound checks)."""
        return sum(s.sequencer.held for s in self._streams.values())

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

        Nothing a record holds escapes as an exception: an :class:`InputError` is a
        dead letter with its reason; any other exception is a dead letter
        ``internal_error`` naming it, and the stream it hit is closed with a summary
        (its state may be corrupt), while other streams go on.
        """
        step = Step()
        last_of: dict[str, Record] = {}
        for record in records:
            sid: str | None = None
            try:
                frame = decode_frame(record.key, record.value, record.headers)
                sid = frame.stream_id
                last_of[sid] = record
                self._close_idle(record, step)
                self._route(record, frame, step)
            except InputError as exc:
                exc.locate(partition=record.partition, offset=record.offset)
                step.rejected.append(_rejected(record, exc))
                state = self._streams.get(exc.stream_id or "")
                if state is not None:
                    state.rejected += 1
                log.info("rejected record: %s (reason %s)", exc, exc.reason)
            except Exception as exc:  # a bug hit by this record: contain it
                self._contain(record, sid, exc, step)
        self._drain_contained(step, last_of)
        return step

    def _contain(self, record: Record, sid: str | None, exc: Exception, step: Step) -> None:
        """Dead-letter ``record`` as ``internal_error`` and close the stream it hit."""
        log.exception(
            "internal error on partition %d offset %d (stream %r); stream closed",
            record.partition,
            record.offset,
            sid,
        )
        error = InputError(
            "internal_error",
            f"unexpected {type(exc).__name__} while handling the record: {exc}"[:1000],
            stream_id=sid,
            partition=record.partition,
            offset=record.offset,
        )
        step.rejected.append(_rejected(record, error))
        state = self._streams.get(sid) if sid is not None else None
        if state is not None:
            state.rejected += 1
            self._close_safely(state, "internal_error", step)

    def _drain_contained(self, step: Step, last_of: dict[str, Record]) -> None:
        """:meth:`_drain` for all streams; when it fails, stream by stream, closing
        (and dead-lettering the last record of) each stream that still fails."""
        try:
            self._drain(step)
            return
        except Exception:
            log.exception("feature push failed for a batch; retrying stream by stream")
        for state in list(self._dirty.values()):
            try:
                self._drain(step, only=state)
            except Exception as exc:
                _discard(state)
                self._dirty.pop(state.stream_id, None)
                record = last_of.get(state.stream_id)
                if record is not None:
                    self._contain(record, state.stream_id, exc, step)

    def _route(self, record: Record, frame: AudioFrame, step: Step) -> None:
        sid = frame.stream_id
        self._check_limits(frame)
        state = self._streams.get(sid)
        if state is None:
            if not self._admit(frame):
                return
            state = self._open(record, frame, step)
        self._check_format(state, frame)
        state.last_seen_s = self.clock()
        self._streams.move_to_end(sid)
        released = state.sequencer.push(frame.seq, (record, frame), eos=frame.eos)
        self._touch(state, record)
        self._reject_evicted(state, step)
        self._feed(state, released, step)
        if state.sequencer.finished:
            self._close(state, "eos", step)
        elif state.position >= self._segment_samples:
            self._close(state, "rolled", step)

    def _check_limits(self, frame: AudioFrame) -> None:
        limits = self.policy.limits
        size = len(frame.payload)
        if size > limits.max_frame_bytes:
            raise FrameError(
                "frame_too_large",
                f"payload of {size} bytes is above max_frame_bytes={limits.max_frame_bytes}",
                stream_id=frame.stream_id,
                seq=frame.seq,
            )
        if frame.duration_s * 1000 > limits.max_frame_ms:
            raise FrameError(
                "frame_too_long",
                f"frame holds {frame.duration_s * 1000:.1f} ms of audio, above "
                f"max_frame_ms={limits.max_frame_ms:g}",
                stream_id=frame.stream_id,
                seq=frame.seq,
            )

    def _admit(self, frame: AudioFrame) -> bool:
        """May ``frame`` open a segment? ``False``: drop it silently (a repeat of a
        stream that ended); raises for a frame a closed segment already passed."""
        sid, seq = frame.stream_id, frame.seq
        ended = self._done.get(sid)
        if ended is None:
            return True
        eos_seq, last_seq = ended
        if eos_seq is not None:
            if seq <= eos_seq:
                return False  # a repeat of a frame before the stream's end
            raise SequenceError(
                "after_eos",
                f"frame arrived after the stream ended at eos seq {eos_seq}",
                stream_id=sid,
                seq=seq,
            )
        if seq <= last_seq:
            raise SequenceError(
                "late_frame",
                f"frame arrived after its segment closed (last seq {last_seq}); the stream "
                "goes on as a new segment from a later seq",
                stream_id=sid,
                seq=seq,
            )
        return True

    def _open(self, record: Record, frame: AudioFrame, step: Step) -> _Stream:
        sid = frame.stream_id
        if len(self._streams) >= self.policy.max_streams:
            self._evict(step)
        start = 0 if frame.seq < self.policy.open_limit else frame.seq
        # the summary's id (and the pin) must be known now: a stream's start keeps the
        # stream id whatever order its first frames came in; a resumed stream does not
        ended = self._done.get(sid)
        resumed = ended is not None and ended[0] is None
        key = segment_key(sid, frame.seq if start or resumed else 0)
        state = _Stream(
            stream_id=sid,
            partition=record.partition,
            first_offset=record.offset,
            key=key,
            sequencer=Sequencer(
                sid,
                self.policy.sequencing,
                first_seq=start,
                max_seq_jump=self.policy.limits.max_seq_jump,
            ),
            sample_rate=frame.sample_rate,
            encoding=frame.encoding,
            channels=frame.channels,
            resampler=StreamResampler(frame.sample_rate, self.spec.sr),
            summary=SummaryBuilder(sid, self.model, self.labels, self.thresholds, id_key=key),
            last_seen_s=self.clock(),
            incarnation=next(self._incarnations),
            attributes=frame.attributes,
        )
        state.raw_pcm = (
            state.resampler.passthrough
            and frame.encoding is Encoding.PCM_S16LE
            and frame.channels == 1
        )
        if (
            frame.encoding in _G711
            and frame.channels == 1
            and state.resampler.lookahead is not None
        ):
            state.deferred = []
        if self.speakers is not None:
            state.tracker = _new_tracker(sid, self.speakers.tracker)
        self._streams[sid] = state
        step.opened.append(Opened(sid, record.partition, record.offset, state.pin))
        log.debug(
            "stream %r segment at seq %d opened (partition %d offset %d)",
            sid,
            frame.seq,
            record.partition,
            record.offset,
        )
        return state

    def _evict(self, step: Step) -> None:
        """Make room: close the open segment that has gone longest without a record,
        among those with fewer than ``EVICT_UNPROVEN_FRAMES`` frames if there are any.

        Deterministic from the records' order. A flood of one-frame streams is what
        gets closed: a real call that paused while the flood arrived is passed over
        (it has sent more), and a newcomer is never refused (see docs/delivery.md).
        """
        victim = next(
            (
                s
                for s in self._streams.values()
                if s.sequencer.counts.frames < EVICT_UNPROVEN_FRAMES
            ),
            None,
        ) or next(iter(self._streams.values()))
        log.warning(
            "max_streams=%d reached: closing stream %r (%d frames, the longest without a "
            "record among the %s)",
            self.policy.max_streams,
            victim.stream_id,
            victim.sequencer.counts.frames,
            "streams that barely started"
            if victim.sequencer.counts.frames < EVICT_UNPROVEN_FRAMES
            else "open streams",
        )
        self._close_safely(victim, "evicted", step)

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

    def _reject_evicted(self, state: _Stream, step: Step) -> None:
        """Frames held above an end-of-stream frame that came after them."""
        eos_seq = state.sequencer.eos_seq
        for seq, (record, _) in state.sequencer.take_evicted():
            error = SequenceError(
                "after_eos",
                f"frame is above the end-of-stream frame (seq {eos_seq}) that arrived after it",
                stream_id=state.stream_id,
                seq=seq,
            )
            error.locate(partition=record.partition, offset=record.offset)
            step.rejected.append(_rejected(record, error))
            state.rejected += 1

    # -- idle: decided by the records' Kafka time ------------------------------------------
    def _touch(self, state: _Stream, record: Record) -> None:
        """Note the record's Kafka time on its stream (its idle deadline)."""
        ts = _timestamp(record)
        if ts is None:
            return
        state.last_ms = ts
        heap = self._deadlines.setdefault(state.partition, [])
        heapq.heappush(
            heap, (ts + self._idle_ms, record.offset, state.stream_id, state.incarnation)
        )
        if len(heap) > 4 * len(self._streams) + 64:
            self._compact(state.partition)

    def _compact(self, partition: int) -> None:
        heap = [
            (s.last_ms + self._idle_ms, s.first_offset, sid, s.incarnation)
            for sid, s in self._streams.items()
            if s.partition == partition and s.last_ms is not None
        ]
        heapq.heapify(heap)
        self._deadlines[partition] = heap

    def _close_idle(self, record: Record, step: Step) -> None:
        """Close the streams of the record's partition whose last record is more than
        ``idle_timeout_s`` older (Kafka time) than this one."""
        self._partition_seen_s[record.partition] = self.clock()
        ts = _timestamp(record)
        heap = self._deadlines.get(record.partition)
        if ts is None or not heap:
            return
        while heap and heap[0][0] < ts:
            deadline, _, sid, incarnation = heapq.heappop(heap)
            state = self._streams.get(sid)
            if state is None or state.incarnation != incarnation or state.last_ms is None:
                continue
            if state.last_ms + self._idle_ms == deadline:
                self._close_safely(state, "idle", step)

    def expire(self) -> Step:
        """The wall-clock fallback: close idle streams of partitions that went quiet.

        A stream is closed here when its partition has had no record for
        ``idle_timeout_s`` (so no record's Kafka time can close it), or, for a
        stream whose records carry no timestamp, when it had none for that long.
        """
        step = Step()
        now = self.clock()
        idle = self.policy.idle_timeout_s
        for state in list(self._streams.values()):
            quiet = now - self._partition_seen_s.get(state.partition, state.last_seen_s) > idle
            silent = now - state.last_seen_s > idle
            if silent and (quiet or state.last_ms is None):
                self._close_safely(state, "idle", step)
        return step

    # -- audio → windows ------------------------------------------------------------------
    def _feed(
        self, state: _Stream, released: Iterable[Released[tuple[Record, AudioFrame]]], step: Step
    ) -> None:
        max_gap_s = self.policy.limits.max_gap_s
        for rel in released:
            _, frame = rel.item
            if state.origin_us is None:  # the segment's first released frame names it
                lead = (rel.seq - state.sequencer.first_seq) * frame.n_samples / frame.sample_rate
                state.origin_us = frame.capture_us - round(lead * 1e6)
                state.key = segment_key(state.stream_id, rel.seq)
            # the missing frames are sized like the stream's previous one (RTP may switch
            # from 20 to 30 ms frames: the frame after a gap says nothing about the gap)
            gap_samples = rel.gap_frames * (state.frame_samples or frame.n_samples)
            state.frame_samples = frame.n_samples
            too_long = gap_samples / frame.sample_rate > max_gap_s
            if rel.reset or too_long:
                if not rel.reset:  # the sequencer counts gaps in frames; this one in seconds
                    state.sequencer.counts.resets += 1
                self._reset(state, gap_samples, step)
            elif rel.gap_frames:
                zeros = np.zeros(gap_samples, dtype=np.float32)
                start = state.position
                self._push(state, zeros, step)
                self._note_gap(state, start, state.position)
            if state.raw_pcm:
                self._queue_pcm(state, frame.payload, last=rel.eos)
            elif state.deferred is not None:
                self._defer(state, frame.payload, last=rel.eos)
            else:
                samples = payload_to_float32(frame.payload, frame.encoding, frame.channels)
                self._push(state, samples, step, last=rel.eos)

    def _push(self, state: _Stream, samples: Float32, step: Step, *, last: bool = False) -> None:
        """Resample now (cheap, per stream); queue the samples for the next drain."""
        if state.deferred is not None:
            self._defer(state, samples, last=last)
            return
        y = state.resampler.process(samples, last=last)
        state.ended = state.ended or last
        state.position += len(y)
        if len(y):
            state.pending.append(y)
            self._dirty[state.stream_id] = state

    def _queue_pcm(self, state: _Stream, payload: bytes, *, last: bool) -> None:
        """:meth:`_push` for a ``raw_pcm`` stream: its resampler passes samples through,
        so the payload waits as it is, to be decoded with the others at the drain."""
        if last:
            state.resampler.process(np.zeros(0, dtype=np.float32), last=True)
            state.ended = True
        if payload:
            state.pending.append(payload)
            state.position += len(payload) // 2
            self._dirty[state.stream_id] = state

    def _defer(self, state: _Stream, part: Float32 | bytes, *, last: bool) -> None:
        """:meth:`_push` for a stream with ``deferred`` input: ``part`` (G.711 codes or
        float32 samples) waits at the input rate for :meth:`_resample_deferred`."""
        assert state.deferred is not None
        if len(part):
            state.deferred.append(part)
            state.deferred_in += len(part)
        state.flush = state.flush or last
        owed = state.resampler.output_size(state.deferred_in, last=state.flush)
        state.position += owed - state.owed
        state.owed = owed
        state.ended = state.ended or last
        if len(part) or last:
            self._dirty[state.stream_id] = state

    def _resample_deferred(self, states: Sequence[_Stream]) -> None:
        """Decode and resample the deferred input of ``states``: the payloads of each
        encoding in one table lookup, all streams' filters in one matrix product
        (per record they cost ~12 µs of numpy calls for 2-9 µs of arithmetic)."""
        todo = [s for s in states if s.deferred or s.flush]
        if not todo:
            return
        inputs = _deferred_inputs(todo)
        outs = process_many([s.resampler for s in todo], inputs, last=[s.flush for s in todo])
        for state, y in zip(todo, outs, strict=True):
            state.deferred, state.deferred_in, state.owed, state.flush = [], 0, 0, False
            if len(y):
                state.pending.append(y)

    def _drain(self, step: Step, only: _Stream | None = None) -> None:
        """Push queued samples to the frontend: all streams at once, or one stream
        (before its reset or flush, which must see every sample before them)."""
        states = [only] if only is not None else list(self._dirty.values())
        self._resample_deferred(states)
        chunks = _chunks(states)
        if not chunks:
            for state in states:
                self._dirty.pop(state.stream_id, None)
            return
        result = self.frontend.push(chunks)  # if it raises, the samples stay queued
        for state in states:
            state.pending = []
            self._dirty.pop(state.stream_id, None)
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
        self._note_gap(state, state.position, resume)
        state.position = resume
        state.resampler = StreamResampler(state.sample_rate, self.spec.sr)
        state.ended = False

    def _note_gap(self, state: _Stream, start: int, end: int) -> None:
        """Remember a gap ``[start, end)`` for the windows' ``gap`` flag, forgetting
        those no window still to come can overlap (a stream with a gap every other
        frame would otherwise grow the list, and each window's check, without end)."""
        frontier = state.position - state.owed - sum(_samples(p) for p in state.pending)
        horizon = frontier - 2 * self.spec.window_samples
        state.gaps = [(a, b) for a, b in state.gaps if b > horizon]
        state.gaps.append((start, end))

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
            job = WindowJob(
                w,
                state.partition,
                span,
                gap,
                now,
                state.incarnation,
                attributes=state.attributes,
                key=state.key,
            )
            job.aux_features = aux_by_index.get(w.index)
            step.jobs.append(job)
            state.outstanding += 1

    # -- closing ------------------------------------------------------------------------
    def _close(self, state: _Stream, closed_by: str, step: Step) -> None:
        if state.closed_by is not None:
            return
        self._feed(state, state.sequencer.flush(), step)
        if not state.ended:
            self._push(state, np.zeros(0, dtype=np.float32), step, last=True)
        self._drain(step, only=state)
        aux = self.aux_frontend.flush(state.stream_id) if self.aux_frontend is not None else []
        self._submit(state, self.frontend.flush(state.stream_id), step, aux)
        self._retire(state, closed_by)

    def _close_safely(self, state: _Stream, closed_by: str, step: Step) -> None:
        """:meth:`_close`; if closing itself fails, drop the segment's state without a
        flush (closed as ``internal_error``) so it never fails again."""
        try:
            self._close(state, closed_by, step)
        except Exception:
            log.exception(
                "stream %r: closing (%s) failed; state dropped", state.stream_id, closed_by
            )
            _discard(state)
            self._dirty.pop(state.stream_id, None)
            try:
                self._close_banks(state.stream_id)
            except Exception:
                log.exception("stream %r: closing its feature state failed", state.stream_id)
            self._retire(state, "internal_error")

    def _retire(self, state: _Stream, closed_by: str) -> None:
        """The segment is closed: out of the open set, waiting for its windows."""
        state.closed_by = closed_by
        self._streams.pop(state.stream_id, None)
        self._dirty.pop(state.stream_id, None)
        self._closing[state.incarnation] = state
        seq = state.sequencer
        eos_seq = seq.eos_seq if seq.finished else None
        _remember(self._done, state.stream_id, (eos_seq, seq.next_seq - 1))
        log.debug("stream %r closing (%s)", state.stream_id, closed_by)

    def _close_banks(self, stream_id: str) -> None:
        self.frontend.close(stream_id)
        if self.aux_frontend is not None:
            self.aux_frontend.close(stream_id)

    def close_all(self, closed_by: str = "shutdown") -> Step:
        step = Step()
        for state in list(self._streams.values()):
            self._close_safely(state, closed_by, step)
        return step

    def drop_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Forget the streams of revoked partitions (their new owner replays them)."""
        lost = set(partitions)
        dropped = [sid for sid, s in self._streams.items() if s.partition in lost]
        for sid in dropped:
            del self._streams[sid]
            self._dirty.pop(sid, None)
            self._close_banks(sid)
        closing = [s for s in self._closing.values() if s.partition in lost]
        for state in closing:
            del self._closing[state.incarnation]
        for partition in lost:
            self._deadlines.pop(partition, None)
            self._partition_seen_s.pop(partition, None)
        return dropped + [s.stream_id for s in closing if s.stream_id not in dropped]

    def abandon(self, stream_id: str, closed_by: str = "internal_error") -> bool:
        """Close a stream whose state can no longer be trusted (the runtime caught an
        unexpected exception for it): no flush, windows in flight no longer count,
        and its summary is ready at once (``closed_by``). ``False``: not open here.
        """
        state = self._streams.get(stream_id)
        closing = [s for s in self._closing.values() if s.stream_id == stream_id]
        if state is None and not closing:
            return False
        for segment in closing:  # already closed (EOS, roll): it stops waiting too
            del self._closing[segment.incarnation]
            self._forsake(segment, closed_by)
        if state is not None:
            _discard(state)
            self._dirty.pop(stream_id, None)
            try:
                self._close_banks(stream_id)
            except Exception:  # the banks may be what failed; the stream is closed anyway
                log.exception("stream %r: closing its feature state failed", stream_id)
            self._retire(state, closed_by)
            del self._closing[state.incarnation]
            self._forsake(state, closed_by)
        return True

    def _forsake(self, state: _Stream, closed_by: str) -> None:
        """Re-file a closed segment under a fresh incarnation with nothing outstanding,
        so late results of its windows find nothing and its summary is ready now."""
        state.incarnation = next(self._incarnations)
        state.outstanding = 0
        state.tracker = None  # its speaker state is suspect too: no verdict
        state.closed_by = closed_by  # the summary says why, even after an EOS
        self._closing[state.incarnation] = state

    def skip(self, jobs: Sequence[WindowJob]) -> None:
        """Count windows done without a label event (their model output was unusable,
        see ``docs/delivery.md``): their stream's summary no longer waits for them."""
        for job in jobs:
            state = self._segment(job)
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
        out: list[LabelEvent] = []
        k = self.policy.top_k
        scored_by = model or self.model
        tag = scored_by.tag
        cuts = self._cuts.get(scored_by, self.thresholds)
        for job, scores in zip(jobs, probabilities.tolist(), strict=True):
            sid = job.window.stream_id
            best = top_k(self.labels, scores, k)
            label, score = best[0]
            out.append(
                LabelEvent(
                    event_id=event_id(job.key or sid, job.span.index, "label", tag),
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
                    attributes=job.attributes,
                )
            )
            state = self._segment(job)
            if state is not None:
                state.outstanding -= 1
                span = job.span
                state.summary.add_window(span.index, span.start_s, span.end_s, scores, cuts)
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
            state = self._segment(job)
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
                job.key or decision.stream_id, job.span.index, "speaker", f"{model.tag}#{registry}"
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

    def _segment(self, job: WindowJob) -> _Stream | None:
        """The open or closing segment a job was cut from (``None``: dropped since)."""
        state = self._streams.get(job.window.stream_id)
        if state is not None and state.incarnation == job.incarnation:
            return state
        return self._closing.get(job.incarnation)

    def take_summaries(self) -> list[tuple[int, SummaryEvent]]:
        """Summaries of closed segments whose windows are all inferred, with partitions.

        The segments are forgotten here; their pins (``summary.event_id``) are the
        caller's to release once the summary is delivered.
        """
        ready = [s for s in self._closing.values() if s.outstanding <= 0]
        out: list[tuple[int, SummaryEvent]] = []
        for state in ready:
            del self._closing[state.incarnation]
            out.append((state.partition, self._summary_contained(state)))
        return out

    def _summary_contained(self, state: _Stream) -> SummaryEvent:
        try:
            return self._summary(state)
        except Exception:  # e.g. the speaker scorer: the summary goes out without it
            log.exception("stream %r: summary failed; sent without speaker", state.stream_id)
            state.tracker = None
            state.closed_by = "internal_error"
            return self._summary(state)

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
        summary = state.summary.build(
            closed_by=state.closed_by or "eos",
            duration_s=state.position / self.spec.sr,
            counts=counts,
        )
        if not state.attributes:
            return summary
        return dataclasses.replace(summary, attributes=state.attributes)


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


def _chunks(states: Sequence[_Stream]) -> dict[str, Float32]:
    """Each stream's queued samples as one array, streams in the given order.

    The raw payloads of all of them are joined and decoded in one numpy call (per
    record, :func:`payload_to_float32` cost 2.4 µs of Python and numpy overhead).
    """
    raw = [p for state in states for p in state.pending if isinstance(p, bytes)]
    decoded = pcm_s16le_to_float32(b"".join(raw)) if raw else None
    chunks: dict[str, Float32] = {}
    at = 0
    for state in states:
        parts: list[Float32] = []
        for part in state.pending:
            if isinstance(part, bytes):
                assert decoded is not None
                n = len(part) // 2
                parts.append(decoded[at : at + n])
                at += n
            else:
                parts.append(part)
        if parts:
            chunks[state.stream_id] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return chunks


def _deferred_inputs(states: Sequence[_Stream]) -> list[Float32]:
    """Each stream's deferred input as one float32 array, the G.711 payloads of all
    streams decoded in one lookup per encoding."""
    decoded: dict[Encoding, Float32] = {}
    for enc in _G711:
        raw = [
            p for s in states if s.encoding is enc for p in s.deferred or () if isinstance(p, bytes)
        ]
        if raw:
            decoded[enc] = g711_to_float32(b"".join(raw), enc)
    at = dict.fromkeys(_G711, 0)
    inputs: list[Float32] = []
    for state in states:
        parts: list[Float32] = []
        for part in state.deferred or ():
            if isinstance(part, bytes):
                start = at[state.encoding]
                at[state.encoding] = start + len(part)
                parts.append(decoded[state.encoding][start : start + len(part)])
            else:
                parts.append(part)
        inputs.append(parts[0] if len(parts) == 1 else np.concatenate(parts or [_NO_SAMPLES]))
    return inputs


def _discard(state: _Stream) -> None:
    """Drop the samples a stream has queued (its state is suspect or gone)."""
    state.pending = []
    if state.deferred is not None:
        state.deferred, state.deferred_in, state.owed, state.flush = [], 0, 0, False


def _samples(part: Float32 | bytes) -> int:
    """Samples in a queued part (raw parts are mono pcm_s16le)."""
    return len(part) // 2 if isinstance(part, bytes) else len(part)


def _timestamp(record: Record) -> int | None:
    ts = record.timestamp_ms
    return ts if isinstance(ts, int) and ts >= 0 else None


def _remember(
    lru: OrderedDict[str, tuple[int | None, int]], key: str, value: tuple[int | None, int]
) -> None:
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
