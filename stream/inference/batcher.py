"""Cross-stream, deadline-aware micro-batching of model windows.

Thousands of streams each produce a window every ``hop_seconds``; one onnxruntime
call per window wastes most of the time in call overhead. The :class:`Batcher`
gathers windows from *all* streams into one call of at most ``max_batch`` windows,
and never lets a window wait more than ``max_wait_ms`` for company: the batch closes
when it is full or when its oldest window's budget runs out, whichever is first.

Inference runs in a worker thread (onnxruntime releases the GIL), so the event loop
keeps consuming frames while a batch runs. The queue in front of it is bounded:
when inference falls behind, :meth:`Batcher.submit` waits, the consumer stops fetching
records, and Kafka holds the backlog instead of the worker's memory.

When a whole batch is already queued as one finishes, its inference starts before the
finished batch's ``on_done`` runs on the event loop: in a burst (every stream's window
due in the same fetch) the thread computes batch *k+1* while the loop builds and sends
batch *k*'s events, instead of each waiting for the other. ``on_done`` still runs once
per batch, in batch order, and a batch is still made of the same items (the first
``max_batch`` queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stream.settings import BatchingPolicy

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Out = TypeVar("Out")

RunBatch = Callable[[Sequence[Item]], Sequence[Out]]
OnDone = Callable[[Sequence[Item], Sequence[Out]], Awaitable[None]]
Observe = Callable[[int, float], None]


@dataclass(frozen=True, slots=True)
class _Queued(Generic[Item]):
    item: Item
    deadline: float  # time.monotonic() seconds


@dataclass(frozen=True, slots=True)
class _Running(Generic[Item, Out]):
    """A batch handed to the executor: its outputs and the ms ``run_batch`` took."""

    items: list[Item]
    outputs: asyncio.Future[tuple[Sequence[Out], float]]


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    """Read a batch's outcome no one awaits any more (the batcher stopped or failed):
    an exception is logged, never left for asyncio to report as unretrieved."""
    if not future.cancelled() and future.exception() is not None:
        log.warning(
            "a batch started ahead ended with %r after the batcher stopped", future.exception()
        )


class Batcher(Generic[Item, Out]):
    """Group items from any number of producers into batched calls.

    Parameters
    ----------
    run_batch: synchronous ``items -> outputs`` (one output per item, same order);
        runs in ``executor``.
    on_done: awaited on the event loop with each batch and its outputs, in batch
        order; slow ``on_done`` slows the batcher, which fills the queue, which slows
        :meth:`submit` (backpressure end to end).
    policy: ``max_batch``, ``max_wait_ms``, ``queue_windows``.
    executor: where ``run_batch`` runs; a private single thread by default.
    observe: called with ``(batch_size, inference_ms)`` after each call (metrics).
    on_error: called if ``run_batch`` or ``on_done`` raises; the loop then stops
        (a worker must crash rather than silently stop inferring).
    """

    def __init__(
        self,
        run_batch: RunBatch[Item, Out],
        on_done: OnDone[Item, Out],
        policy: BatchingPolicy,
        *,
        executor: Executor | None = None,
        observe: Observe | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._on_done = on_done
        self.policy = policy
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tympan-infer")
        self._observe = observe
        self._on_error = on_error
        self.error: BaseException | None = None
        self._queue: asyncio.Queue[_Queued[Item]] = asyncio.Queue(policy.queue_windows)
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    @property
    def pending(self) -> int:
        """Items queued and not yet handed to ``on_done``."""
        return self._queue.qsize() + self._in_flight

    _in_flight = 0  # items taken from the queue whose on_done has not returned

    async def submit(self, item: Item, *, max_wait_ms: float | None = None) -> None:
        """Queue ``item``; waits while the queue is full (backpressure).

        ``max_wait_ms`` shortens this item's budget below the policy's.
        """
        budget_ms = self.policy.max_wait_ms if max_wait_ms is None else max_wait_ms
        await self._queue.put(_Queued(item, time.monotonic() + budget_ms / 1000.0))
        self._arrived.set()

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def join(self) -> None:
        """Wait until every submitted item has gone through ``on_done``."""
        await self._queue.join()

    async def stop(self) -> None:
        """Stop the loop (pending items are dropped: their offsets were never acked)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._own_executor:
            self._executor.shutdown(wait=False)

    async def _loop(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("batcher stopped: %r", exc)
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)

    async def _serve(self) -> None:
        ahead: _Running[Item, Out] | None = None
        try:
            while True:
                running = ahead or self._run(await self._next_batch())
                ahead = None
                try:
                    outputs, inference_ms = await running.outputs
                    if self._observe is not None:
                        self._observe(len(running.items), inference_ms)
                    self.batches += 1
                    self.items += len(running.items)
                    if self._queue.qsize() >= self.policy.max_batch:  # a whole batch: start it
                        ahead = self._run(self._take_now(self.policy.max_batch))
                    await self._on_done(running.items, outputs)
                finally:
                    self._in_flight -= len(running.items)
                    for _ in running.items:
                        self._queue.task_done()
        finally:
            if ahead is not None:  # stopped or failed: its outcome is read, never lost
                ahead.outputs.add_done_callback(_consume_outcome)

    def _run(self, batch: list[_Queued[Item]]) -> _Running[Item, Out]:
        """Start ``batch``'s inference in the executor."""
        items = [q.item for q in batch]
        self._in_flight += len(items)
        loop = asyncio.get_running_loop()
        return _Running(items, loop.run_in_executor(self._executor, self._timed, items))

    def _timed(self, items: Sequence[Item]) -> tuple[Sequence[Out], float]:
        started = time.perf_counter()
        outputs = self._run_batch(items)
        return outputs, (time.perf_counter() - started) * 1000.0

    def _take_now(self, n: int) -> list[_Queued[Item]]:
        return [self._queue.get_nowait() for _ in range(n)]

    async def _next_batch(self) -> list[_Queued[Item]]:
        first = await self._queue.get()
        batch = [first]
        deadline = min(first.deadline, time.monotonic() + self.policy.max_wait_ms / 1000.0)
        while len(batch) < self.policy.max_batch:
            try:
                queued = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await self._wait_arrival(remaining):
                    break
                continue
            batch.append(queued)
            deadline = min(deadline, queued.deadline)
        return batch

    async def _wait_arrival(self, timeout_s: float) -> bool:
        self._arrived.clear()
        if not self._queue.empty():
            return True
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
