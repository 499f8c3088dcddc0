"""Fixtures for tests that talk to the real Kafka broker.

``make test`` starts the broker (``scripts/kafka.sh up``) before pytest. A missing
broker fails the run -- it never silently skips -- so CI cannot go green without
having run these tests.

Every test under ``tests/integration/`` is marked ``kafka`` automatically. Helpers to
produce and consume raw records are in ``kafka_helpers.py`` next to this file.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.errors import BrokerError
from stream.kafka.admin import delete_topics, ensure_topics, list_topics, wait_for_broker
from stream.kafka.config import DEFAULT_BOOTSTRAP, ENV_BROKER, KafkaClientConfig
from stream.kafka.topics import Topics

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def broker() -> str:
    """Bootstrap servers of the test broker (``$TYMPAN_BROKER``, else 127.0.0.1:9092)."""
    bootstrap = os.environ.get(ENV_BROKER) or DEFAULT_BOOTSTRAP
    client = KafkaClientConfig.from_environ(os.environ, bootstrap_servers=bootstrap)
    try:
        asyncio.run(wait_for_broker(client, timeout_s=15.0))
    except BrokerError as exc:
        pytest.fail(
            f"the integration tests need a Kafka broker ({ENV_BROKER}; make test starts "
            f"one): {exc}",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture(scope="session")
def kafka_client(broker: str) -> KafkaClientConfig:
    """A ``KafkaClientConfig`` for the test broker (TLS/SASL from ``TYMPAN_KAFKA_*``)."""
    return KafkaClientConfig.from_environ(
        os.environ, bootstrap_servers=broker, default_client_id="tympan-tests"
    )


@pytest.fixture
def topics(kafka_client: KafkaClientConfig, request: pytest.FixtureRequest) -> Iterator[Topics]:
    """Tympan's topics under a prefix unique to this test, created on the broker.

    The prefix names the test (``test-<name>-<uuid>``) so a leftover topic says where
    it came from. Afterwards every topic whose name starts with the prefix is deleted,
    best effort -- including Faust's internal topics when the test's app id starts
    with ``topics.prefix`` (e.g. ``f"{topics.prefix}-worker"``).
    """
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:40]
    created = Topics().with_prefix(f"test-{name}-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_client, created))
    yield created
    try:
        asyncio.run(_delete_prefixed(kafka_client, created.prefix))
    except BrokerError as exc:
        warnings.warn(f"could not delete test topics {created.prefix}.*: {exc}", stacklevel=1)


async def _delete_prefixed(client: KafkaClientConfig, prefix: str) -> None:
    names = [name for name in await list_topics(client) if name.startswith(prefix)]
    await delete_topics(client, names)
