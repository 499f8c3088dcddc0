"""The fault-injection suite (issue 11): ``tympan worker`` processes on the real broker,
faults injected from outside (signals, broker stop/start, hostile records), and one
checker (``checker.py``) for what must hold afterwards.

The Kafka-protocol suite (issue 23): ``test_kafka_protocol.py`` (audio topic) and
``test_kafka_protocol_followers.py`` (control and speaker-registry topics), records
written by real clients (``clients.py``: Kafka's console and Java producers, aiokafka,
a plain ProduceRequest), what must become of each in ``protocol.py``.

Every test here is marked ``faults`` (and ``kafka`` by the parent conftest).
``TYMPAN_TEST_SCALE=ci`` (what ``make test`` sets) runs a bounded form;
``TYMPAN_TEST_SCALE=full`` runs more seeds, longer streams and the 100,000-record
poison corpus.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.faults)
