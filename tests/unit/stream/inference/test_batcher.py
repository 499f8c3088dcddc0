"""Batcher: bounded batches, every item once and in order, inference off the loop,
backpressure when the queue is full."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

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
