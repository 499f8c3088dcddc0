"""The one set of assertions every fault scenario ends with (issue 11).

After a fault, on the real broker:

* every expected window event and summary arrived, and nothing else (by event id);
* every copy of an event (replays after a fault) is identical to the expected one;
* the dead letters are exactly the injected ones (by topic/partition/offset and
  reason), duplicates identical;
* the consumer group's committed offsets reach the end of the audio topic (lag 0)
  and never went backwards while the scenario ran;
* every worker's RSS stayed under a bound.

:class:`Monitor` samples committed offsets and RSS in a background thread while the
scenario runs; :func:`check_outcome` waits for the end state and asserts it all,
returning the figures the report states. Written against the ``tympan worker`` CLI
and the broker only, so it holds for any runtime behind that CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_harness import (
    WorkerFarm,
    WorkerProcess,
    by_id,
    comparable,
    wait_for,
)

from stream.kafka.admin import describe_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

RSS_LIMIT_MB = 1500.0  # a worker (Faust, onnxruntime, the tiny model) idles near 250 MB


def rss_mb(worker: WorkerProcess) -> float | None:
    """Resident memory of a running worker process, in MB (``None``: not running)."""
    if worker.proc is None or worker.proc.poll() is not None:
        return None
    try:
        status = Path(f"/proc/{worker.proc.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return None


@dataclass
class Monitor:
    """Samples the group's committed offsets and the workers' RSS every ``every_s``."""

    broker: str
    group: str
    topic: str
    partitions: int
    farm: WorkerFarm
    every_s: float = 1.0
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition → samples
    max_rss_mb: float = 0.0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, name="fault-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._sample_forever())

    async def _sample_forever(self) -> None:
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin: Any = None
        while not self._stop.is_set():
            for worker in list(self.farm.workers):
                rss = rss_mb(worker)
                if rss is not None:
                    self.max_rss_mb = max(self.max_rss_mb, rss)
            try:
                if admin is None:
                    admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
                    await admin.start()
                got = await asyncio.wait_for(
                    admin.list_consumer_group_offsets(self.group), timeout=10
                )
                for tp, meta in got.items():
                    mine = isinstance(tp, TopicPartition) and tp.topic == self.topic
                    if mine and meta.offset >= 0:
                        self.offsets.setdefault(tp.partition, []).append(meta.offset)
            except Exception as exc:  # the broker may be down on purpose
                self.errors.append(repr(exc))
                if admin is not None:
                    with contextlib.suppress(Exception):
                        await admin.close()
                    admin = None
            await asyncio.sleep(self.every_s)
        if admin is not None:
            await admin.close()

    def assert_offsets_never_went_back(self) -> None:
        for partition, samples in self.offsets.items():
            for before, after in itertools.pairwise(samples):
                assert after >= before, (
                    f"{self.topic} partition {partition}: committed offset went back from "
                    f"{before} to {after} (samples {samples})"
                )


@dataclass
class Outcome:
    """What a scenario delivered, for the report."""

    windows: int
    summaries: int
    duplicates: int
    dead_letters: int
    max_rss_mb: float
    offset_samples: int

    def line(self, name: str) -> str:
        return (
            f"[faults] {name}: windows={self.windows} summaries={self.summaries} "
            f"duplicates={self.duplicates} dead_letters={self.dead_letters} "
            f"max_rss_mb={self.max_rss_mb:.0f} offset_samples={self.offset_samples}"
        )


class TopicTail:
    """Reads a topic from the beginning and keeps its place: each :meth:`poll` adds
    only what arrived since (re-reading 100,000 dead letters at every poll of a full
    poison run would take most of the run)."""

    def __init__(self, broker: str, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.items: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._consumer: Any = None

    def poll(self) -> list[dict[str, Any]]:
        self._loop.run_until_complete(self._drain())
        return self.items

    async def _drain(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.broker,
                group_id=None,
                enable_auto_commit=False,
                # what a reader of tympan's results sees: an exactly-once worker's
                # aborted transactions never count (nothing changes at at-least-once)
                isolation_level="read_committed",
            )
            await consumer.start()
            client = KafkaClientConfig(bootstrap_servers=self.broker)
            (info,) = await describe_topics(client, [self.topic])
            tps = [TopicPartition(self.topic, p) for p in range(info.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._consumer = consumer
        consumer = self._consumer
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        while await self._behind(consumer, ends):
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                self.items.extend(json.loads(r.value) for r in records)

    @staticmethod
    async def _behind(consumer: Any, ends: dict[Any, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return True
        return False

    def close(self) -> None:
        if self._consumer is not None:
            self._loop.run_until_complete(self._consumer.stop())
        self._loop.close()


def dead_letter_key(dead: dict[str, Any]) -> tuple[str, int, int, str]:
    return (dead["topic"], dead["partition"], dead["offset"], dead["reason"])


def committed_lag(broker: str, group: str, topic: str, partitions: int) -> int:
    """Records past the group's committed offsets, summed over ``topic``'s partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def lag() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            behind = 0
            for tp in tps:
                committed = await consumer.committed(tp)
                behind += ends[tp] - (committed or 0)
            return behind
        finally:
            await consumer.stop()

    return asyncio.run(lag())


def check_outcome(
    *,
    broker: str,
    topics: Topics,
    farm: WorkerFarm,
    monitor: Monitor,
    expected_labels: dict[str, dict[str, Any]],
    expected_summaries: dict[str, dict[str, Any]],
    injected: Iterable[tuple[str, int, int, str]] = (),
    dead_letter_ok: Callable[[dict[str, Any]], bool] | None = None,
    timeout_s: float = 240,
    name: str = "scenario",
    tick: Callable[[], object] | None = None,
    ready: Callable[[], bool] | None = None,
    only_streams: set[str] | None = None,
) -> Outcome:
    """Wait for the end state of a scenario, then assert the contract on it.

    ``injected``: the dead letters the scenario caused on purpose, as
    ``(topic, partition, offset, reason)``; every one must arrive and no other.
    ``dead_letter_ok``: instead of an exact set, a predicate every dead letter must
    satisfy (the poison corpus, whose reasons depend on the mutation).
    ``tick``: called at every poll while waiting (a test playing the supervisor).
    ``ready``: one more condition of the end state (the poison corpus: every hostile
    record accounted for).
    ``only_streams``: check exactly the events of these streams (others, opened by
    hostile records that happened to be valid frames, are the caller's to account).
    """
    want_labels, want_summaries = set(expected_labels), set(expected_summaries)
    injected = set(injected)
    tails = {t: TopicTail(broker, t) for t in (topics.labels, topics.summaries, topics.rejected)}

    def arrived() -> bool:
        if tick is not None:
            tick()
        labels = {e["event_id"] for e in tails[topics.labels].poll()}
        summaries = {e["event_id"] for e in tails[topics.summaries].poll()}
        if not (want_labels <= labels and want_summaries <= summaries):
            return False
        if injected:
            dead = {dead_letter_key(d) for d in tails[topics.rejected].poll()}
            if not injected <= dead:
                return False
        if ready is not None and not ready():
            return False
        return committed_lag(broker, farm.app_id, topics.audio, topics.audio_partitions) == 0

    try:
        wait_for(arrived, timeout_s=timeout_s, what=f"{name}: every event, lag 0", farm=farm)
        time.sleep(2.0)  # a straggling duplicate sent just now is checked too
        labels = list(tails[topics.labels].poll())
        summaries = list(tails[topics.summaries].poll())
        dead = list(tails[topics.rejected].poll())
    finally:
        for tail in tails.values():
            tail.close()
    if only_streams is not None:
        labels = [e for e in labels if e["stream_id"] in only_streams]
        summaries = [e for e in summaries if e["stream_id"] in only_streams]

    got = _assert_exact(labels, expected_labels, "label")
    got_summaries = _assert_exact(summaries, expected_summaries, "summary")
    by_record: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}
    for d in dead:
        by_record.setdefault(dead_letter_key(d), []).append(d)
    if dead_letter_ok is None:
        assert set(by_record) == injected, (
            f"dead letters differ from the injected ones: extra "
            f"{sorted(set(by_record) - injected)[:5]}, missing "
            f"{sorted(injected - set(by_record))[:5]}"
        )
    else:
        bad = [d for d in dead if not dead_letter_ok(d)]
        assert not bad, f"unexpected dead letters: {json.dumps(bad[:3])[:2000]}"
    for copies in by_record.values():
        assert all(c == copies[0] for c in copies), f"dead letter copies differ: {copies[:2]}"
    monitor.assert_offsets_never_went_back()
    assert monitor.max_rss_mb < RSS_LIMIT_MB, f"worker RSS reached {monitor.max_rss_mb:.0f} MB"
    duplicates = sum(len(c) - 1 for c in got.values()) + sum(
        len(c) - 1 for c in got_summaries.values()
    )
    outcome = Outcome(
        windows=len(got),
        summaries=len(got_summaries),
        duplicates=duplicates,
        dead_letters=len(by_record),
        max_rss_mb=monitor.max_rss_mb,
        offset_samples=sum(len(s) for s in monitor.offsets.values()),
    )
    print(outcome.line(name))
    return outcome


def _assert_exact(
    events: list[dict[str, Any]], expected: dict[str, dict[str, Any]], kind: str
) -> dict[str, list[dict[str, Any]]]:
    grouped = by_id(events)
    extra = set(grouped) - set(expected)
    missing = set(expected) - set(grouped)
    assert not extra and not missing, (
        f"{kind} events: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
    )
    for eid, copies in grouped.items():
        want = comparable(expected[eid])
        for copy in copies:
            got = comparable(copy)
            diff = {
                k: (got.get(k), want.get(k))
                for k in set(got) | set(want)
                if got.get(k) != want.get(k)
            }
            assert not diff, f"{kind} {eid} ({copy.get('stream_id')}): a copy differs: {diff}"
    return grouped
