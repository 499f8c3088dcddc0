"""What the runtime sends: label and speaker events, summaries, dead letters.

Each send goes through ``send`` (at-least-once) or, with exactly-once, into the
transaction of the audio partition the event comes from (``route``). What a send pins
and when it is released is :class:`~stream.worker.settlement.Settlement`'s: an event's
delivery joins its stream's pending deliveries, and a summary (which releases its
stream's offsets) waits for all of them; a dead letter keeps its record pinned until
the broker has it. With exactly-once, what a committed transaction already holds is
not sent again (``CommittedOutputs``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from stream.events import LabelEvent, RejectedRecord, SpeakerEvent, SummaryEvent
from stream.events.kinds import REJECTED, SUMMARIES
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, stream_key
from stream.types import Send
from stream.worker.metrics import WorkerMetrics
from stream.worker.progress import CommittedOutputs
from stream.worker.settlement import Settlement, unsettled

log = logging.getLogger(__name__)

_PRUNE_EVERY = 256  # a stream's pending deliveries are pruned of acked ones this often
LINES_PER_RECORD = 50  # stream openings/closings per log record (log_together)
INVALID_MODEL_OUTPUT = "invalid_model_output"  # a window's dead letter (never held back)
INTERNAL_ERROR = "internal_error"

# exactly-once: ``await route(audio partition, topic, key, value)`` sends into that
# partition's transaction and returns the delivery future (it raises for a partition
# whose transaction is not open here: a runtime failure, never a silent loss)
Route = Callable[[int, str, bytes, bytes], Awaitable[Any]]


class Outputs:
    """The runtime's sends, and each stream's deliveries not yet acknowledged.

    Parameters
    ----------
    pipeline : Pipeline
        Whose closed segments become summaries, and which knows each stream's partition.
    topics : Topics
        Where each kind of event goes.
    metrics : WorkerMetrics
        Events out, dead letters, active streams.
    committed : CommittedOutputs or None
        Exactly-once: what committed transactions hold (None: at-least-once).
    settlement : Settlement
        Releases pins once their deliveries are acknowledged.
    send, route : callable
        ``send(topic, key, value)`` (at-least-once) and, with exactly-once,
        ``route(partition, topic, key, value)``.
    dead_letter_max_bytes : int
        The bound on a dead letter's size.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        topics: Topics,
        metrics: WorkerMetrics,
        committed: CommittedOutputs | None,
        settlement: Settlement,
        *,
        send: Send,
        route: Route | None,
        dead_letter_max_bytes: int,
    ) -> None:
        self.pipeline = pipeline
        self.topics = topics
        self.metrics = metrics
        self.committed = committed
        self.settlement = settlement
        self.ledger = settlement.ledger
        self._send = send
        self._route = route
        self._dead_letter_max_bytes = dead_letter_max_bytes
        self._deliveries: dict[str, list[Awaitable[Any]]] = {}
        self._pin_ids = itertools.count()

    def forget(self, sid: str) -> None:
        """A dropped stream's pending deliveries (its partition was revoked)."""
        self._deliveries.pop(sid, None)

    async def event(
        self, topic: str, event: LabelEvent | SpeakerEvent, value: bytes | None = None
    ) -> None:
        sid = stream_key(event.stream_id, event.instance)
        value = event.to_json() if value is None else value
        partition = self.pipeline.stream_partition(sid)
        delivery = await self._out(partition, topic, event.stream_id.encode(), value)
        if delivery is None:
            return  # exactly-once and the stream was dropped (revoked): not written
        self.metrics.events_out_to(topic).inc()
        if partition is None:
            return  # stream dropped (revoked): nothing to pin
        pending = self._deliveries.setdefault(sid, [])
        if not pending or pending[-1] is not delivery:  # events of a batch share one
            pending.append(delivery)
        if len(pending) >= _PRUNE_EVERY:
            self._deliveries[sid] = unsettled(pending)

    async def summaries(self) -> None:
        """Send the summaries that are ready; their segments' pins are released together,
        by one task, once every delivery of every one of them is acknowledged.

        When calls end together (a fetch of EOS frames) this is hundreds of summaries,
        sent in one turn of the loop, so in the same producer batches: one wait for all
        of them costs what one did, where a wait per summary (each over its stream's
        ~50 label deliveries) cost the end of every call behind it."""
        pins: list[tuple[int, Any]] = []
        deliveries: list[Awaitable[Any]] = []
        closed: list[str] = []
        for partition, summary, first, last in self.pipeline.take_closed():
            if not await self._summary(partition, summary, pins, deliveries, first, last):
                continue  # not sent: held by a committed transaction, or dead-lettered
            closed.append(
                f"stream {stream_key(summary.stream_id, summary.instance)!r} closed "
                f"({summary.closed_by}) at partition {partition}: {summary.windows} windows, "
                f"dominant {summary.dominant_label}"
            )
        if pins:
            self.settlement.after_all(deliveries, pins)
        if closed and log.isEnabledFor(logging.INFO):
            log_together(closed)
        self.metrics.active_streams.set(self.pipeline.active_streams)

    async def _summary(
        self,
        partition: int,
        summary: SummaryEvent,
        pins: list[tuple[int, Any]],
        deliveries: list[Awaitable[Any]],
        first: int = -1,
        last: int = -1,
    ) -> bool:
        """Send a closed segment's summary (``first``/``last``: its offsets); its pin and
        the deliveries it waits for (its stream's and its own) are added to ``pins`` and
        ``deliveries`` (see :meth:`summaries`). ``False``: not sent (a committed
        transaction holds it, or it could not be serialized and was dead-lettered)."""
        sid = stream_key(summary.stream_id, summary.instance)
        pending = self._deliveries.pop(sid, [])
        if self.committed is not None and not self.committed.send_summary(
            partition, sid, first, last
        ):  # a committed transaction holds it: the pin goes at once
            deliveries.extend(unsettled(pending))
            pins.append((partition, summary.event_id))
            return False
        try:
            value = summary.to_json()
        except Exception as exc:  # contained: the stream's dead letter says why
            log.error("stream %r: summary not serializable: %r", sid, exc, exc_info=exc)
            bad = RejectedRecord(
                stream_id=summary.stream_id,
                reason=INTERNAL_ERROR,
                message=(
                    f"stream {sid!r} (partition {partition}): its summary raised "
                    f"{type(exc).__name__}: {exc}; no summary for this stream"
                ),
                topic=self.topics.audio,
                partition=partition,
                offset=self.ledger.pinned(partition, summary.event_id) or 0,
            )
            await self.dead_letter(bad, unpin=summary.event_id, deliveries=pending)
            return False
        delivery = await self._out(
            partition, self.topics.of(SUMMARIES), summary.stream_id.encode(), value
        )
        self.metrics.events_out_to(self.topics.of(SUMMARIES)).inc()
        deliveries.extend(unsettled(pending))
        if delivery is not None:
            deliveries.append(delivery)
        pins.append((partition, summary.event_id))
        return True

    async def dead_letter(
        self,
        rejected: RejectedRecord,
        *,
        unpin: Any = None,
        deliveries: Sequence[Awaitable[Any]] = (),
    ) -> None:
        """Send ``rejected`` (bounded in size); its record stays pinned, from before
        the send, until the broker has it (then ``unpin`` is released too)."""
        if (
            self.committed is not None
            and rejected.reason != INVALID_MODEL_OUTPUT  # a window's: _window_unsent
            and not self.committed.send_dead_letter(rejected.partition, rejected.offset)
        ):  # a committed transaction holds it
            if unpin is not None:
                self.settlement.after(list(deliveries), rejected.partition, unpin)
            return
        pin = ("dead-letter", next(self._pin_ids))
        self.ledger.pin(rejected.partition, pin, rejected.offset)  # before any await
        bounded = rejected.bounded(self._dead_letter_max_bytes)
        key = (bounded.stream_id or "").encode()
        delivery = await self._out(
            rejected.partition, self.topics.of(REJECTED), key, bounded.to_json()
        )
        if delivery is None:  # not written (``_out``)
            self.ledger.unpin(rejected.partition, pin)
            return
        self.metrics.dead_letters.labels(rejected.reason).inc()
        log.warning(
            "dead letter: stream %r partition %d offset %d reason %s: %s",
            rejected.stream_id,
            rejected.partition,
            rejected.offset,
            rejected.reason,
            bounded.message,
        )
        if unpin is not None:
            self.settlement.after([*deliveries, delivery], rejected.partition, unpin)
        self.settlement.after([delivery], rejected.partition, pin)

    async def _out(self, partition: int | None, topic: str, key: bytes, value: bytes) -> Any:
        """Send one record: at-least-once through ``send``; exactly-once into the
        transaction of the audio partition it comes from, and not at all (``None``)
        when that is unknown (the stream was dropped: its new owner replays it)."""
        if self._route is None:
            return await self._send(topic, key, value)
        if partition is None:
            return None
        return await self._route(partition, topic, key, value)


def log_together(lines: Iterable[str]) -> None:
    """Log ``lines`` at INFO, :data:`LINES_PER_RECORD` to a log record.

    A stream's opening and closing are logged by the hundred when calls start or end
    together, and each log record costs the worker ~55 us of its event loop (Faust's
    handler), ahead of those calls' windows; joined, each line still names its stream.
    """
    batch = list(lines)
    for first in range(0, len(batch), LINES_PER_RECORD):
        log.info("%s", "; ".join(batch[first : first + LINES_PER_RECORD]))
