"""Fixtures for the tests that run on the three-node cluster (``scripts/kafka.sh up --cluster``).

``make test`` starts the cluster beside the single broker and exports its bootstrap list
as ``$TYMPAN_KAFKA_CLUSTER``. A missing cluster fails these tests; it never skips them.
Every test here is marked ``cluster`` and ``kafka``. Tests stop and start nodes with
:class:`~tests.support.cluster.Cluster` (the cluster ``scripts/kafka.sh`` manages in this
checkout); before and after each test every node runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.errors import BrokerError
from stream.kafka.admin import wait_for_broker
from stream.kafka.config import KafkaClientConfig
from tests.support.cluster import Cluster

_HERE = Path(__file__).resolve().parent
ENV_CLUSTER = "TYMPAN_KAFKA_CLUSTER"

# The worker harness (``tympan worker`` subprocesses, expected events by replay) lives
# beside the integration tests, which import it as ``worker_harness``: so do these.
sys.path.insert(0, str(_HERE.parent / "integration"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def cluster_bootstrap() -> str:
    bootstrap = os.environ.get(ENV_CLUSTER)
    if not bootstrap:
        pytest.fail(
            f"the cluster tests need the three-node cluster (${ENV_CLUSTER}; make test starts "
            "it with scripts/kafka.sh up --cluster)",
            pytrace=False,
        )
    Cluster(bootstrap).start_all()  # a node an earlier run left stopped runs again
    try:
        brokers = asyncio.run(
            wait_for_broker(KafkaClientConfig(bootstrap_servers=bootstrap), timeout_s=30.0)
        )
    except BrokerError as exc:
        pytest.fail(f"the cluster at {bootstrap} does not answer: {exc}", pytrace=False)
    assert brokers == 3, f"the cluster at {bootstrap} lists {brokers} brokers, not 3"
    return bootstrap


@pytest.fixture
def cluster(cluster_bootstrap: str) -> Iterator[Cluster]:
    """The cluster with all three nodes running, before and after the test."""
    running = Cluster(cluster_bootstrap)
    running.start_all()
    yield running
    running.start_all()
