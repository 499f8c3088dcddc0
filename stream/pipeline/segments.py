"""The segment lifecycle: open, evict, close, and the segments closed but not summarised.

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
                 Kafka time passes first frame + max_segment_age_s ───────► "rolled"
                 max_streams open and a new stream arrives, longest silent ► "evicted"
                 an unexpected exception while handling its record ───────► "internal_error"
                 worker shutdown / partition lost ─────────────────────────► "shutdown"
    ─► flush last (padded) window ─► all windows inferred ─► summary ─► remembered

A frame of a stream closed otherwise than by EOS opens the next segment.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from stream.audio.resample import StreamResampler
from stream.pipeline.jobs import WindowJob
from stream.pipeline.records import Opened, Record, Step, stream_key
from stream.pipeline.sequencing import Sequencer
from stream.pipeline.summary import SummaryBuilder
from stream.settings import PipelinePolicy
from stream.types import Float32
from stream.wire import AudioFrame, Encoding

if TYPE_CHECKING:
    from stream.pipeline.conditioning import Conditioner
    from stream.pipeline.labels import Labels
    from stream.pipeline.speakers import Speakers
    from stream.speakers.tracker import SpeakerTracker

log = logging.getLogger(__name__)

_TOMBSTONES_KEPT = 100_000
# at capacity, streams with fewer frames than this are closed first (a flood of
# one-frame streams), before any stream that has proven to be a real call
EVICT_UNPROVEN_FRAMES = 4
_SEGMENT_SEP = "\x1e"  # stream id / first seq, inside event-id hashes only
_G711 = (Encoding.MULAW, Encoding.ALAW)


def segment_key(stream_id: str, first_seq: int) -> str:
    """What the event ids of a segment hash in place of the stream id.

    The stream id itself for a segment opened by seq 0 (a stream seen from its
    start), so streams that are never cut keep the ids they always had.
    """
    return stream_id if first_seq == 0 else f"{stream_id}{_SEGMENT_SEP}{first_seq}"


class Ended(NamedTuple):
    """What is remembered of a stream's last closed segment (``Segments.done``).

    ``last_offset``: the highest offset of ``partition`` the segment took a record
    from: a post-EOS frame at or below it is a replay, above it a producer's repeat
    or a new run; ``reused_at``: the offset of the seq-0 frame, past the end, that
    showed the stream id sent again without a new ``instance`` (``None``: not seen).
    """

    eos_seq: int | None
    last_seq: int
    partition: int
    last_offset: int
    reused_at: int | None = None


@dataclass(slots=True)
class Segment:
    """One open (or closing) segment of a stream: every stage's state for it."""

    stream_id: str  # stream_key(): the stream id, and its instance when it has one
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
    opened_s: float  # clock: the age of a segment whose records carry no timestamp
    first_ms: int | None = None  # Kafka timestamp of its first timestamped record
    last_ms: int | None = None  # Kafka timestamp of the last record
    position: int = 0  # samples at spec.sr handed to the frontend (gaps included)
    frame_samples: int | None = None  # n_samples of the last released frame: a gap's unit
    # resampled samples not yet pushed; for a raw_pcm stream, its frames' payloads
    pending: list[Float32 | bytes] = field(default_factory=list)
    raw_pcm: bool = False  # mono pcm_s16le at spec.sr: decoded at the drain
    # mono G.711 through the low-delay resampler (or none): its frames' payloads and gap
    # zeros wait here at the input rate, to be decoded and resampled at the drain
    # (Conditioner.resample_deferred); ``owed`` is their output
    # (``resampler.output_size`` of ``deferred_in``), already counted in ``position``
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
    instance: str | None = None  # instance header of its frames
    last_offset: int = -1  # the highest offset it took a record from

    @property
    def pin(self) -> str:
        """The id of this segment's summary: the pin the runtime holds for it."""
        return self.summary.event_id


class Segments:
    """The open segments (one per stream), the closed ones whose windows are still out,
    and what is remembered of each stream's last closed segment.

    Parameters
    ----------
    policy: stream cap, sequencing and limits.
    sr: the feature rate (resamplers' target).
    conditioning: flushes a closing segment's audio into its last windows.
    labels: model, labels and thresholds a new segment's summary is made with.
    speakers: gives each new segment a speaker tracker when tracking is on.
    clock: monotonic seconds, for the quiet-partition fallback only.
    """

    def __init__(
        self,
        policy: PipelinePolicy,
        sr: int,
        conditioning: Conditioner,
        labels: Labels,
        speakers: Speakers,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.sr = sr
        self.conditioning = conditioning
        self.labels = labels
        self.speakers = speakers
        self.clock = clock
        # open segments, least recently fed first (the eviction order)
        self.open: OrderedDict[str, Segment] = OrderedDict()
        self.closing: dict[int, Segment] = {}  # incarnation → closed, windows out
        # EOS seen in the batch being taken: closed after the batch's one drain
        self.ending: dict[str, Segment] = {}
        # stream key → what is remembered of its last closed segment
        self.done: OrderedDict[str, Ended] = OrderedDict()
        self._incarnations = itertools.count(1)

    # -- queries ----------------------------------------------------------------------
    def of_job(self, job: WindowJob) -> Segment | None:
        """The open or closing segment a job was cut from (``None``: dropped since)."""
        state = self.open.get(job.window.stream_id)
        if state is not None and state.incarnation == job.incarnation:
            return state
        return self.closing.get(job.incarnation)

    def closing_of(self, stream_id: str) -> Segment | None:
        """One closing segment of the stream (``None``: none)."""
        return next((s for s in self.closing.values() if s.stream_id == stream_id), None)

    # -- opening ----------------------------------------------------------------------
    def start(self, record: Record, frame: AudioFrame, step: Step) -> Segment:
        """Open a segment for ``frame``'s stream (evicting one at ``max_streams``)."""
        sid = stream_key(frame.stream_id, frame.instance)
        if len(self.open) >= self.policy.max_streams:
            self.evict(step)
        start = 0 if frame.seq < self.policy.open_limit else frame.seq
        # the summary's id (and the pin) must be known now: a stream's start keeps the
        # stream id whatever order its first frames came in; a resumed stream does not
        ended = self.done.get(sid)
        resumed = ended is not None and ended.eos_seq is None
        key = segment_key(sid, frame.seq if start or resumed else 0)
        labels = self.labels
        now = self.clock()
        state = Segment(
            stream_id=sid,
            partition=record.partition,
            first_offset=record.offset,
            key=key,
            sequencer=Sequencer(
                frame.stream_id,
                self.policy.sequencing,
                first_seq=start,
                max_seq_jump=self.policy.limits.max_seq_jump,
            ),
            sample_rate=frame.sample_rate,
            encoding=frame.encoding,
            channels=frame.channels,
            resampler=StreamResampler(frame.sample_rate, self.sr),
            summary=SummaryBuilder(
                frame.stream_id,
                labels.model,
                labels.labels,
                labels.thresholds,
                id_key=key,
                instance=frame.instance,
            ),
            last_seen_s=now,
            opened_s=now,
            incarnation=next(self._incarnations),
            attributes=frame.attributes,
            instance=frame.instance,
            last_offset=record.offset,
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
        state.tracker = self.speakers.new_tracker(frame.stream_id)
        self.open[sid] = state
        step.opened.append(Opened(sid, record.partition, record.offset, state.pin))
        log.debug(
            "stream %r segment at seq %d opened (partition %d offset %d)",
            sid,
            frame.seq,
            record.partition,
            record.offset,
        )
        return state

    def evict(self, step: Step) -> None:
        """Make room: close the open segment that has gone longest without a record,
        among those with fewer than ``EVICT_UNPROVEN_FRAMES`` frames if there are any.

        Deterministic from the records' order. A flood of one-frame streams is what
        gets closed: a real call that paused while the flood arrived is passed over
        (it has sent more), and a newcomer is never refused (see docs/delivery.md).
        """
        victim = next(
            (s for s in self.open.values() if s.sequencer.counts.frames < EVICT_UNPROVEN_FRAMES),
            None,
        ) or next(iter(self.open.values()))
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
        self.close_safely(victim, "evicted", step)

    # -- closing ----------------------------------------------------------------------
    def close(self, state: Segment, closed_by: str, step: Step) -> None:
        """Flush the segment's last windows into ``step`` and retire it."""
        if state.closed_by is not None:
            return
        if self.ending.pop(state.stream_id, None) is state:
            closed_by = "eos"  # its end-of-stream frame came: whatever closes it now
        self.conditioning.finish(state, step)
        self.retire(state, closed_by)

    def close_safely(self, state: Segment, closed_by: str, step: Step) -> None:
        """:meth:`close`; if closing itself fails, drop the segment's state without a
        flush (closed as ``internal_error``) so it never fails again."""
        try:
            self.close(state, closed_by, step)
        except Exception:
            log.exception(
                "stream %r: closing (%s) failed; state dropped", state.stream_id, closed_by
            )
            self.conditioning.discard(state)
            try:
                self.conditioning.close_banks(state.stream_id)
            except Exception:
                log.exception("stream %r: closing its feature state failed", state.stream_id)
            self.retire(state, "internal_error")

    def close_all(self, closed_by: str, step: Step) -> None:
        for state in list(self.open.values()):
            self.close_safely(state, closed_by, step)

    def retire(self, state: Segment, closed_by: str) -> None:
        """The segment is closed: out of the open set, waiting for its windows."""
        state.closed_by = closed_by
        self.open.pop(state.stream_id, None)
        self.conditioning.forget(state.stream_id)
        self.closing[state.incarnation] = state
        seq = state.sequencer
        eos_seq = seq.eos_seq if seq.finished else None
        ended = Ended(eos_seq, seq.next_seq - 1, state.partition, state.last_offset)
        _remember(self.done, state.stream_id, ended)
        log.debug("stream %r closing (%s)", state.stream_id, closed_by)

    def abandon(self, stream_id: str, closed_by: str) -> bool:
        """Close a stream's segments without a flush; their summaries are ready at once.
        ``False``: the stream has no open or closing segment here."""
        state = self.open.get(stream_id)
        closing = [s for s in self.closing.values() if s.stream_id == stream_id]
        if state is None and not closing:
            return False
        for segment in closing:  # already closed (EOS, roll): it stops waiting too
            del self.closing[segment.incarnation]
            self._forsake(segment, closed_by)
        if state is not None:
            self.conditioning.discard(state)
            try:
                self.conditioning.close_banks(stream_id)
            except Exception:  # the banks may be what failed; the stream is closed anyway
                log.exception("stream %r: closing its feature state failed", stream_id)
            self.retire(state, closed_by)
            del self.closing[state.incarnation]
            self._forsake(state, closed_by)
        return True

    def _forsake(self, state: Segment, closed_by: str) -> None:
        """Re-file a closed segment under a fresh incarnation with nothing outstanding,
        so late results of its windows find nothing and its summary is ready now."""
        state.incarnation = next(self._incarnations)
        state.outstanding = 0
        state.tracker = None  # its speaker state is suspect too: no verdict
        state.closed_by = closed_by  # the summary says why, even after an EOS
        self.closing[state.incarnation] = state

    def drop(self, partitions: Iterable[int]) -> list[str]:
        """Forget the open and closing segments of ``partitions``; their stream ids."""
        lost = set(partitions)
        dropped = [sid for sid, s in self.open.items() if s.partition in lost]
        for sid in dropped:
            del self.open[sid]
            self.conditioning.forget(sid)
            self.conditioning.close_banks(sid)
        closing = [s for s in self.closing.values() if s.partition in lost]
        for state in closing:
            del self.closing[state.incarnation]
        return dropped + [s.stream_id for s in closing if s.stream_id not in dropped]

    def take_done(self) -> Iterator[Segment]:
        """The closed segments whose windows are all inferred, each forgotten here as
        it is taken."""
        ready = [s for s in self.closing.values() if s.outstanding <= 0]
        for state in ready:
            del self.closing[state.incarnation]
            yield state


def _remember(lru: OrderedDict[str, Ended], key: str, value: Ended) -> None:
    lru[key] = value
    lru.move_to_end(key)
    while len(lru) > _TOMBSTONES_KEPT:
        lru.popitem(last=False)
