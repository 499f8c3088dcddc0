"""The worker's asynchronous runtime: records → pipeline → batcher → events → acks.

:class:`WorkerRuntime` is what the batch consumer (:mod:`stream.kafka.consumer`) hands
each fetched batch of audio records to (:meth:`WorkerRuntime.on_records`). It is written
against two tiny interfaces rather than a Kafka client: a ``send`` coroutine that
returns a delivery future, and an ``ack(partition, start, stop)`` callable that acks
consumed offsets (the consumer's :class:`~stream.kafka.commits.CommitLog`), so its
delivery rules read in one place:

1. a record is *held* by the :class:`~stream.worker.delivery.OffsetLedger` when consumed;
2. a stream *pins* its first offset while open; a dead letter pins its record's
   offset until its send is acknowledged by the broker;
3. windows go to the :class:`~stream.inference.batcher.Batcher` (bounded: a full
   queue makes :meth:`WorkerRuntime.on_records` wait, which stops the consumer fetching);
4. label events are sent as batches complete; when a closed stream's last window is
   done its summary is sent, and once *every* event of the stream is acknowledged by
   the broker the stream's pin is released;
5. held records below the lowest pin of their partition are acked, and the consumer
   commits the highest contiguous acked offset.

So a committed offset never passes a frame whose events are not on the broker.

The contract (``docs/delivery.md``, "The contract"): every record ends as events or
a dead letter with a documented reason. What goes wrong for *one stream* in the
runtime's own work (scoring a batch, building or serializing its events) is
contained: a non-finite model output dead-letters that window
(``invalid_model_output``) and the stream goes on; any other exception dead-letters
the stream (``internal_error``, naming the exception) and closes it with a summary.
What goes wrong for *the runtime* (a send the broker refuses for good, inference
failing wholesale, a bug outside any stream) calls ``on_fatal`` once: the worker
stops with a non-zero exit and nothing past the failure is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.events import (
    DEAD_LETTER_PAYLOAD_BYTES,
    LabelEvent,
    ModelRef,
    RejectedRecord,
    SpeakerEvent,
)
from stream.events.kinds import LABELS, SPEAKERS
from stream.inference.batcher import Batcher
from stream.kafka.topics import Topics
from stream.pipeline import (
    Pipeline,
    Record,
    SpeakerStage,
    Step,
    WindowJob,
    embed_speech,
    stream_key,
)
from stream.roles import SPEECH_LABEL
from stream.settings import BatchingPolicy
from stream.types import Infer, Send
from stream.worker.delivery import OffsetLedger
from stream.worker.metrics import WorkerMetrics, observe_many
from stream.worker.outputs import INTERNAL_ERROR, INVALID_MODEL_OUTPUT, Outputs, Route, log_together
from stream.worker.progress import CommittedOutputs, PartitionProgress, ProgressError
from stream.worker.settlement import AckRange, Settlement
from stream.worker.speakers import SpeakerHook

if TYPE_CHECKING:  # onnxruntime and the speakers package load only with speaker tracking
    from stream.speakers.vad import SileroVad

log = logging.getLogger(__name__)

# the model serving now and its name: read once per batch (stream.control.active.ActiveModel)
CurrentModel = Callable[[], tuple[Infer, ModelRef]]


class WorkerRuntime:
    """One worker's streams, batcher and delivery bookkeeping.

    Parameters
    ----------
    pipeline: the synchronous domain core.
    infer: ``x -> (probabilities, embeddings)`` for a stacked batch; runs in a thread.
    topics: where events go.
    send: ``await send(topic, key, value)`` schedules a record and returns a future
        that resolves when the broker acknowledged it.
    ack: ``ack(partition, start, stop)`` marks audio offsets ``[start, stop)`` done.
    batching: batch size, wait budget, queue bound.
    metrics: Prometheus metrics.
    speakers: optional speaker identification on the same windows: the runtime
        turns on the pipeline's speaker tracking with it (one tracker per stream,
        events only at decisions, the final verdict in the summary).
    on_fatal: called when a result cannot be delivered (the app crashes the worker,
        so that nothing after it is acked and a restart replays it).
    current_model: returns ``(infer, model ref)`` of the model serving now, read once
        per batch so a hot swap (``stream.control.follower``) lands between batches and each
        event names the model that scored it; default ``(infer, pipeline.model)``.
    dead_letter_max_bytes: payload bytes a dead letter keeps
        (:meth:`~stream.events.RejectedRecord.bounded`).
    vad: the voice activity model that picks the windows the speaker tracker embeds
        (``SpeakerStage.vad``); ``None``: the label model's ``speech`` label does.
    route: exactly-once (``docs/delivery.md``): every output goes through
        ``route(audio partition, topic, key, value)`` into that partition's transaction
        instead of ``send``, and what the partition's committed transactions already
        hold (:attr:`committed`, loaded by the consumer when it is assigned) is muted.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        infer: Infer,
        topics: Topics,
        send: Send,
        ack: AckRange,
        batching: BatchingPolicy,
        *,
        metrics: WorkerMetrics | None = None,
        speakers: SpeakerHook | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        current_model: CurrentModel | None = None,
        dead_letter_max_bytes: int = DEAD_LETTER_PAYLOAD_BYTES,
        vad: SileroVad | None = None,
        route: Route | None = None,
    ) -> None:
        self.pipeline = pipeline
        self._route = route
        # exactly-once: per owned audio partition, what its transactions hold
        self._current_model = current_model or (lambda: (infer, pipeline.model))
        self.topics = topics
        self._infer = infer
        self._send = send
        self.metrics = metrics or WorkerMetrics()
        muted = self.metrics.muted.inc
        self.committed = CommittedOutputs(muted) if route is not None else None
        self.speakers = speakers
        if speakers is not None and pipeline.speakers is None:
            stage = SpeakerStage(
                speakers.model, speakers.scorer, speech_label=SPEECH_LABEL, vad=vad
            )
            pipeline.track_speakers(stage)
        self.ledger = OffsetLedger()
        self.settlement = Settlement(self.ledger, ack, self.metrics, on_fatal)
        self._inbox: list[Record] = []
        self._inbox_lock = asyncio.Lock()
        # Held from complete() until a batch's events are handed to the producer, and
        # while summaries are taken: a summary (which unpins its stream's offsets once
        # delivered) must never be taken while one of the stream's events is unsent.
        self._out_lock = asyncio.Lock()
        self.last_offset: dict[int, int] = {}  # per partition, for the lag gauge
        self.outputs = Outputs(
            pipeline,
            topics,
            self.metrics,
            self.committed,
            self.settlement,
            send=send,
            route=route,
            dead_letter_max_bytes=dead_letter_max_bytes,
        )
        self.batcher: Batcher[WindowJob, tuple[np.ndarray, Any, ModelRef]] = Batcher(
            self._run_batch,
            self._on_batch,
            batching,
            observe=self.metrics.observe_batch,
            on_error=self.settlement.fail,
        )

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.settlement.cancel()

    async def drain(self) -> None:
        """Wait until every submitted window is inferred and every delivery settled."""
        await self.flush_inbox()
        await self.batcher.join()
        await self.settlement.join()

    @property
    def failure(self) -> BaseException | None:
        """The runtime's first failure: nothing after it is acked (``Settlement``)."""
        return self.settlement.failure

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Nothing is sent while inside (an exactly-once commit: its transaction must
        hold exactly what :attr:`committed` says)."""
        async with self._inbox_lock, self._out_lock:
            yield

    def load_progress(self, partition: int, progress: PartitionProgress) -> None:
        """Exactly-once: what ``partition``'s committed transactions hold (read by the
        consumer on assignment, before the partition's first record)."""
        if self.committed is not None:
            self.committed.load(progress)

    def restore_progress(self, partition: int, raw: bytes | None) -> None:
        """Exactly-once: load ``partition``'s progress record as its transactional
        producer read it on assignment (None: no transaction committed one yet). An
        unreadable record is logged and ignored: the partition then runs
        at-least-once until its next commit."""
        progress = PartitionProgress(partition)
        if raw is not None:
            try:
                progress = PartitionProgress.from_json(raw, partition=partition)
            except ProgressError as exc:
                log.error("%s; replayed events of partition %d may repeat", exc, partition)
        self.load_progress(partition, progress)
        log.info(
            "partition %d opened for exactly-once: %d open and %d closed segments committed",
            partition,
            len(progress.opened),
            len(progress.closed),
        )

    def progress_record(self, partition: int, committed_offset: int | None) -> bytes:
        """Exactly-once: the progress record ``partition``'s next transaction commits,
        pruned of what ``committed_offset`` (the offset it commits, if any) covers."""
        if self.committed is None:
            raise RuntimeError("progress records are kept only with exactly-once")
        state = self.committed.of(partition)
        if committed_offset is not None:
            state.prune(committed_offset)
        return state.to_json()

    # -- input --------------------------------------------------------------------------
    async def on_records(self, records: Sequence[Record]) -> None:
        """Take one fetched batch of audio records
        (:class:`~stream.kafka.consumer.BatchConsumer`): processed at once, in order,
        with no per-record await or timer."""
        self._raise_failure()
        self._inbox.extend(records)
        await self.flush_inbox()

    async def on_skipped(self, rejected: RejectedRecord, *, last_offset: int) -> None:
        """Offsets ``rejected.offset..last_offset`` were skipped below the record format
        (``stream.kafka.fetch``: a batch or a record the client cannot read or that
        passes a bound): they are held like consumed records and acked once the dead
        letter that accounts for them is on the broker."""
        self._raise_failure()
        await self.flush_inbox()  # what came before keeps its place in the ledger
        partition = rejected.partition
        async with self._inbox_lock:
            self.ledger.hold(partition, rejected.offset)
            if last_offset > rejected.offset:
                self.ledger.hold(partition, last_offset)
            self.last_offset[partition] = last_offset
            await self.outputs.dead_letter(rejected)
            self.settlement.release(partition)

    async def flush_inbox(self) -> None:
        """Process the gathered records in consumption order."""
        async with self._inbox_lock:
            batch, self._inbox = self._inbox, []
            if not batch:
                return
            self.metrics.frames_in.inc(len(batch))
            # held only now: a record still in the inbox pins nothing yet, so it must
            # not be in the ledger where a release could ack it
            for record in batch:
                self.ledger.hold(record.partition, record.offset)
                self.last_offset[record.partition] = record.offset
            await self._apply(self.pipeline.accept_many(batch))
            for partition in {record.partition for record in batch}:
                self.settlement.release(partition)

    async def expire(self) -> None:
        """Close idle streams (called by a timer); a failure is the runtime's."""
        try:
            async with self._inbox_lock:
                await self._apply(self.pipeline.expire())
        except Exception as exc:
            self.settlement.fail(exc)
            raise
        self.metrics.active_streams.set(self.pipeline.active_streams)

    def settled(self, partition: int) -> bool:
        """Everything handed over of ``partition`` is acked (nothing held, no failure):
        offsets past the last record (transaction markers, aborted records) may be
        committed too."""
        return self.failure is None and self.ledger.held(partition) == 0

    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Partitions taken away: forget their streams, inbox and unacked records."""
        parts = list(partitions)
        self._inbox = [r for r in self._inbox if r.partition not in parts]
        for sid in self.pipeline.drop_partitions(parts):
            self.outputs.forget(sid)
            log.info("stream %r dropped: partition revoked", sid)
        self.ledger.drop(parts)
        if self.committed is not None:
            self.committed.drop(parts)

    async def _apply(self, step: Step) -> None:
        for _, partition, offset, pin in step.opened:
            self.ledger.pin(partition, pin, offset)  # one pin per segment of a stream
        if step.opened and log.isEnabledFor(logging.INFO):
            log_together(
                f"stream {sid!r} opened at partition {partition} offset {offset}"
                for sid, partition, offset, _ in step.opened
            )
        for rejected in step.rejected:
            await self.outputs.dead_letter(rejected)
        for job in step.jobs:
            await self.batcher.submit(job)
        self.metrics.queued_windows.set(self.batcher.pending)
        async with self._out_lock:
            await self.outputs.summaries()

    # -- inference ------------------------------------------------------------------------
    def _run_batch(self, jobs: Sequence[WindowJob]) -> list[tuple[np.ndarray, Any, ModelRef]]:
        from stream.features.windows import stack_windows

        x = stack_windows([job.window for job in jobs], self.pipeline.spec)
        infer, model = self._current_model()  # once: a swap never splits a batch
        probabilities, _ = infer(x)
        embeddings: list[Any] = [None] * len(jobs)
        if self.speakers is not None:
            speech = self.pipeline.speech_mask(probabilities, jobs)
            embeddings = embed_speech(jobs, speech, self.speakers.embed)
        return [(probabilities[i], embeddings[i], model) for i in range(len(jobs))]

    async def _on_batch(
        self, jobs: Sequence[WindowJob], outputs: Sequence[tuple[np.ndarray, Any, ModelRef]]
    ) -> None:
        async with self._out_lock:
            # no await before every stream's events are built: a stream closing in this
            # batch must have every window in its tracker when its summary is taken
            out, rejected = self._complete(jobs, outputs)
            now_s = time.time()
            latencies: list[float] = []
            e2e: list[float] = []
            for topic, event, value in out:
                await self.outputs.event(topic, event, value)
                if isinstance(event, LabelEvent):
                    latencies.append(event.latency_ms)
                    if event.span.capture_time_s is not None:
                        e2e.append(max(0.0, (now_s - event.span.capture_time_s) * 1000.0))
            observe_many(self.metrics.latency_ms, latencies)  # a batch's at once
            observe_many(self.metrics.e2e_latency_ms, e2e)
            for record in rejected:
                await self.outputs.dead_letter(record)
            await self.outputs.summaries()

    def _complete(
        self, jobs: Sequence[WindowJob], outputs: Sequence[tuple[np.ndarray, Any, ModelRef]]
    ) -> tuple[list[tuple[str, LabelEvent | SpeakerEvent, bytes]], list[RejectedRecord]]:
        """A batch's events, serialized, and the dead letters of what went wrong,
        stream by stream (synchronous: see :meth:`_on_batch`)."""
        rejected: list[RejectedRecord | None] = []
        good: list[int] = []
        invalid: list[WindowJob] = []
        if not outputs:
            return [], []
        scores = np.stack([p for p, _, _ in outputs])  # one stack: rows are taken per stream
        for i, ok in enumerate(np.isfinite(scores).all(axis=1)):
            if ok:
                good.append(i)
                continue
            probabilities, _, model = outputs[i]
            invalid.append(jobs[i])
            rejected.append(self._invalid_output(jobs[i], probabilities, model))
        if invalid:
            self.pipeline.skip(invalid)
            jobs = [jobs[i] for i in good]
            outputs = [outputs[i] for i in good]
            scores = scores[good]
        if not jobs:
            return [], [r for r in rejected if r is not None]
        speakers: dict[str, list[SpeakerEvent]] = {}
        try:
            for event in self.pipeline.complete_speakers(jobs, [e for _, e, _ in outputs]):
                speakers.setdefault(stream_key(event.stream_id, event.instance), []).append(event)
        except Exception as exc:  # tracker state of these streams is unknown now
            failed = {
                j.window.stream_id: j.stream_id
                for j, (_, e, _) in zip(jobs, outputs, strict=True)
                if e is not None
            }
            rejected.extend(
                self._abandon(sid, exc, "tracking speakers", shown) for sid, shown in failed.items()
            )
        out: list[tuple[str, LabelEvent | SpeakerEvent, bytes]] = []
        model = outputs[0][2]
        for sid, rows in _by_stream(jobs).items():
            try:
                labels = self.pipeline.complete(
                    [jobs[i] for i in rows], _rows(scores, rows), model=model
                )
                mine: list[tuple[str, LabelEvent | SpeakerEvent, bytes]] = [
                    (self.topics.of(LABELS), e, e.to_json()) for e in labels
                ]
                mine += [(self.topics.of(SPEAKERS), e, e.to_json()) for e in speakers.get(sid, [])]
                if self.committed is not None:
                    mine = self._unsent(sid, [jobs[i] for i in rows], mine)
            except Exception as exc:
                shown = jobs[rows[0]].stream_id
                rejected.append(self._abandon(sid, exc, "completing its windows", shown))
                continue
            out.extend(mine)
        return out, [r for r in rejected if r is not None]

    def _unsent(
        self,
        sid: str,
        jobs: Sequence[WindowJob],
        events: list[tuple[str, LabelEvent | SpeakerEvent, bytes]],
    ) -> list[tuple[str, LabelEvent | SpeakerEvent, bytes]]:
        """Exactly-once: the events of ``sid``'s windows that no committed transaction
        holds yet, now counted as sent (they are sent before any commit can run)."""
        by_index = {job.span.index: job for job in jobs}
        out = []
        for item in events:
            index = item[1].span.index
            if self._window_unsent(sid, by_index.get(index, jobs[-1]), index):
                out.append(item)
        return out

    def _window_unsent(self, sid: str, job: WindowJob, index: int) -> bool:
        """Exactly-once: window ``index`` of ``job``'s segment is not out yet (it is
        counted as sent from now on); ``False`` for a dropped stream too."""
        origin = self.pipeline.origin(sid, job)
        if origin is None or self.committed is None:
            return False  # stream dropped (revoked): its new owner replays it
        partition, first = origin
        return self.committed.send_window(partition, sid, first, index)

    def _invalid_output(
        self, job: WindowJob, probabilities: np.ndarray, model: ModelRef
    ) -> RejectedRecord | None:
        """The dead letter of a window the model scored NaN or infinite: no label
        event for it, the stream goes on (a replay gives the same dead letter)."""
        sid = job.stream_id
        origin = self.pipeline.origin(job.window.stream_id, job)
        if origin is None:
            return None  # stream dropped (revoked): its new owner replays it
        if self.committed is not None and not self._window_unsent(
            job.window.stream_id, job, job.span.index
        ):
            return None  # exactly-once: a committed transaction holds it
        partition, offset = origin
        return RejectedRecord(
            stream_id=sid,
            reason=INVALID_MODEL_OUTPUT,
            message=(
                f"stream {sid!r} window {job.span.index} ({job.span.start_s:.3f}-"
                f"{job.span.end_s:.3f} s): model {model.tag} returned a non-finite "
                f"output {np.array2string(probabilities, precision=4)}; no label event "
                "for this window"
            ),
            topic=self.topics.audio,
            partition=partition,
            offset=offset,
        )

    def _abandon(
        self, sid: str, exc: BaseException, doing: str, shown: str | None = None
    ) -> RejectedRecord | None:
        """Contain an unexpected exception to its stream: close the stream (its
        summary follows) and return its ``internal_error`` dead letter, pointing at the
        stream's first record. ``sid``: the pipeline's stream key; ``shown``: the stream
        id the dead letter names (default ``sid``)."""
        origin = self.pipeline.origin(sid)
        log.error("stream %r: %s failed (%r); closing the stream", sid, doing, exc, exc_info=exc)
        if origin is None or not self.pipeline.abandon(sid):
            return None
        partition, offset = origin
        return RejectedRecord(
            stream_id=shown or sid,
            reason=INTERNAL_ERROR,
            message=(
                f"stream {shown or sid!r} (partition {partition}, first offset {offset}): "
                f"{doing} raised {type(exc).__name__}: {exc}; the stream is closed"
            ),
            topic=self.topics.audio,
            partition=partition,
            offset=offset,
        )

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise RuntimeError(
                "inference or delivery failed; stopping so that the unacked records are replayed"
            ) from self.failure


def _by_stream(jobs: Sequence[WindowJob]) -> dict[str, list[int]]:
    """Indexes of ``jobs`` per stream, in batch order."""
    out: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        out.setdefault(job.window.stream_id, []).append(i)
    return out


def _rows(scores: np.ndarray, rows: list[int]) -> np.ndarray:
    """``scores[rows]``; a view when the rows are adjacent (a stream's windows in a
    batch usually are: one row), which costs 0.1 µs instead of 1.4 µs for the copy."""
    first, last = rows[0], rows[-1]
    return scores[first : last + 1] if last - first == len(rows) - 1 else scores[rows]
