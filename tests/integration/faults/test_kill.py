"""``kill -9`` of workers at random times (several seeds), and of both at once: no
window lost, duplicates identical, offsets committed to the end, never backwards."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scenario import FULL, SESSION_TIMEOUT_S, Scenario, chaos_delays

from stream.kafka.topics import Topics

SEEDS = (1, 2, 3, 4, 5) if FULL else (1,)
N_STREAMS, SECONDS = (8, 20.0) if FULL else (4, 6.0)
KILLS = 4 if FULL else 2


@pytest.fixture(autouse=True)
def _session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYMPAN_SESSION_TIMEOUT_S", str(SESSION_TIMEOUT_S))


@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_at_random_times(broker: str, topics: Topics, tmp_path: Path, seed: int) -> None:
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS, f"kill-s{seed}")
    assert run.farm is not None and run.monitor is not None
    live = [run.spawn(), run.spawn()]
    feeder = run.feeder(slices=8, pause_s=1.5 if FULL else 1.0)
    try:
        with run.monitor:
            run.start(feeder)
            for i, delay in enumerate(chaos_delays(seed, KILLS, 2.0, 6.0)):
                time.sleep(delay)
                victim = live.pop((seed + i) % len(live))
                victim.kill()
                live.append(run.spawn())
            feeder.finish()
            run.check()
    finally:
        run.farm.stop_all()


def test_kill9_both_workers_at_once(broker: str, topics: Topics, tmp_path: Path) -> None:
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS, "kill-both")
    assert run.farm is not None and run.monitor is not None
    first = [run.spawn(), run.spawn()]
    feeder = run.feeder(slices=6, pause_s=1.5 if FULL else 1.0)
    try:
        with run.monitor:
            run.start(feeder, 4)
            time.sleep(1.0)
            for worker in first:
                assert worker.proc is not None
                worker.proc.send_signal(9)
            for worker in first:
                worker.kill()  # reaps them
            run.spawn()
            run.spawn()
            feeder.finish()
            outcome = run.check()
        assert outcome.duplicates > 0, "the restarted workers should have replayed"
    finally:
        run.farm.stop_all()
