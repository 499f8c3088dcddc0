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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

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

    _in_flight = 0

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
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            items = [q.item for q in batch]
            self._in_flight = len(items)
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_batch, items)
                inference_ms = (time.perf_counter() - started) * 1000.0
                if self._observe is not None:
                    self._observe(len(items), inference_ms)
                self.batches += 1
                self.items += len(items)
                await self._on_done(items, outputs)
            finally:
                self._in_flight = 0
                for _ in batch:
                    self._queue.task_done()

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
