"""Failover under live load on the three-node cluster (issue #26, point 3).

Real-time 8 kHz μ-law calls from ``tympan produce --realtime --streams N``, two
``tympan worker`` processes in one group, and a separate consumer of the labels and
summaries topics that stamps each event when it becomes readable. While the calls
play, one fault:

* ``kill-leader``: kill -9 the broker leading most audio partitions, restart it later
  (the fault's span, for latency: until every partition has a live leader again);
* ``rolling-restart``: each broker in turn stopped and started, the next one only once
  every partition is fully in sync again;
* ``frozen-broker``: one broker SIGSTOPped for longer than the session timeouts, then
  SIGCONTed.

Then: every frame of every call is in the audio topic once and in order (the producer
rode through), every call has all its windows and its summary, exactly the events the
pipeline gives on those frames, every duplicated event id has identical content, and
neither worker nor producer exited. The p99 window latency (event readable here minus
the capture time of the window's last sample) before, during and after the fault is printed
and appended to ``test-artifacts/failover.md``; it is reported, never asserted.

``TYMPAN_TEST_SCALE=ci`` (``make test``): 12 short calls and the ``kill-leader`` fault
only (``$TYMPAN_FAILOVER_FAULTS`` names others); ``full``: 200 calls of 90 s and all
three faults.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from feeds import Producer, assert_whole, call_wav, landed
from worker_harness import WorkerFarm, assert_same_events, tiny_model, wait_for

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.inference.session import OnnxModel
from stream.kafka.admin import ensure_topics
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record
from tests.support.cluster import Cluster
from tests.support.replay import run_sync

pytestmark = pytest.mark.faults

FULL = os.environ.get("TYMPAN_TEST_SCALE", "ci") == "full"
CALLS, CALL_S = (200, 90.0) if FULL else (12, 16.0)
DOWN_S = 30.0 if FULL else 12.0  # a killed broker stays down this long
FREEZE_S = 30.0 if FULL else 16.0  # > the workers' session timeout (10 s) and KRaft's (9 s)
WORKER_FLAGS = ("--idle-timeout-s", "600")  # calls end with EOS, never by the wall clock
# the faults the bounded form runs (comma-separated; the full form runs every one)
BOUNDED_FAULTS = os.environ.get("TYMPAN_FAILOVER_FAULTS", "kill-leader").split(",")


@dataclass
class Fault:
    """When the fault began and ended (wall clock, like the frames' capture times)."""

    name: str
    started_s: float = 0.0
    ended_s: float = 0.0


def _kill_leader(cluster: Cluster, topics: Topics, fault: Fault) -> None:
    """kill -9 the leader of most audio partitions; the fault lasts until every partition
    of tympan's topics has a live leader again; the node restarts later (``DOWN_S``)."""
    node = cluster.leader_of_most(topics.audio)
    names = list(topics.names())
    fault.started_s = time.time()
    cluster.kill(node)
    while any(p["leader"] in (node, -1) for t in cluster.metadata(names) for p in t["partitions"]):
        time.sleep(0.5)
    fault.ended_s = time.time()
    time.sleep(max(0.0, fault.started_s + DOWN_S - time.time()))
    cluster.start(node)


def _rolling_restart(cluster: Cluster, topics: Topics, fault: Fault) -> None:
    fault.started_s = time.time()
    cluster.rolling_restart(list(topics.names()))
    fault.ended_s = time.time()


def _freeze(cluster: Cluster, topics: Topics, fault: Fault) -> None:
    node = cluster.leader_of_most(topics.audio)
    fault.started_s = time.time()
    cluster.freeze(node)
    try:
        time.sleep(FREEZE_S)
    finally:
        cluster.thaw(node)
    fault.ended_s = time.time()


FAULTS: dict[str, Callable[[Cluster, Topics, Fault], None]] = {
    "kill-leader": _kill_leader,
    "rolling-restart": _rolling_restart,
    "frozen-broker": _freeze,
}


@dataclass
class ResultTail:
    """Reads the labels and summaries topics from their beginning in a thread, stamping
    each event with the wall-clock time it became readable here."""

    bootstrap: str
    topics: list[str]
    events: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    emitted_s: dict[str, float] = field(default_factory=dict)  # event id → its CreateTime
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ResultTail:
        self.events = {t: [] for t in self.topics}
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(t, p)
                for t in self.topics
                for p in sorted(consumer.partitions_for_topic(t) or await self._partitions(t))
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not self._stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=200)
                except Exception as exc:  # a broker down on purpose: the client retries
                    self.errors.append(repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                now = time.time()
                for tp, records in batches.items():
                    for r in records:
                        event = json.loads(r.value)
                        self.events[tp.topic].append((now, event))
                        self.emitted_s.setdefault(event["event_id"], r.timestamp / 1000)
        finally:
            await consumer.stop()

    async def _partitions(self, topic: str) -> set[int]:
        from stream.kafka.admin import describe_topics
        from stream.kafka.config import KafkaClientConfig

        client = KafkaClientConfig(bootstrap_servers=self.bootstrap)
        (info,) = await describe_topics(client, [topic])
        return set(range(info.partitions))

    def ids(self, topic: str) -> set[str]:
        return {e["event_id"] for _, e in list(self.events[topic])}


def _expected(
    model_dir: Path, by_stream: dict[str, list[Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The events the pipeline gives on exactly the frames that landed, each call's in
    seq order, calls interleaved (the order across calls does not change any event)."""
    model = OnnxModel.load(model_dir)
    pipeline = Pipeline(
        model.spec,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(model.spec),
        PipelinePolicy(),
    )
    streams = list(by_stream.values())
    records = []
    for i in range(max(map(len, streams))):
        for stream in streams:
            if i < len(stream):
                r = stream[i]
                records.append(Record(r.key, r.value, tuple(r.headers), "audio", 0, len(records)))
    labels, summaries, rejected = run_sync(pipeline, records, lambda x: model.run(x).probabilities)
    assert not rejected, rejected[:3]
    return (
        {e.event_id: e.to_dict() for e in labels},
        {e.event_id: e.to_dict() for e in summaries},
    )


def _p99(values: list[float]) -> str:
    return f"{np.percentile(values, 99):.0f}" if values else "n/a"


def _latency_line(
    name: str,
    fault: Fault,
    labels: list[tuple[float, dict[str, Any]]],
    emitted_s: dict[str, float],
) -> str:
    """p99 (and max) window latency of the windows captured before, during and after the
    fault (each window's first copy: the one users saw); ``emit``: the same up to the
    worker's send (the event's CreateTime), which leaves out the results' own path."""
    seen: set[str] = set()
    phases: dict[str, tuple[list[float], list[float]]] = {
        "before": ([], []),
        "during": ([], []),
        "after": ([], []),
    }
    for received_s, event in labels:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        captured = event["capture_time_s"]
        phase = (
            "before"
            if captured < fault.started_s
            else "during"
            if captured <= fault.ended_s
            else "after"
        )
        phases[phase][0].append((received_s - captured) * 1000)
        phases[phase][1].append((emitted_s[event["event_id"]] - captured) * 1000)
    figures = ", ".join(
        f"{phase} {_p99(ms)} ms (emit {_p99(emit)}, max {max(ms, default=0):.0f}, "
        f"{len(ms)} windows)"
        for phase, (ms, emit) in phases.items()
    )
    return (
        f"[failover] {name}: {CALLS} calls x {CALL_S:g} s, "
        f"fault {fault.ended_s - fault.started_s:.1f} s; window latency p99 {figures}"
    )


@pytest.fixture
def session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYMPAN_SESSION_TIMEOUT_S", "10")


def _balanced(farm: WorkerFarm, partitions: int) -> bool:
    latest: list[set[int]] = []
    for worker in farm.workers:
        found = re.findall(r"partitions assigned: \[([0-9, ]*)\]", worker.log_text())
        if not found:
            return False
        latest.append({int(p) for p in found[-1].split(",") if p.strip()})
    together = set().union(*latest)
    return all(latest) and sum(map(len, latest)) == partitions == len(together)


@pytest.fixture
def farm(cluster: Cluster, tmp_path: Path, session_timeout: None) -> Iterator[WorkerFarm]:
    topics = Topics().with_prefix(f"test-failover-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(cluster.client, topics))
    farm = WorkerFarm(cluster.bootstrap, topics, tiny_model(tmp_path / "model"), tmp_path)
    try:
        yield farm
    finally:
        farm.stop_all()


@pytest.mark.parametrize("name", list(FAULTS))
def test_calls_survive_a_broker_fault(
    name: str, cluster: Cluster, farm: WorkerFarm, tmp_path: Path, artifacts_dir: Path
) -> None:
    if not FULL and name not in BOUNDED_FAULTS:
        pytest.skip(f"the bounded form runs {BOUNDED_FAULTS} ($TYMPAN_FAILOVER_FAULTS); full all")
    topics = farm.topics
    workers = [farm.spawn(*WORKER_FLAGS), farm.spawn(*WORKER_FLAGS)]
    wait_for(
        lambda: _balanced(farm, topics.audio_partitions),
        timeout_s=180,
        what="both workers holding the audio partitions",
        farm=farm,
    )
    wav = call_wav(tmp_path / "call.wav", seconds=CALL_S)
    fault = Fault(name)
    with ResultTail(cluster.bootstrap, [topics.labels, topics.summaries]) as tail:
        producer = Producer.start(
            cluster.bootstrap, topics.prefix, wav, CALLS, tmp_path / "produce.log"
        )
        try:
            wait_for(
                lambda: bool(tail.ids(topics.labels)), timeout_s=120, what="first events", farm=farm
            )
            FAULTS[name](cluster, topics, fault)
            rc = producer.wait(CALL_S + 300)
        finally:
            producer.kill()
        assert rc == 0, f"tympan produce exited {rc}:\n{producer.output()[-3000:]}"
        by_stream = landed(cluster.bootstrap, topics.audio)
        assert_whole(by_stream, CALLS)
        want_labels, want_summaries = _expected(farm.model_dir, by_stream)

        def arrived() -> bool:
            return set(want_labels) <= tail.ids(topics.labels) and set(want_summaries) <= tail.ids(
                topics.summaries
            )

        wait_for(arrived, timeout_s=300, what=f"{name}: every window and summary", farm=farm)
        time.sleep(2.0)  # a straggling duplicate sent just now is checked too
    exits = {w.log_path.name: w.proc.poll() for w in workers if w.proc is not None}
    assert all(code is None for code in exits.values()), f"a worker exited: {exits}\n{farm.logs()}"
    labels = [e for _, e in tail.events[topics.labels]]
    summaries = [e for _, e in tail.events[topics.summaries]]
    got_labels = assert_same_events(labels, want_labels)
    assert_same_events(summaries, want_summaries)
    duplicates = len(labels) - len(got_labels)
    line = _latency_line(name, fault, tail.events[topics.labels], tail.emitted_s) + (
        f"; {len(want_labels)} windows, {len(want_summaries)} summaries, "
        f"{duplicates} duplicate window events"
    )
    print(line)
    with (artifacts_dir / "failover.md").open("a") as report:
        report.write(f"- {time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
