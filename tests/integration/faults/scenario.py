"""Building blocks of a fault scenario: streams and their expected events, a paced
producer running in the background, and workers started the way an operator would.

Workers run with ``--idle-timeout-s 600``: streams here end with their EOS frame, so
no summary depends on the wall clock (closing idle streams from the data is issue 11's
determinism item, built in the domain core).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checker import Monitor, Outcome, check_outcome
from worker_harness import (
    WorkerFarm,
    WorkerProcess,
    expected_events,
    interleave,
    stream_frames,
    tiny_model,
    wait_for_count,
)

from stream.kafka.topics import Topics
from stream.produce import produce_frames
from stream.wire import AudioFrame

SCALE = os.environ.get("TYMPAN_TEST_SCALE", "ci")
FULL = SCALE == "full"
WORKER_FLAGS = ("--idle-timeout-s", "600")
SESSION_TIMEOUT_S = 6  # Kafka's minimum: a killed or frozen worker is noticed soonest


@dataclass
class Scenario:
    """Streams, their expected events, the workers, and a monitor."""

    broker: str
    topics: Topics
    tmp: Path
    n_streams: int
    seconds: float
    name: str
    streams: list[list[AudioFrame]] = field(default_factory=list)
    expected_labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    farm: WorkerFarm | None = None
    monitor: Monitor | None = None

    def __post_init__(self) -> None:
        model_dir = tiny_model(self.tmp / "model")
        self.streams = [
            stream_frames(
                f"{self.name}-{i}", seconds=self.seconds, loud=i % 2 == 0, seed=i, chunk_ms=40
            )
            for i in range(self.n_streams)
        ]
        self.expected_labels, self.expected_summaries = expected_events(model_dir, self.streams)
        self.farm = WorkerFarm(self.broker, self.topics, model_dir, self.tmp)
        self.monitor = Monitor(
            self.broker,
            self.farm.app_id,
            self.topics.audio,
            self.topics.audio_partitions,
            self.farm,
        )

    def spawn(self, *extra: str) -> WorkerProcess:
        assert self.farm is not None
        return self.farm.spawn(*WORKER_FLAGS, *extra)

    def wait_first_events(self, n: int = 1) -> None:
        """Wait until workers are consuming (a fault before that tests nothing)."""
        wait_for_count(
            self.broker, self.topics.labels, n, timeout_s=120, what="first events", farm=self.farm
        )

    def feeder(self, slices: int, pause_s: float) -> Feeder:
        return Feeder(self.broker, self.topics, interleave(self.streams), slices, pause_s)

    def wait_balanced(self, timeout_s: float = 120.0) -> None:
        """Wait until every worker holds partitions and together they hold each audio
        partition once: a group still forming would move partitions mid-run, a fault
        the scenario did not mean to inject."""
        assert self.farm is not None
        farm = self.farm
        every = set(range(self.topics.audio_partitions))

        def balanced() -> bool:
            latest: list[set[int]] = []
            for worker in farm.workers:
                found = re.findall(r"partitions assigned: \[([0-9, ]*)\]", worker.log_text())
                if not found:
                    return False
                latest.append({int(p) for p in found[-1].split(",") if p.strip()})
            together = sum(len(p) for p in latest)
            return all(latest) and together == len(every) and set().union(*latest) == every

        deadline = time.monotonic() + timeout_s
        while not balanced():
            assert time.monotonic() < deadline, "the worker group did not settle"
            time.sleep(0.5)

    def start(self, feeder: Feeder, first_events: int = 1) -> None:
        """Wait for a settled group, send the first slice, wait until workers turn it
        into events, then let the rest flow: faults then land while streams are open
        in running workers."""
        self.wait_balanced()
        feeder.start()
        self.wait_first_events(first_events)
        feeder.go.set()

    def check(self, **kw: Any) -> Outcome:
        assert self.farm is not None and self.monitor is not None
        return check_outcome(
            broker=self.broker,
            topics=self.topics,
            farm=self.farm,
            monitor=self.monitor,
            expected_labels=self.expected_labels,
            expected_summaries=self.expected_summaries,
            name=self.name,
            **kw,
        )


class Feeder(threading.Thread):
    """Produces ``frames`` in ``slices`` parts, ``pause_s`` apart, in the background,
    so that faults land while streams are open. Retries a slice while the broker is
    down on purpose."""

    def __init__(
        self, broker: str, topics: Topics, frames: Sequence[AudioFrame], slices: int, pause_s: float
    ) -> None:
        super().__init__(name="fault-feeder", daemon=True)
        self.broker, self.topics = broker, topics
        # the first part (a quarter) completes a few windows per stream, so that
        # Scenario.start sees events before the rest is released
        n, head = len(frames), len(frames) // 4
        rest = slices - 1
        self.parts = [list(frames[:head])] + [
            list(frames[head + (n - head) * i // rest : head + (n - head) * (i + 1) // rest])
            for i in range(rest)
        ]
        self.pause_s = pause_s
        self.error: BaseException | None = None
        self.gate = threading.Event()  # cleared: wait (the broker is down on purpose)
        self.gate.set()
        self.waiting = threading.Event()  # set while held at the gate, between slices
        self.sent_slices = 0
        self.go = threading.Event()  # set once workers consume: the rest may follow

    def run(self) -> None:
        try:
            for i, part in enumerate(self.parts):
                if i:
                    time.sleep(self.pause_s)
                if not self.gate.is_set():
                    self.waiting.set()
                    self.gate.wait()
                    self.waiting.clear()
                self._send(part)
                self.sent_slices += 1
                if i == 0:
                    self.go.wait()
        except BaseException as exc:
            self.error = exc

    def _send(self, part: list[AudioFrame]) -> None:
        for attempt in range(30):
            try:
                asyncio.run(produce_frames(self.broker, self.topics.audio, part, restamp=False))
                return
            except Exception:
                if attempt == 29:
                    raise
                time.sleep(2.0)

    def hold(self, timeout_s: float = 120) -> None:
        """Stop between two slices (no half-sent slice across a broker outage)."""
        self.gate.clear()
        if not self.waiting.wait(timeout_s) and self.is_alive():
            raise AssertionError("the feeder did not reach a slice boundary")

    def release(self) -> None:
        self.gate.set()

    def finish(self, timeout_s: float = 300) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "the feeder did not finish"
        assert self.error is None, f"the feeder failed: {self.error!r}"


def chaos_delays(seed: int, n: int, low_s: float, high_s: float) -> list[float]:
    """The fault schedule of one seed: ``n`` delays between faults."""
    rng = random.Random(seed)
    return [rng.uniform(low_s, high_s) for _ in range(n)]
