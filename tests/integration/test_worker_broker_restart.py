"""A broker restart in the middle of streams loses no window.

Uses a private single-node broker (``scripts/kafka.sh`` on its own port and data
directory), because restarting the shared test broker would disturb other tests.
Marked ``slow``: a second JVM start and stop take most of a minute.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_harness import (
    REPO,
    WorkerFarm,
    assert_same_events,
    expected_events,
    interleave,
    produce,
    stream_frames,
    tiny_model,
    wait_for_count,
    wait_for_ids,
)

from stream.kafka.admin import ensure_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    def __init__(self, tmp: Path) -> None:
        port = _free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "TYMPAN_KAFKA_PORT": str(port),
            "TYMPAN_KAFKA_CONTROLLER_PORT": str(_free_port()),
            "TYMPAN_KAFKA_DIR": str(tmp / "kafka"),
            "TYMPAN_KAFKA_STOP_TIMEOUT": "20",
        }

    def run(self, *args: str) -> None:
        subprocess.run(
            [str(REPO / "scripts" / "kafka.sh"), *args],
            env=self.env,
            check=True,
            timeout=180,
            capture_output=True,
        )


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path)
    broker.run("up")
    try:
        yield broker
    finally:
        broker.run("down")


def test_broker_restart_mid_stream_loses_no_window(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    bootstrap = private_broker.bootstrap
    topics = Topics().with_prefix("restart")
    asyncio.run(ensure_topics(KafkaClientConfig(bootstrap_servers=bootstrap), topics))
    model_dir = tiny_model(tmp_path / "model")
    streams = [stream_frames(f"r-{i}", seconds=6.0, loud=i % 2 == 0, seed=i) for i in range(3)]
    expected_labels, _ = expected_events(model_dir, streams)
    half = [s[: len(s) // 2] for s in streams]
    rest = [s[len(s) // 2 :] for s in streams]

    farm = WorkerFarm(bootstrap, topics, model_dir, tmp_path)
    try:
        # a restart on a loaded machine can outlast the 30 s idle timeout (Kafka time
        # between the halves), which would close the streams and resume them as new
        # segments under other ids; the outage, not a pause, is what is tested here
        farm.spawn("--idle-timeout-s", "600")
        produce(bootstrap, topics, interleave(half))
        wait_for_count(
            bootstrap,
            topics.labels,
            6,
            timeout_s=90,
            what="label events before the restart",
            farm=farm,
        )
        private_broker.run("down")
        private_broker.run("up")
        produce(bootstrap, topics, interleave(rest))
        wait_for_count(
            bootstrap,
            topics.summaries,
            3,
            timeout_s=180,
            what="3 summaries after the broker restart",
            farm=farm,
        )
        labels = wait_for_ids(
            bootstrap, topics.labels, expected_labels, what="every window's label event", farm=farm
        )
    finally:
        farm.stop_all()

    assert_same_events(labels, expected_labels)
