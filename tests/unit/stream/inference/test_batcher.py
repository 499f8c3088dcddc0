"""Batcher: bounded batches, every item once and in order, inference off the loop,
backpressure when the queue is full."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from stream.inference.batcher import Batcher
from stream.settings import BatchingPolicy


def test_items_from_many_producers_come_back_once_in_bounded_batches() -> None:
    policy = BatchingPolicy(max_batch=8, max_wait_ms=5, queue_windows=16)
    seen: list[int] = []
    sizes: list[int] = []
    threads: set[str] = set()

    def run_batch(items: Sequence[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        return [i * 2 for i in items]

    async def on_done(items: Sequence[int], outputs: Sequence[int]) -> None:
        assert list(outputs) == [i * 2 for i in items]
        seen.extend(items)
        sizes.append(len(items))

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(run_batch, on_done, policy)
        batcher.start()

        async def producer(base: int) -> None:
            for i in range(50):
                await batcher.submit(base + i)

        await asyncio.gather(*(producer(b) for b in (0, 1000, 2000)))
        await batcher.join()
        await batcher.stop()

    asyncio.run(main())
    assert sorted(seen) == sorted([b + i for b in (0, 1000, 2000) for i in range(50)])
    for base in (0, 1000, 2000):  # each producer's items stay in order
        mine = [s for s in seen if base <= s < base + 1000]
        assert mine == sorted(mine)
    assert max(sizes) <= 8 and sum(sizes) == 150
    assert max(sizes) > 1  # items from concurrent producers do share calls
    assert threading.main_thread().name not in threads


def test_a_lone_item_is_not_held_for_company() -> None:
    policy = BatchingPolicy(max_batch=64, max_wait_ms=1, queue_windows=64)
    done = asyncio.Event

    async def main() -> list[int]:
        got: list[int] = []
        finished = done()

        async def on_done(items: Sequence[int], outputs: Sequence[int]) -> None:
            got.extend(outputs)
            finished.set()

        batcher: Batcher[int, int] = Batcher(lambda xs: list(xs), on_done, policy)
        batcher.start()
        await batcher.submit(7)
        await finished.wait()
        await batcher.stop()
        return got

    assert asyncio.run(main()) == [7]


def test_a_full_queue_makes_submit_wait_until_inference_catches_up() -> None:
    policy = BatchingPolicy(max_batch=2, max_wait_ms=0, queue_windows=2)
    gate = threading.Event()

    def run_batch(items: Sequence[int]) -> list[int]:
        gate.wait(10)
        return list(items)

    async def main() -> tuple[bool, int]:
        batcher: Batcher[int, int] = Batcher(run_batch, _ignore, policy)
        batcher.start()
        for i in range(2):  # first batch: taken by the (blocked) inference thread
            await batcher.submit(i)
        for _ in range(20):
            await asyncio.sleep(0)
        for i in range(2, 4):  # fills the queue
            await batcher.submit(i)
        blocked = asyncio.ensure_future(batcher.submit(4))
        for _ in range(20):
            await asyncio.sleep(0)
        was_blocked = not blocked.done()
        gate.set()
        await blocked
        await batcher.join()
        total = batcher.items
        await batcher.stop()
        return was_blocked, total

    was_blocked, total = asyncio.run(main())
    assert was_blocked
    assert total == 5


async def _ignore(items: Sequence[int], outputs: Sequence[int]) -> None:
    return None


def test_a_failing_batch_stops_the_loop_and_reports_the_error() -> None:
    policy = BatchingPolicy(max_batch=4, max_wait_ms=0, queue_windows=4)
    errors: list[BaseException] = []

    def run_batch(items: Sequence[int]) -> list[int]:
        raise ValueError(f"bad batch {list(items)}")

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(run_batch, _ignore, policy, on_error=errors.append)
        batcher.start()
        await batcher.submit(1)
        while not errors:
            await asyncio.sleep(0.001)
        await batcher.stop()

    asyncio.run(main())
    assert isinstance(errors[0], ValueError) and "bad batch [1]" in str(errors[0])


def test_a_whole_queued_batch_is_inferred_while_the_previous_ones_events_are_sent() -> None:
    """In a burst the thread runs batch k+1 while the loop handles batch k: ``on_done``
    of the first batch waits until the second batch's inference has started (run one
    after the other, it would wait in vain)."""
    policy = BatchingPolicy(max_batch=4, max_wait_ms=50, queue_windows=16)
    started: list[list[int]] = []
    second_started = threading.Event()
    done: list[list[int]] = []
    overlapped: list[bool] = []

    def run_batch(items: Sequence[int]) -> list[int]:
        started.append(list(items))
        if len(started) == 2:
            second_started.set()
        return [i * 10 for i in items]

    async def on_done(items: Sequence[int], outputs: Sequence[int]) -> None:
        assert list(outputs) == [i * 10 for i in items]
        if not done:
            overlapped.append(await asyncio.to_thread(second_started.wait, 5.0))
        done.append(list(items))

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(run_batch, on_done, policy)
        for i in range(10):  # two whole batches and a part, queued before the loop runs
            await batcher.submit(i)
        batcher.start()
        await batcher.join()
        await batcher.stop()

    asyncio.run(main())
    assert overlapped == [True]
    assert done == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # same batches, in order
    assert started == done


def test_a_failing_on_done_leaves_no_batch_started_ahead_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = BatchingPolicy(max_batch=2, max_wait_ms=0, queue_windows=8)
    errors: list[BaseException] = []

    def run_batch(items: Sequence[int]) -> list[int]:
        if items[0] == 2:  # the batch started ahead fails too
            raise ValueError("ahead")
        return list(items)

    async def on_done(items: Sequence[int], outputs: Sequence[int]) -> None:
        raise RuntimeError("sending failed")

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(run_batch, on_done, policy, on_error=errors.append)
        for i in range(4):
            await batcher.submit(i)
        batcher.start()
        while not errors:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # the batch started ahead ends in its thread
        await batcher.stop()

    with caplog.at_level("WARNING"):
        asyncio.run(main())
    assert isinstance(errors[0], RuntimeError)
    assert "started ahead ended with ValueError('ahead')" in caplog.text
