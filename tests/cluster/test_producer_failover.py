"""``tympan produce`` across a leader change, and when delivery really fails (issue #26,
point 4): it rides through a kill -9 of the broker leading most audio partitions with
every frame landing once, in order; with two of three brokers unavailable (frozen) past
its delivery timeout it stops, names every stream it could not deliver and exits 3 (BROKER)."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from feeds import Producer, assert_whole, call_wav, landed

from stream.cli.exit_codes import ExitCode
from stream.kafka.admin import ensure_topics
from stream.kafka.topics import Topics
from tests.support.cluster import Cluster

pytestmark = pytest.mark.faults

FULL = os.environ.get("TYMPAN_TEST_SCALE", "ci") == "full"
CALLS, CALL_S = 6, 8.0


def _topics(cluster: Cluster) -> Topics:
    topics = Topics().with_prefix(f"test-cluster-produce-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(cluster.client, topics))
    return topics


def _wait_sending(producer: Producer, cluster: Cluster, topic: str) -> None:
    """Wait until the producer has frames in the topic (a fault before that tests nothing)."""
    deadline = time.monotonic() + 60
    while not _landed_yet(cluster, topic):
        assert producer.proc.poll() is None, producer.output()
        assert time.monotonic() < deadline, "no frame landed within 60 s"
        time.sleep(0.5)


def _landed_yet(cluster: Cluster, topic: str) -> bool:
    """Frames in ``topic`` yet; a node whose metadata has not caught up with the topic's
    creation (KRaft propagates it to each broker in its own time) counts as none yet."""
    try:
        return bool(landed(cluster.bootstrap, topic))
    except AssertionError as exc:
        if "do not exist" in str(exc):
            return False
        raise


def test_produce_rides_through_a_kill_of_the_leader(cluster: Cluster, tmp_path: Path) -> None:
    if not FULL:
        pytest.skip("the bounded form's failover test (kill-leader) checks this on its calls")
    topics = _topics(cluster)
    wav = call_wav(tmp_path / "call.wav", seconds=CALL_S)
    producer = Producer.start(
        cluster.bootstrap, topics.prefix, wav, CALLS, tmp_path / "produce.log"
    )
    try:
        _wait_sending(producer, cluster, topics.audio)
        leader = cluster.leader_of_most(topics.audio)
        cluster.kill(leader)
        rc = producer.wait(CALL_S + 120)
    finally:
        producer.kill()

    assert rc == ExitCode.OK, producer.output()
    assert_whole(landed(cluster.bootstrap, topics.audio), CALLS)


def test_produce_names_each_stream_it_could_not_deliver(cluster: Cluster, tmp_path: Path) -> None:
    topics = _topics(cluster)
    wav = call_wav(tmp_path / "call.wav", seconds=30.0)
    producer = Producer.start(
        cluster.bootstrap,
        topics.prefix,
        wav,
        CALLS,
        tmp_path / "produce.log",
        "--delivery-timeout-s",
        "8",
    )
    try:
        _wait_sending(producer, cluster, topics.audio)
        # two of three brokers gone (frozen: they come back at once, no JVM restart);
        # one in-sync replica at most, and min.insync.replicas=2 refuses every write
        cluster.freeze(2)
        cluster.freeze(3)
        try:
            rc = producer.wait(120)  # the call lasts 30 s: it must not wait for its end
        finally:
            cluster.thaw(2)
            cluster.thaw(3)
    finally:
        producer.kill()
    out = producer.output()

    assert rc == ExitCode.BROKER, out
    for i in range(CALLS):
        line = rf"stream 'call-{i}': (\d+) frame\(s\), seq \d+\.\.\d+, not acknowledged by "
        assert re.search(line + re.escape(f"topic {topics.audio!r} partition"), out), out
    assert "were not delivered to topic" in out


def test_produce_rides_through_a_frozen_leader(cluster: Cluster, tmp_path: Path) -> None:
    """A leader frozen longer than the request timeout (10 s): aiokafka gives up handing
    the next batch over (``KafkaTimeoutError``); the producer offers it again rather than
    end the run, and the frames go to the leader elected meanwhile."""
    if not FULL:
        pytest.skip("full scale only (test_failover's frozen-broker checks it under full)")
    topics = _topics(cluster)
    wav = call_wav(tmp_path / "call.wav", seconds=20.0)
    producer = Producer.start(
        cluster.bootstrap, topics.prefix, wav, CALLS, tmp_path / "produce.log"
    )
    try:
        _wait_sending(producer, cluster, topics.audio)
        leader = cluster.leader_of_most(topics.audio)
        cluster.freeze(leader)
        try:
            time.sleep(25.0)
        finally:
            cluster.thaw(leader)
        rc = producer.wait(120)
    finally:
        producer.kill()

    assert rc == ExitCode.OK, producer.output()
    assert_whole(landed(cluster.bootstrap, topics.audio), CALLS)
