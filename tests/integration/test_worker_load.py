"""Load: many concurrent streams through one worker with the shipped scene model.

A correctness test under load, not a timing test (timing goals live in
``benchmarks/``): every window of every stream gets its label event, every stream
its summary, nothing is dead-lettered, and the offsets are committed to the end.
``make test`` runs it bounded (``TYMPAN_TEST_SCALE=ci``: 120 streams × 6 s, sent as
fast as the producer can); ``TYMPAN_TEST_SCALE=full`` runs 1,000 streams × 20 s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from worker_harness import (
    WorkerFarm,
    assert_same_events,
    expected_events,
    interleave,
    produce,
    read_json,
    stream_frames,
    wait_for_count,
    wait_for_ids,
    wait_until_committed,
)

from stream.inference.repository import resolve_model_dir
from stream.kafka.topics import Topics
from stream.roles import Role

SCALES = {"ci": (120, 6.0), "full": (1000, 20.0)}
N_STREAMS, SECONDS = SCALES[os.environ.get("TYMPAN_TEST_SCALE", "ci")]

pytestmark = pytest.mark.slow


def test_every_window_of_many_concurrent_streams_is_scored(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    model_dir = resolve_model_dir(None, role=Role.LABEL)
    streams = [
        stream_frames(f"load-{i:04d}", seconds=SECONDS, loud=i % 4 != 0, seed=i, chunk_ms=100)
        for i in range(N_STREAMS)
    ]
    expected_labels, expected_summaries = expected_events(model_dir, streams)

    farm = WorkerFarm(broker, topics, model_dir, tmp_path)
    try:
        worker = farm.spawn()
        produce(broker, topics, interleave(streams))
        summaries = wait_for_count(
            broker,
            topics.summaries,
            N_STREAMS,
            timeout_s=300,
            what=f"{N_STREAMS} summaries",
            farm=farm,
        )
        labels = wait_for_ids(
            broker, topics.labels, expected_labels, what="every window's label event", farm=farm
        )
        wait_until_committed(broker, topics, farm, what="offsets committed to the end")
        rejected = read_json(broker, topics.rejected)
        assert "Traceback" not in worker.log_text()
    finally:
        farm.stop_all()

    assert rejected == []
    assert {s["event_id"] for s in summaries} == set(expected_summaries)
    assert_same_events(labels, expected_labels)
