"""Intake: audio-topic records → frames routed to their segments, every error contained.

Each record is decoded (:func:`~stream.wire.decode_frame`), checked against the size
limits, admitted (a frame of a stream that ended is a repeat or a late frame) and
pushed through its segment's sequencer; the frames it releases go to conditioning.
Nothing a record holds escapes as an exception: an :class:`~stream.errors.InputError`
is a dead letter with its reason; any other exception is a dead letter
``internal_error`` naming it, and the stream it hit is closed with a summary (its
state may be corrupt), while other streams go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from stream.errors import FrameError, InputError, SequenceError
from stream.events import RejectedRecord
from stream.pipeline.conditioning import Conditioner
from stream.pipeline.deadlines import Deadlines
from stream.pipeline.records import Record, Step, stream_key
from stream.pipeline.segments import Ended, Segment, Segments
from stream.settings import PipelinePolicy, StreamLimits
from stream.wire import AudioFrame, decode_frame

log = logging.getLogger(__name__)


class Intake:
    """Takes records in consumption order and routes each frame through the stages.

    Parameters
    ----------
    policy: the limits each frame is checked against, ``max_segment_s``.
    sr: the feature rate (``max_segment_s`` in its samples).
    segments, deadlines, conditioning: the stages a frame goes through.
    clock: monotonic seconds (the quiet-partition fallback's ``last_seen_s``).
    """

    def __init__(
        self,
        policy: PipelinePolicy,
        sr: int,
        segments: Segments,
        deadlines: Deadlines,
        conditioning: Conditioner,
        clock: Callable[[], float],
    ) -> None:
        self.limits = policy.limits
        self.segment_samples = round(policy.limits.max_segment_s * sr)
        self.segments = segments
        self.deadlines = deadlines
        self.conditioning = conditioning
        self.clock = clock
        # the hot path's collaborators, looked up once
        self._open = segments.open
        self._done = segments.done
        self._close = segments.close
        self._ending = segments.ending
        self._touch = deadlines.touch
        self._close_idle = deadlines.close_idle
        self._feed = conditioning.feed

    def accept_many(self, records: Iterable[Record]) -> Step:
        """Take records in consumption order, with one feature-kernel call for all
        (see ``Pipeline.accept_many``)."""
        step = Step()
        last_of: dict[str, Record] = {}
        for record in records:
            sid: str | None = None
            try:
                frame = decode_frame(record.key, record.value, record.headers)
                sid = stream_key(frame.stream_id, frame.instance)
                last_of[sid] = record
                self._close_idle(record, step)
                self._route(record, frame, step)
            except InputError as exc:
                exc.locate(partition=record.partition, offset=record.offset)
                step.rejected.append(rejected(record, exc))
                state = self._open.get(sid if sid is not None else exc.stream_id or "")
                if state is not None:
                    state.rejected += 1
                log.info("rejected record: %s (reason %s)", exc, exc.reason)
            except Exception as exc:  # a bug hit by this record: contain it
                self._contain(record, sid, exc, step)
        self._drain_contained(step, last_of)
        self._close_ending(step, last_of)
        return step

    def _route(self, record: Record, frame: AudioFrame, step: Step) -> None:
        sid = stream_key(frame.stream_id, frame.instance)
        check_limits(frame, self.limits)
        ending = self._ending.get(sid)
        if ending is not None:  # a record after the stream's EOS in this batch
            self._close(ending, "eos", step)
        state = self._open.get(sid)
        if state is None:
            ended = self._done.get(sid)
            if ended is not None and not self._admit(record, frame, sid, ended):
                return
            state = self.segments.start(record, frame, step)
        check_format(state, frame)
        if record.offset > state.last_offset:
            state.last_offset = record.offset
        state.last_seen_s = self.clock()
        self._open.move_to_end(sid)
        released = state.sequencer.push(frame.seq, (record, frame), eos=frame.eos)
        self._touch(state, record)
        reject_evicted(state, step)
        self._feed(state, released, step)
        if state.sequencer.finished:  # closed once the batch's drain took its samples
            self._ending[sid] = state
        elif state.position >= self.segment_samples:
            self._close(state, "rolled", step)

    def _admit(self, record: Record, frame: AudioFrame, sid: str, ended: Ended) -> bool:
        """:func:`admit`, remembering the offset where an ended stream's id came back."""
        reused_at = reuse_offset(record, frame, ended)
        if reused_at is not None and ended.reused_at is None:
            self._done[sid] = ended._replace(reused_at=reused_at)
        return admit(frame, ended, record)

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
        step.rejected.append(rejected(record, error))
        state = self._open.get(sid) if sid is not None else None
        if state is not None:
            state.rejected += 1
            self.segments.close_safely(state, "internal_error", step)

    def _close_ending(self, step: Step, last_of: dict[str, Record]) -> None:
        """Close the streams whose end-of-stream frame this batch brought.

        Closed here, after the batch's drain pushed their last samples with every other
        stream's in one feature-kernel call, rather than where the EOS frame was read:
        closing drains the stream on its own, a kernel call per stream, and calls that
        end together (``tympan produce --streams``, a gateway at the top of the hour)
        made the last window of each wait for all of them (docs/delivery.md, "What the
        worker waits for at end of stream"). A failure closes that stream only.
        """
        for sid, state in list(self._ending.items()):
            try:
                self._close(state, "eos", step)
            except Exception as exc:  # a bug hit by this stream's close: contain it
                record = last_of.get(sid)
                if record is None:
                    self.segments.close_safely(state, "internal_error", step)
                else:
                    self._contain(record, sid, exc, step)
        self._ending.clear()

    def _drain_contained(self, step: Step, last_of: dict[str, Record]) -> None:
        """The drain for all streams; when it fails, stream by stream, closing
        (and dead-lettering the last record of) each stream that still fails."""
        conditioning = self.conditioning
        try:
            conditioning.drain(step)
            return
        except Exception:
            log.exception("feature push failed for a batch; retrying stream by stream")
        for state in list(conditioning.dirty.values()):
            try:
                conditioning.drain(step, only=state)
            except Exception as exc:
                conditioning.discard(state)
                record = last_of.get(state.stream_id)
                if record is not None:
                    self._contain(record, state.stream_id, exc, step)


def check_limits(frame: AudioFrame, limits: StreamLimits) -> None:
    """Refuse a frame over ``max_frame_bytes`` or ``max_frame_ms``."""
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


def reuse_offset(record: Record, frame: AudioFrame, ended: Ended) -> int | None:
    """The offset from which the ended stream's id is in use again: ``ended.reused_at``,
    or this record's when it is a seq-0 frame past the stream's end (a new run of the
    same stream id: a replay of the old run is at or below its last offset, a producer's
    repeat of one of its frames is not at seq 0); ``None``: no reuse seen."""
    if ended.reused_at is not None:
        return ended.reused_at
    past_end = record.partition != ended.partition or record.offset > ended.last_offset
    if ended.eos_seq is not None and frame.seq == 0 and past_end:
        return record.offset
    return None


def admit(frame: AudioFrame, ended: Ended | None, record: Record | None = None) -> bool:
    """May ``frame`` open a segment? ``ended``: what is remembered of the stream's last
    closed segment, if any; ``record``: the frame's record (``None``: no reuse check).
    ``False``: drop it silently (a replay or a producer's repeat of a stream that
    ended); raises for a frame a closed segment already passed, and for a frame of a
    stream id used again after its end without a new ``instance`` header
    (``stream_reused``)."""
    if ended is None:
        return True
    sid, seq = frame.stream_id, frame.seq
    eos_seq, last_seq = ended.eos_seq, ended.last_seq
    if eos_seq is not None:
        reused_at = None if record is None else reuse_offset(record, frame, ended)
        if record is not None and reused_at is not None and _at_or_after(record, ended, reused_at):
            raise SequenceError(
                "stream_reused",
                f"the stream ended at eos seq {eos_seq} (partition {ended.partition} offset "
                f"{ended.last_offset}) and its id is sent again from offset {reused_at}: "
                "frames of a new run need a new 'instance' header (docs/wire-format.md, "
                '"Stream instances"; tympan produce and tympan ingest stamp one)',
                stream_id=sid,
                seq=seq,
            )
        if seq <= eos_seq:
            return False  # a replay or repeat of a frame before the stream's end
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


def _at_or_after(record: Record, ended: Ended, offset: int) -> bool:
    return record.partition != ended.partition or record.offset >= offset


def check_format(state: Segment, frame: AudioFrame) -> None:
    """A stream keeps the rate, encoding and channels it started with."""
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


def reject_evicted(state: Segment, step: Step) -> None:
    """Dead-letter frames held above an end-of-stream frame that came after them."""
    eos_seq = state.sequencer.eos_seq
    for seq, (record, _) in state.sequencer.take_evicted():
        error = SequenceError(
            "after_eos",
            f"frame is above the end-of-stream frame (seq {eos_seq}) that arrived after it",
            stream_id=state.stream_id,
            seq=seq,
        )
        error.locate(partition=record.partition, offset=record.offset)
        step.rejected.append(rejected(record, error))
        state.rejected += 1


def rejected(record: Record, exc: InputError) -> RejectedRecord:
    """The dead letter of ``record``, refused for ``exc``."""
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
