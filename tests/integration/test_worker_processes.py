"""``tympan worker --processes 2``: two worker processes under one supervisor share the
consumer group; a child killed with SIGKILL is restarted (and logged), and no window is
lost: every event the synchronous pipeline gives arrives, duplicates identical."""

from __future__ import annotations

import os
import signal
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

SECONDS = 12.0
N_STREAMS = 6


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_a_killed_child_is_restarted_and_no_window_is_lost(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    model_dir = tiny_model(tmp_path / "model")
    streams = [
        stream_frames(f"proc-{i}", seconds=SECONDS, loud=i % 2 == 0, seed=70 + i)
        for i in range(N_STREAMS)
    ]
    expected_labels, expected_summaries = expected_events(model_dir, streams)
    first = [s[: len(s) // 2] for s in streams]
    rest = [s[len(s) // 2 :] for s in streams]

    farm = WorkerFarm(broker, topics, model_dir, tmp_path)
    try:
        supervisor = farm.spawn("--processes", "2")
        assert supervisor.proc is not None
        pid = supervisor.proc.pid
        wait_for(
            lambda: (
                supervisor.log_text().count("partitions assigned: [") >= 2
                and len(_children(pid)) == 2
            ),
            timeout_s=120,
            what="two worker processes with partitions",
            farm=farm,
        )
        produce(broker, topics, interleave(first))
        wait_for_count(
            broker, topics.labels, N_STREAMS, timeout_s=90, what="first label events", farm=farm
        )
        victim = _children(pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                "restarting it" in supervisor.log_text()
                and len(_children(pid)) == 2
                and victim not in _children(pid)
            ),
            timeout_s=60,
            what="the killed child restarted",
            farm=farm,
        )
        produce(broker, topics, interleave(rest))
        summaries = wait_for_count(
            broker,
            topics.summaries,
            N_STREAMS,
            timeout_s=150,
            what=f"{N_STREAMS} summaries",
            farm=farm,
        )
        labels = wait_for_ids(
            broker, topics.labels, expected_labels, what="every window's label event", farm=farm
        )
        wait_until_committed(broker, topics, farm, what="offsets committed to the end")
        log = supervisor.log_text()
    finally:
        farm.stop_all()

    assert f"(pid {victim}) exited with signal 9; restarting it" in log
    assert supervisor.proc.returncode == 0, "SIGTERM should stop the supervisor cleanly"
    assert not _children(pid)
    assert_same_events(labels, expected_labels)
    assert {s["event_id"] for s in summaries} == set(expected_summaries)
    for summary in summaries:
        assert comparable(summary) == comparable(expected_summaries[summary["event_id"]])
