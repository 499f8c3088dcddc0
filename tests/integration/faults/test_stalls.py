"""A worker frozen (SIGSTOP) past the session timeout and then resumed; a slow
consumer; rebalance churn: a third worker joining and leaving while streams flow."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from scenario import FULL, SESSION_TIMEOUT_S, Scenario

from stream.kafka.topics import Topics

N_STREAMS, SECONDS = (8, 20.0) if FULL else (4, 6.0)
CHURN_S = 15.0 if FULL else 5.0


@pytest.fixture(autouse=True)
def _session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYMPAN_SESSION_TIMEOUT_S", str(SESSION_TIMEOUT_S))


def test_sigstop_worker_past_session_timeout(broker: str, topics: Topics, tmp_path: Path) -> None:
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS, "sigstop")
    assert run.farm is not None and run.monitor is not None
    frozen, _other = run.spawn(), run.spawn()
    feeder = run.feeder(slices=6, pause_s=1.5 if FULL else 1.0)
    try:
        with run.monitor:
            run.start(feeder, 2)
            assert frozen.proc is not None
            frozen.proc.send_signal(signal.SIGSTOP)
            time.sleep(SESSION_TIMEOUT_S * 2)  # its partitions move to the other worker
            frozen.proc.send_signal(signal.SIGCONT)
            feeder.finish()
            run.check()
    finally:
        run.farm.stop_all()


def test_slow_consumer(broker: str, topics: Topics, tmp_path: Path) -> None:
    """One worker that runs a third of the time (stopped and continued every
    second): the backlog waits in Kafka and every event still arrives."""
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS, "slow")
    assert run.farm is not None and run.monitor is not None
    slow = run.spawn("--max-batch", "2", "--queue-windows", "4")
    done = threading.Event()

    def throttle() -> None:
        while not done.is_set():
            if slow.proc is None or slow.proc.poll() is not None:
                return
            slow.proc.send_signal(signal.SIGSTOP)
            time.sleep(0.6)
            slow.proc.send_signal(signal.SIGCONT)
            time.sleep(0.3)

    throttler = threading.Thread(target=throttle, daemon=True)
    feeder = run.feeder(slices=2, pause_s=0.5)
    try:
        with run.monitor:
            run.start(feeder)
            throttler.start()
            feeder.finish()
            time.sleep(8.0 if FULL else 4.0)  # slowed while the backlog is worked off
            done.set()
            throttler.join(5)
            run.check()
    finally:
        done.set()
        if slow.proc is not None and slow.proc.poll() is None:
            slow.proc.send_signal(signal.SIGCONT)
        run.farm.stop_all()


def test_rebalance_churn(broker: str, topics: Topics, tmp_path: Path) -> None:
    """A third worker joins and leaves (SIGTERM) every ``CHURN_S`` while streams flow."""
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS * 1.5, "churn")
    assert run.farm is not None and run.monitor is not None
    run.spawn()
    run.spawn()
    feeder = run.feeder(slices=8, pause_s=1.5 if FULL else 1.0)
    try:
        with run.monitor:
            run.start(feeder)
            rounds = 4 if FULL else 2
            for _ in range(rounds):
                third = run.spawn()
                time.sleep(CHURN_S)
                third.stop()
                time.sleep(CHURN_S / 2)
            feeder.finish()
            run.check()
    finally:
        run.farm.stop_all()
