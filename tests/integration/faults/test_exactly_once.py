"""``--guarantee exactly-once`` on the real broker: a reader that reads
``read_committed`` sees every window and summary exactly once across ``kill -9`` of a
worker mid-stream and the rebalances that follow (the killed worker's partitions move,
a new worker joins), and when a worker frozen past its session timeout wakes up with a
transaction open (a zombie: fenced, it must commit nothing and stop). The same checker
as every fault scenario (``checker.py``), plus no duplicate at all."""

from __future__ import annotations

import signal
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


def test_a_frozen_worker_is_fenced_when_it_wakes(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    run = Scenario(broker, topics, tmp_path, N_STREAMS, SECONDS, "eos-zombie")
    assert run.farm is not None and run.monitor is not None
    zombie, _other = run.spawn(*EXACTLY_ONCE), run.spawn(*EXACTLY_ONCE)
    feeder = run.feeder(slices=6, pause_s=1.0)
    try:
        with run.monitor:
            run.start(feeder, 4)
            assert zombie.proc is not None
            zombie.proc.send_signal(signal.SIGSTOP)  # mid-stream, a transaction open
            time.sleep(SESSION_TIMEOUT_S * 2)  # its partitions move: the fence
            zombie.proc.send_signal(signal.SIGCONT)
            feeder.finish()
            outcome = run.check()
        assert outcome.duplicates == 0, f"a read_committed reader saw {outcome.duplicates} repeats"
        # awake, it may only find out it was fenced (and stop, exit 70) or rejoin cleanly
        assert zombie.proc.poll() in (None, 70), zombie.log_text()[-3000:]
    finally:
        run.farm.stop_all()
