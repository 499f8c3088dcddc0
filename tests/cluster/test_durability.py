"""Durable by default on a cluster (issue #26): replicated topics with
``min.insync.replicas=2``, ``tympan topics check`` naming what is not durable, and
writes that keep landing while one broker is down."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

from stream.kafka.admin import describe_topics
from stream.kafka.topics import Topics
from tests.integration.kafka_helpers import consume_all
from tests.support.cluster import Cluster


def _prefix(what: str) -> str:
    return f"test-cluster-{what}-{uuid.uuid4().hex[:8]}"


def test_topics_created_on_a_cluster_are_replicated_three_times_with_two_insync(
    cluster: Cluster,
) -> None:
    prefix = _prefix("durable")

    created = cluster.tympan("topics", "create", "--topic-prefix", prefix)
    checked = cluster.tympan("topics", "check", "--topic-prefix", prefix)

    assert created.returncode == 0, created.stderr
    topics = Topics(prefix=prefix)
    infos = asyncio.run(describe_topics(cluster.client, list(topics.names())))
    assert {info.replication_factor for info in infos} == {3}
    assert {info.configs.get("min.insync.replicas") for info in infos} == {"2"}
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok       7 topics, durable for 3 broker(s)" in checked.stdout


def test_check_names_thin_topics_and_the_command_that_fixes_each(cluster: Cluster) -> None:
    prefix = _prefix("thin")
    cluster.tympan("topics", "create", "--topic-prefix", prefix, "--replication-factor", "1")

    checked = cluster.tympan("topics", "check", "--topic-prefix", prefix)

    assert checked.returncode == 1
    for name in Topics(prefix=prefix).names():
        assert f"topic {name!r} has 1 replica(s) per partition" in checked.stdout
        assert f"--entity-name {name} --add-config min.insync.replicas=2" in checked.stdout


def test_with_one_broker_down_check_reports_it_and_every_frame_still_lands(
    cluster: Cluster, tmp_path: Path
) -> None:
    prefix = _prefix("down")
    assert cluster.tympan("topics", "create", "--topic-prefix", prefix).returncode == 0
    wav = tmp_path / "tone.wav"
    t = np.arange(16000 * 3) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)

    cluster.stop(3)
    checked = cluster.tympan("topics", "check", "--topic-prefix", prefix)
    produced = cluster.tympan(
        "produce", "--fast", "--no-progress", "--topic-prefix", prefix, "--stream-id", "s", str(wav)
    )

    assert checked.returncode == 1
    assert f"topic '{prefix}.audio.v1' has " in checked.stdout
    assert "under-replicated partition(s) now" in checked.stdout
    assert produced.returncode == 0, produced.stderr
    sent = int(re.search(r"produced (\d+) frames", produced.stderr + produced.stdout).group(1))
    records = consume_all(cluster.bootstrap, f"{prefix}.audio.v1", min_count=sent, timeout_s=60)
    seqs = sorted(int(dict(r.headers)["seq"]) for r in records)
    assert seqs == list(range(sent)) and sent >= 30
