"""``stream.app.ack_range``: a long pin's release acks a range of offsets in Faust's
consumer without Python work per offset, and Faust then commits exactly what
``Consumer.ack`` one offset at a time would have (issue 11, finding 4).

Timings are printed (``-s``), never asserted: they are for the report, and a loaded
CI machine must not fail a correctness test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import pytest
from faust.types import TP

from stream.app import ack_range

N = 1_000_000
TOPIC = "audio"


class _Offset:
    """What ``Consumer.ack`` reads of a message (the seed's per-offset stand-in)."""

    __slots__ = ("__weakref__", "acked", "offset", "partition", "topic", "tp")

    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.acked = False


@pytest.fixture
def consumer() -> Any:
    """A real Faust consumer (never started: no broker needed) acking ``audio``."""
    app = faust.App("ack-range-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    app.topics.add(app.topic(TOPIC))
    asyncio.run(app.topics._update_indices())  # what starting the conductor does
    return app.consumer


def test_a_released_range_commits_like_per_offset_acks(consumer: Any) -> None:
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 10
    ack_range(consumer, tp, 0, 5)  # below the committed offset: ignored, as ack() does
    ack_range(consumer, tp, 10, 20)
    ack_range(consumer, tp, 25, 30)  # after a hole: committable only once it is filled
    assert consumer._new_offset(tp) == 20
    consumer._committed_offset[tp] = 20
    ack_range(consumer, tp, 20, 25)
    ack_range(consumer, tp, 22, 27)  # overlaps what is already acked: no double count
    assert consumer._new_offset(tp) == 30
    assert consumer._new_offset(tp) is None  # nothing new


def test_a_million_offsets_in_one_range(consumer: Any) -> None:
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 0
    started = time.perf_counter()
    for offset in range(N):  # before: one Consumer.ack per offset
        consumer.ack(_Offset(tp, offset))
    per_offset_s = time.perf_counter() - started
    assert consumer._new_offset(tp) == N

    consumer._committed_offset[tp] = N
    started = time.perf_counter()
    ack_range(consumer, tp, N, 2 * N)
    range_s = time.perf_counter() - started
    started = time.perf_counter()
    assert consumer._new_offset(tp) == 2 * N
    commit_s = time.perf_counter() - started
    print(
        f"\n[ack] {N:,} offsets: Consumer.ack per offset {per_offset_s:.3f} s, "
        f"ack_range {range_s * 1000:.1f} ms; Faust's commit walk of them {commit_s:.3f} s "
        "(noisy: shared 2-core machine)"
    )
