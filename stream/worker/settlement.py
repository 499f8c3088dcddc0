"""Pins released once their deliveries are acknowledged, and the runtime's first failure.

A record's offset may be committed only when every event that depends on it is on the
broker (docs/delivery.md): the runtime pins offsets in the :class:`OffsetLedger` and
hands :class:`Settlement` the deliveries a pin waits for. One background task per
batch of pins waits for them, unpins, and acks what the ledger then releases; a
delivery that fails after the producer's retries is the runtime's failure, after which
nothing more is acked (the records behind it are replayed). Every background task's
outcome is read here: an exception in one is a failure too, never an unread result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from stream.worker.delivery import OffsetLedger
from stream.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

AckRange = Callable[[int, int, int], None]  # partition, first offset, stop offset


class Settlement:
    """Deliveries → unpins → acks, and the first failure.

    Parameters
    ----------
    ledger : OffsetLedger
        The runtime's offset ledger.
    ack : callable
        ``ack(partition, start, stop)``: offsets ``[start, stop)`` may be committed.
    metrics : WorkerMetrics
        Its ``uncommitted`` gauge per partition is kept here.
    on_fatal : callable, optional
        Called once, with the first failure: the worker must stop and replay.
    """

    def __init__(
        self,
        ledger: OffsetLedger,
        ack: AckRange,
        metrics: WorkerMetrics,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self._ack = ack
        self.metrics = metrics
        self._on_fatal = on_fatal
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background; an exception it raises is a runtime
        failure (``on_fatal``), never an unread task result."""

        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task failed: %r", exc, exc_info=exc)
            self.fail(exc)

    async def join(self) -> None:
        """Wait until every background task has ended (spawned ones included)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        """Cancel the background tasks (stopping: what they held is replayed)."""
        for task in list(self._tasks):
            task.cancel()

    def after(self, deliveries: list[Awaitable[Any]], partition: int, pin: Any) -> None:
        """Unpin ``pin`` once all ``deliveries`` are acknowledged, then ack what it held."""
        self.after_all(deliveries, [(partition, pin)])

    def after_all(self, deliveries: list[Awaitable[Any]], pins: list[tuple[int, Any]]) -> None:
        """Unpin every ``(partition, pin)`` once all ``deliveries`` are acknowledged, then
        ack what they held. Deliveries already acknowledged are not waited for again,
        and one shared by several events is waited for once."""
        waiting = list({id(d): d for d in unsettled(deliveries)}.values())

        async def settle() -> None:
            try:
                await asyncio.gather(*waiting)
            except Exception as exc:  # a send failed after the producer's retries
                log.error("delivery failed for pins %r: %r", pins, exc)
                self.fail(exc)
                return
            for partition, pin in pins:
                self.ledger.unpin(partition, pin)
            for partition in dict.fromkeys(partition for partition, _ in pins):
                self.release(partition)

        self.spawn(settle())

    def fail(self, exc: BaseException) -> None:
        """Nothing after this is acked; the worker must stop and replay (``on_fatal``
        is called once, for the first failure)."""
        if self.failure is not None:
            return
        self.failure = exc
        if self._on_fatal is not None:
            self._on_fatal(exc)

    def release(self, partition: int) -> None:
        """Ack what the ledger releases of ``partition`` (nothing once failed)."""
        if self.failure is not None:
            return  # stopping: nothing past the failure may be committed
        for start, stop in self.ledger.releasable(partition):
            self._ack(partition, start, stop)
        self.metrics.uncommitted_of(partition).set(self.ledger.held(partition))


def unsettled(pending: Iterable[Awaitable[Any]]) -> list[Awaitable[Any]]:
    """``pending`` less the deliveries already acknowledged: failed, cancelled and
    unfinished ones are kept, so waiting for the rest is waiting for all of them."""
    return [
        fut
        for fut in pending
        if not (
            isinstance(fut, asyncio.Future)
            and fut.done()
            and not fut.cancelled()
            and fut.exception() is None
        )
    ]
