"""``tympan ingest rtp`` across a leader change, and when delivery really fails (issue
#26, point 4). Calls are RTP PCMU streams from Debian's ffmpeg (``-re``: real time).

Across a kill -9 of the broker leading most audio partitions the ingest keeps running
and every call lands whole (seqs 0..n once each, in order, ending with an EOS), nothing
counted dropped or undelivered. With two of three brokers down past
``--delivery-timeout-s`` it stops with exit 3 (BROKER), naming each call it could not
deliver, instead of buffering silently for ever.

Full scale only (``TYMPAN_TEST_SCALE=full``): in ``make test`` the same producer code is
checked by ``test_producer_failover.py`` (delivery failure) and ``test_failover.py``
(kill -9 of the leader), within the cluster tests' time budget.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from feeds import assert_whole, call_wav, landed
from ingest_harness import IngestProcess, need

from stream.cli.exit_codes import ExitCode
from stream.kafka.admin import ensure_topics
from stream.kafka.topics import Topics
from tests.support.cluster import Cluster
from tests.support.ports import free_tcp_port, free_udp_ports

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(
        os.environ.get("TYMPAN_TEST_SCALE", "ci") != "full",
        reason="full scale only: make test checks the same producer code on tympan produce",
    ),
]

CALLS = 4


def _ingest(cluster: Cluster, tmp: Path, *extra: str) -> tuple[IngestProcess, Topics, int]:
    topics = Topics().with_prefix(f"test-cluster-ingest-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(cluster.client, topics))
    first = free_udp_ports(CALLS)
    metrics_port = free_tcp_port()
    ingest = IngestProcess(
        [
            *("ingest", "rtp", "--listen", f"127.0.0.1:{first}-{first + CALLS - 1}"),
            *("--broker", cluster.bootstrap, "--topic-prefix", topics.prefix),
            *("--idle-timeout-s", "1.5", "--stream-id-template", "call-{port}"),
            *("--metrics-port", str(metrics_port), *extra),
        ],
        tmp / "ingest.log",
        metrics_port=metrics_port,
    )
    return ingest.start(), topics, first


def _calls(wav: Path, first: int) -> list[subprocess.Popen[bytes]]:
    ffmpeg = need("ffmpeg", "ffmpeg")
    return [
        subprocess.Popen(
            [
                *(ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(wav)),
                *("-ar", "8000", "-acodec", "pcm_mulaw", "-packetsize", "172"),
                *("-f", "rtp", f"rtp://127.0.0.1:{first + i}"),
            ],
            stdout=subprocess.DEVNULL,
        )
        for i in range(CALLS)
    ]


@pytest.fixture
def calls() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for call in running:
        if call.poll() is None:
            call.kill()
            call.wait(10)


def _wait_landing(cluster: Cluster, topic: str, ingest: IngestProcess) -> None:
    deadline = time.monotonic() + 60
    while not landed(cluster.bootstrap, topic):
        assert ingest.alive(), ingest.log()
        assert time.monotonic() < deadline, f"no frame landed within 60 s\n{ingest.log()}"
        time.sleep(0.5)


def test_ingest_rides_through_a_kill_of_the_leader(
    cluster: Cluster, tmp_path: Path, calls: list[subprocess.Popen[bytes]]
) -> None:
    ingest, topics, first = _ingest(cluster, tmp_path)
    try:
        calls += _calls(call_wav(tmp_path / "call.wav", seconds=14.0), first)
        _wait_landing(cluster, topics.audio, ingest)
        cluster.kill(cluster.leader_of_most(topics.audio))
        for call in calls:
            assert call.wait(120) == 0
        time.sleep(3.0)  # the idle timeout (1.5 s) ends each call with its EOS
        alive = ingest.alive()
        metrics = ingest.metrics()
    finally:
        rc = ingest.stop()
    assert alive, ingest.log()
    assert rc == 0, ingest.log()
    assert metrics["tympan_ingest_frames_dropped_total"] == 0
    assert metrics["tympan_ingest_frames_undelivered_total"] == 0
    assert_whole(landed(cluster.bootstrap, topics.audio), CALLS)


def test_ingest_names_each_call_it_could_not_deliver(
    cluster: Cluster, tmp_path: Path, calls: list[subprocess.Popen[bytes]]
) -> None:
    ingest, topics, first = _ingest(cluster, tmp_path, "--delivery-timeout-s", "8")
    try:
        calls += _calls(call_wav(tmp_path / "call.wav", seconds=40.0), first)
        _wait_landing(cluster, topics.audio, ingest)
        cluster.kill(2)
        cluster.kill(3)  # one in-sync replica at most: min.insync.replicas=2 refuses all
        assert ingest.proc is not None
        rc = ingest.proc.wait(120)  # not the calls' 40 s and beyond: the timeout's 8 s
    finally:
        ingest.stop()
    log = ingest.log()
    assert rc == ExitCode.BROKER, log
    for i in range(CALLS):
        assert f"stream 'call-{first + i}': " in log, log[-3000:]
    assert "were not delivered to topic" in log
