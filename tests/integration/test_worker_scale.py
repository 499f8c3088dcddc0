"""Scale out: two workers in one consumer group split the partitions, and a worker
joining mid-run takes partitions over without losing a window."""

from __future__ import annotations

import re
from pathlib import Path

from worker_harness import (
    WorkerFarm,
    assert_same_events,
    comparable,
    expected_events,
    interleave,
    produce,
    stream_frames,
    tiny_model,
    wait_for,
    wait_for_count,
    wait_for_ids,
    wait_until_committed,
)

from stream.kafka.topics import Topics

SECONDS = 8.0
N_STREAMS = 8

_ASSIGNED = re.compile(r"partitions assigned: \[([0-9, ]+)\]")


def _assigned(log: str) -> list[int]:
    found = _ASSIGNED.findall(log)
    return [int(p) for p in found[-1].split(",")] if found else []


def test_second_worker_takes_partitions_without_loss(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    model_dir = tiny_model(tmp_path / "model")
    streams = [
        stream_frames(f"line-{i}", seconds=SECONDS, loud=i % 3 != 0, seed=10 + i)
        for i in range(N_STREAMS)
    ]
    expected_labels, expected_summaries = expected_events(model_dir, streams)
    first = [s[: len(s) // 2] for s in streams]
    rest = [s[len(s) // 2 :] for s in streams]

    farm = WorkerFarm(broker, topics, model_dir, tmp_path)
    try:
        one = farm.spawn()
        produce(broker, topics, interleave(first))
        wait_for_count(
            broker,
            topics.labels,
            N_STREAMS,
            timeout_s=90,
            what="label events from the first worker",
            farm=farm,
        )
        two = farm.spawn()
        wait_for(
            lambda: _assigned(two.log_text()),
            timeout_s=90,
            what="partitions assigned to the second worker",
            farm=farm,
        )
        produce(broker, topics, interleave(rest))
        summaries = wait_for_count(
            broker,
            topics.summaries,
            N_STREAMS,
            timeout_s=120,
            what=f"{N_STREAMS} summaries",
            farm=farm,
        )
        labels = wait_for_ids(
            broker, topics.labels, expected_labels, what="every window's label event", farm=farm
        )
        wait_until_committed(
            broker, topics, farm, what="offsets committed to the end by the two workers"
        )
        assert "Traceback" not in one.log_text() + two.log_text()
        one_parts, two_parts = _assigned(one.log_text()), _assigned(two.log_text())
        closed_by_two = two.log_text().count("closed (eos)")
    finally:
        farm.stop_all()

    assert one_parts and two_parts and not set(one_parts) & set(two_parts)
    assert closed_by_two > 0, "the second worker closed no stream"
    assert_same_events(labels, expected_labels)
    assert {s["event_id"] for s in summaries} == set(expected_summaries)
    for summary in summaries:
        assert comparable(summary) == comparable(expected_summaries[summary["event_id"]])
