"""The Kafka-protocol fault suite (issue 23, item 8): records that real Kafka clients
legitimately write, on the audio topic, while real streams flow.

Kafka's console producer, Kafka's Java producer, aiokafka and librdkafka (the C client
behind the Go, .NET and confluent-kafka clients) each write, with every codec (none,
gzip, snappy, lz4, zstd), good streams and hostile records: null header values, a
header name that is not UTF-8 (no Java client can write one: it encodes a ``String``
name, a lone surrogate becomes ``?``; aiokafka sends it uncompressed, and a plain
ProduceRequest carries it in a batch of every codec), 10^5 headers on one
record, tombstones with and without a key, transactions that abort (the worker must
read ``read_committed``), timestamps 0 and 2^63 - 1 (the audio topic is
``LogAppendTime``: the broker takes any). ``protocol.py`` says what must become of
each record.

For all of them, with one worker: the worker stays up; every good stream's events are
exactly the pipeline's (the streams of the feeder, sent before and after the hostile
records, and the client-written ones); every hostile record is accounted for by
topic/partition/offset; the group's committed offsets reach the end of the audio
topic (lag 0, transaction markers included).

Bounded by default (about a minute and a half on the shared broker);
``TYMPAN_TEST_SCALE=full`` also runs each client in a scenario of its own, so a
failure names the client that caused it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from checker import TopicTail
from clients import end_offsets
from protocol import (
    Expect,
    Plan,
    aiokafka_writes,
    console_writes,
    dead_letter_spans,
    java_transactions,
    java_writes,
    rdkafka_writes,
)
from scenario import FULL, Scenario
from test_poison_corpus import documented_reasons
from worker_harness import expected_events, interleave, produce

from stream.kafka.topics import Topics

N_FEED, FEED_SECONDS = (4, 6.0) if FULL else (2, 4.0)
WRITERS: dict[str, Callable[[str, str, Plan], None]] = {
    "console": console_writes,
    "java": java_writes,
    "aiokafka": aiokafka_writes,
    "rdkafka": rdkafka_writes,
}


def _require_alive(run: Scenario) -> Callable[[], None]:
    """Fail at once (with its log) when a worker exits: nothing restarts it here."""
    assert run.farm is not None

    def check() -> None:
        for worker in run.farm.workers:
            assert worker.proc is not None
            code = worker.proc.poll()
            assert code is None, f"the worker exited {code}:\n{worker.log_tail(40)}"

    return check


def _unaccounted(
    plan: Plan, dead: list[dict[str, Any]], summaries: list[dict[str, Any]]
) -> list[str]:
    """The hostile records not yet accounted for, as sentences."""
    by_at = dead_letter_spans(dead)
    closed = {s["stream_id"] for s in summaries}
    reasons = documented_reasons()
    missing = []
    for e in plan.expect:
        d = by_at.get(e.written.at)
        if e.kind == "dead":
            if d is None or d["reason"] != e.reason:
                got = "nothing" if d is None else f"reason {d['reason']!r}"
                missing.append(f"{e.written}: want a dead letter {e.reason!r}, got {got}")
        elif e.kind == "dead_or_events" and not _dead_or_closed(e, d, reasons, closed):
            got = "no dead letter" if d is None else f"a dead letter {d['reason']!r}"
            if d is not None and d["reason"] not in reasons:
                got += " whose reason no doc's reason table names"
            missing.append(f"{e.written}: no summary, {got}")
    return missing


def _dead_or_closed(
    e: Expect, d: dict[str, Any] | None, reasons: set[str], closed: set[str]
) -> bool:
    return (d is not None and d["reason"] in reasons) or e.stream_id in closed


def _assert_invisible(plan: Plan, tails: dict[str, TopicTail]) -> None:
    """Aborted records: no event of their streams, no dead letter at their offsets."""
    aborted = [e for e in plan.expect if e.kind == "invisible"]
    ids = {e.stream_id for e in aborted}
    for topic, tail in tails.items():
        seen = [x for x in tail.poll() if x.get("stream_id") in ids]
        assert not seen, f"{topic}: records of aborted transactions became {seen[:2]}"
    dead_at = dead_letter_spans(tails["rejected"].poll())
    leaked = [str(e.written) for e in aborted if e.written.at in dead_at]
    assert not leaked, f"aborted records were dead-lettered: {leaked[:3]}"


def _progress(run: Scenario, tails: dict[str, TopicTail]) -> str:
    """Which expected events are missing and the group's lag, for a failure message."""
    assert run.farm is not None
    labels = {e["event_id"] for e in tails["labels"].poll()}
    summaries = {e["event_id"] for e in tails["summaries"].poll()}
    lag = _lag_by_partition(run.broker, run.farm.app_id, run.topics.audio)
    missing = [e for e in run.expected_labels if e not in labels]
    missing_summaries = [e for e in run.expected_summaries if e not in summaries]
    return (
        f"label events missing: {len(missing)} of {len(run.expected_labels)} {missing[:3]}; "
        f"summaries missing: {len(missing_summaries)} {missing_summaries[:3]}; "
        f"(committed, end) of the partitions behind: {lag}"
    )


def _lag_by_partition(broker: str, group: str, topic: str) -> dict[int, tuple[int | None, int]]:
    """``partition: (committed, end)`` of the audio partitions the group has not reached."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    ends = end_offsets(broker, topic)

    async def read() -> dict[int, tuple[int | None, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group)
        await consumer.start()
        try:
            out = {
                p: (await consumer.committed(TopicPartition(topic, p)), e) for p, e in ends.items()
            }
            return {p: ce for p, ce in sorted(out.items()) if ce[0] != ce[1]}
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _run(broker: str, topics: Topics, tmp_path: Path, name: str, writers: list[str]) -> None:
    run = Scenario(broker, topics, tmp_path, N_FEED, FEED_SECONDS, name)
    assert run.farm is not None and run.monitor is not None
    run.spawn()
    alive = _require_alive(run)
    feed = interleave(run.streams)
    plan = Plan()
    tails = {
        "labels": TopicTail(broker, topics.labels),
        "summaries": TopicTail(broker, topics.summaries),
        "rejected": TopicTail(broker, topics.rejected),
    }
    try:
        with run.monitor:
            run.wait_balanced()
            produce(broker, topics, feed[: len(feed) // 3])
            run.wait_first_events()
            for writer in writers:
                WRITERS[writer](broker, topics.audio, plan)
                alive()
            produce(broker, topics, feed[len(feed) // 3 :])
            if "java" in writers:
                java_transactions(broker, topics.audio, plan)  # markers end partitions
            labels, summaries = expected_events(run.farm.model_dir, list(plan.good.values()))
            run.expected_labels.update(labels)
            run.expected_summaries.update(summaries)
            good = {f"{name}-{i}" for i in range(N_FEED)} | set(plan.good)
            reasons = documented_reasons()
            last: list[str] = []

            def ready() -> bool:
                last[:] = _unaccounted(plan, tails["rejected"].poll(), tails["summaries"].poll())
                return not last

            try:
                run.check(
                    only_streams=good,
                    dead_letter_ok=lambda d: d["reason"] in reasons and d["stream_id"] not in good,
                    ready=ready,
                    tick=alive,
                    timeout_s=300 if FULL else 180,
                )
            except AssertionError as exc:
                lines = "\n".join(last[:40])
                lines += "\n" + _progress(run, tails)
                raise AssertionError(
                    f"{exc}\n{len(last)} hostile records unaccounted:\n{lines}"
                ) from None
            _assert_invisible(plan, tails)
            alive()
        hostile = sum(e.kind != "events" for e in plan.expect)
        print(
            f"[faults] {name}: client_records={len(plan.expect)} hostile={hostile} "
            f"good_streams={len(good)} windows={len(run.expected_labels)}"
        )
    finally:
        run.farm.stop_all()
        for tail in tails.values():
            tail.close()


def test_every_client_and_codec_on_the_audio_topic(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    _run(broker, topics, tmp_path, "kp", list(WRITERS))


@pytest.mark.timeout(900)
@pytest.mark.skipif(not FULL, reason="TYMPAN_TEST_SCALE=full: one scenario per client")
@pytest.mark.parametrize("writer", list(WRITERS))
def test_one_client_on_the_audio_topic(
    broker: str, topics: Topics, tmp_path: Path, writer: str
) -> None:
    _run(broker, topics, tmp_path, f"kp-{writer}", [writer])
