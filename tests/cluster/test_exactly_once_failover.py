"""``--guarantee exactly-once`` on the three-node cluster (issue #26, point 5): a
``read_committed`` reader sees every window and summary exactly once while a worker
is killed (``kill -9``) mid-stream, the group rebalances (a new worker joins), and the
broker that leads most audio partitions is stopped and later started again (the
transaction coordinator, the group coordinator or partition leaders move with it).

The fault suite's scenario and checker (``tests/integration/faults``) drive it, on
the cluster's bootstrap list instead of the single broker."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stream.kafka.admin import ensure_topics
from stream.kafka.topics import Topics
from tests.support.cluster import Cluster

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
sys.path[:0] = [str(_INTEGRATION), str(_INTEGRATION / "faults")]  # their helpers' imports

from scenario import FULL, SESSION_TIMEOUT_S, Scenario  # noqa: E402

N_STREAMS, SECONDS = (8, 20.0) if FULL else (4, 8.0)
EXACTLY_ONCE = ("--guarantee", "exactly-once")


@pytest.fixture(autouse=True)
def _session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYMPAN_SESSION_TIMEOUT_S", str(SESSION_TIMEOUT_S))


def _busiest_leader(bootstrap: str, topic: str) -> int:
    """The node id that leads most partitions of ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def leaders() -> Counter[int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer._client._wait_on_metadata(topic)
            parts = consumer._client.cluster.partitions_for_topic(topic) or set()
            return Counter(
                consumer._client.cluster.leader_for_partition(TopicPartition(topic, p))
                for p in parts
            )
        finally:
            await consumer.stop()

    return asyncio.run(leaders()).most_common(1)[0][0]


def test_kill9_rebalance_and_broker_failover_give_each_event_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    topics = Topics().with_prefix(f"test-cluster-eos-{int(time.time())}")
    asyncio.run(ensure_topics(cluster.client, topics))
    run = Scenario(cluster.bootstrap, topics, tmp_path, N_STREAMS, SECONDS, "cluster-eos")
    assert run.farm is not None and run.monitor is not None
    live = [run.spawn(*EXACTLY_ONCE), run.spawn(*EXACTLY_ONCE)]
    feeder = run.feeder(slices=8, pause_s=1.0)
    leader = _busiest_leader(cluster.bootstrap, topics.audio)
    try:
        with run.monitor:
            run.start(feeder, 4)
            time.sleep(1.0)
            live.pop(0).kill()  # SIGKILL mid-stream, a transaction open
            live.append(run.spawn(*EXACTLY_ONCE))  # joins: another rebalance
            time.sleep(1.0)
            cluster.stop(leader)  # leadership of its partitions moves to the others
            time.sleep(4.0)
            cluster.start_all()
            feeder.finish()
            outcome = run.check()
        assert outcome.duplicates == 0, f"a read_committed reader saw {outcome.duplicates} repeats"
        assert outcome.summaries == N_STREAMS
        assert all(w.proc is None or w.proc.poll() is None for w in live), "a worker exited"
    finally:
        run.farm.stop_all()
        cluster.start_all()
