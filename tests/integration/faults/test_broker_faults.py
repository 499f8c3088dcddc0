"""The broker stopped and started mid-run, and frozen (SIGSTOP) past the clients'
timeouts: workers recover, or exit non-zero and are restarted (the test plays the
supervisor); they never hang. One private broker serves both tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from brokers import PrivateBroker
from scenario import FULL, SESSION_TIMEOUT_S, Scenario

from stream.kafka.admin import ensure_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

N_STREAMS, SECONDS = (8, 20.0) if FULL else (4, 6.0)
FREEZE_S = 60.0 if FULL else 25.0


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path_factory.mktemp("broker"))
    broker.run("up")
    try:
        yield broker
    finally:
        with contextlib.suppress(OSError, ValueError):
            broker.signal(signal.SIGCONT)
        broker.run("down")


@pytest.fixture
def private_topics(private_broker: PrivateBroker) -> Topics:
    topics = Topics().with_prefix(f"faults-{uuid.uuid4().hex[:8]}")
    client = KafkaClientConfig(bootstrap_servers=private_broker.bootstrap)
    asyncio.run(ensure_topics(client, topics))
    return topics


@pytest.fixture(autouse=True)
def _session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYMPAN_SESSION_TIMEOUT_S", str(SESSION_TIMEOUT_S))


def _supervise(run: Scenario, wanted: int) -> list[int]:
    """Restart workers that exited; return their exit codes (a supervisor's job)."""
    assert run.farm is not None
    codes = []
    for worker in run.farm.workers:
        if worker.proc is not None and worker.proc.poll() is not None and not worker.replaced:
            codes.append(worker.proc.returncode)
            worker.replaced = True
    alive = [w for w in run.farm.workers if w.proc is not None and w.proc.poll() is None]
    for _ in range(wanted - len(alive)):
        run.spawn()
    return codes


def _restart(broker: PrivateBroker) -> None:
    broker.run("down")
    broker.run("up")


def _freeze(broker: PrivateBroker) -> None:
    broker.signal(signal.SIGSTOP)
    time.sleep(FREEZE_S)
    broker.signal(signal.SIGCONT)


@pytest.mark.parametrize(
    ("name", "fault"),
    [("broker-restart", _restart), ("broker-frozen", _freeze)],
    ids=["stop-and-start-mid-run", "frozen-past-the-timeouts"],
)
def test_broker_fault(
    name: str,
    fault: Callable[[PrivateBroker], None],
    private_broker: PrivateBroker,
    private_topics: Topics,
    tmp_path: Path,
) -> None:
    run = Scenario(private_broker.bootstrap, private_topics, tmp_path, N_STREAMS, SECONDS, name)
    assert run.farm is not None and run.monitor is not None
    run.spawn()
    run.spawn()
    feeder = run.feeder(slices=6, pause_s=1.5)
    exits: list[int] = []
    try:
        with run.monitor:
            run.start(feeder)
            feeder.hold()
            fault(private_broker)
            feeder.release()
            while feeder.is_alive():
                exits += _supervise(run, 2)  # a worker that gave up exits non-zero
                time.sleep(2.0)
            feeder.finish()
            run.check(timeout_s=300, tick=lambda: exits.extend(_supervise(run, 2)))
            exits += _supervise(run, 0)
    finally:
        run.farm.stop_all()
    assert all(code != 0 for code in exits), f"a worker exited 0 after a fault: {exits}"
    print(f"[faults] {name}: worker exits {exits}")
