"""``--guarantee exactly-once`` on the real broker: a reader that reads
``read_committed`` sees every window and summary exactly once across ``kill -9`` of a
worker mid-stream and the rebalances that follow (the killed worker's partitions move,
a new worker joins). The same checker as every fault scenario (``checker.py``), plus
no duplicate at all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scenario import FULL, SESSION_TIMEOUT_S, Scenario, chaos_delays

from stream.kafka.topics import Topics

SEEDS = (1, 2, 3) if FULL else (1,)
N_STREAMS, SECONDS = (8, 20.0) if FULL else (4, 6.0)
KILLS = 3 if FULL else 1
EXACTLY_ONCE = ("--guarantee", "exactly-once")


@pytest.fixture(autouse=True)
def _session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYMPAN_SESSION_TIMEOUT_S", str(SESSION_TIMEOUT_S))


@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_and_rebalance_give_each_event_once(
    broker: str, topics: Topics, tmp_path: Path, seed: int
) -> None:
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS, f"eos-kill-s{seed}")
    assert run.farm is not None and run.monitor is not None
    live = [run.spawn(*EXACTLY_ONCE), run.spawn(*EXACTLY_ONCE)]
    feeder = run.feeder(slices=6, pause_s=1.5 if FULL else 1.0)
    try:
        with run.monitor:
            run.start(feeder, 4)
            for i, delay in enumerate(chaos_delays(seed, KILLS, 1.0, 3.0)):
                time.sleep(delay)
                victim = live.pop((seed + i) % len(live))
                victim.kill()  # SIGKILL mid-stream, with a transaction open
                live.append(run.spawn(*EXACTLY_ONCE))  # joins: another rebalance
            feeder.finish()
            outcome = run.check()
        assert outcome.duplicates == 0, f"a read_committed reader saw {outcome.duplicates} repeats"
        assert "opened for exactly-once" in run.farm.logs()
    finally:
        run.farm.stop_all()
