"""Fixtures for the tests that talk to the secure broker (``scripts/kafka.sh up --secure``).

``make test`` starts it beside the plain broker. It has one client listener, SASL_SSL
(SCRAM-SHA-512 over TLS with a test CA), ACLs per role and no access without one. Its
principals' client settings are the environment files the script writes,
``<dir>/<principal>.env`` (``$TYMPAN_KAFKA_SECURE_DIR``, else ``.tympan/kafka-secure``).
A missing secure broker fails these tests; it never skips them.

Every test here is marked ``security`` and ``kafka``. The secure broker serves the
default topic prefix (``tympan``), whose ACLs the script grants, so tests tell their
records apart by unique stream ids and consumer groups, not by topic prefixes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream.errors import BrokerError
from stream.kafka.admin import wait_for_broker
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

_HERE = Path(__file__).resolve().parent
REPO = _HERE.parents[1]
_KAFKA_ENV = ("TYMPAN_BROKER", "TYMPAN_TOPIC_PREFIX")
PRINCIPALS = ("tympan-admin", "tympan-worker", "tympan-producer", "tympan-dashboard")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.security)
            item.add_marker(pytest.mark.kafka)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an environment file written by scripts/kafka.sh."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


@dataclass(frozen=True)
class SecureBroker:
    """The secure broker and its principals' settings."""

    directory: Path
    settings: Mapping[str, Mapping[str, str]]
    topics: Topics = field(default_factory=Topics)

    @property
    def bootstrap(self) -> str:
        return self.settings["tympan-admin"]["TYMPAN_BROKER"]

    @property
    def ca_file(self) -> str:
        return self.settings["tympan-admin"]["TYMPAN_KAFKA_SSL_CAFILE"]

    def env(self, principal: str, **overrides: str) -> dict[str, str]:
        """A subprocess environment with ``principal``'s settings and nothing else of Kafka's."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TYMPAN_KAFKA_")
            and k not in ("TYMPAN_BROKER", "TYMPAN_TOPIC_PREFIX")
        }
        env.update(self.settings[principal])
        env.update(overrides)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def client(self, principal: str, **overrides: str) -> KafkaClientConfig:
        values = {**self.settings[principal], **overrides}
        return KafkaClientConfig.from_environ(
            values, bootstrap_servers=values["TYMPAN_BROKER"], default_client_id="tympan-tests"
        )


@pytest.fixture(scope="session")
def secure() -> SecureBroker:
    """The running secure broker (``make test`` starts it), checked as ``tympan-admin``."""
    directory = Path(os.environ.get("TYMPAN_KAFKA_SECURE_DIR") or REPO / ".tympan" / "kafka-secure")
    missing = [p for p in PRINCIPALS if not (directory / f"{p}.env").is_file()]
    if missing:
        pytest.fail(
            f"the security tests need the secure broker (scripts/kafka.sh up --secure); "
            f"no environment files for {', '.join(missing)} in {directory}",
            pytrace=False,
        )
    broker = SecureBroker(directory, {p: read_env_file(directory / f"{p}.env") for p in PRINCIPALS})
    try:
        asyncio.run(wait_for_broker(broker.client("tympan-admin"), timeout_s=30.0))
    except BrokerError as exc:
        pytest.fail(f"the secure broker does not answer: {exc}", pytrace=False)
    return broker
