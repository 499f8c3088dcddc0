"""The process supervisor behind ``tympan worker --processes N``, with real child
processes (small Python scripts standing in for workers): a dead child is restarted,
a crash loop or a refusal stops everything non-zero, SIGTERM stops all children, and
children never outlive a killed supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stream.worker.supervisor import REFUSED_EXIT

REPO = Path(__file__).resolve().parents[4]
WAIT_S = 60.0


def _child(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _supervisor(
    commands: list[list[str]], tmp: Path, max_restarts: int = 5
) -> subprocess.Popen[bytes]:
    """A supervisor in its own process (it installs signal handlers)."""
    code = (
        "import sys, logging; logging.basicConfig(level=logging.INFO)\n"
        "from stream.worker.supervisor import Supervisor, SupervisorPolicy\n"
        f"policy = SupervisorPolicy(max_restarts={max_restarts}, poll_s=0.05, stop_timeout_s=20)\n"
        f"sys.exit(Supervisor({commands!r}, policy).run())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp / "supervisor.log").open("wb")
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log, env=env)


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _recorder(path: Path, then: str) -> list[str]:
    """A child that appends its pid to ``path``, then runs ``then``."""
    return _child(
        f"import os, sys, time\nopen({str(path)!r}, 'a').write(f'{{os.getpid()}}\\n')\n{then}"
    )


def test_a_dead_child_is_restarted_and_sigterm_stops_all(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    # child a dies the first time only; child b runs until told to stop
    dies_once = f"sys.exit(3) if len(open({str(first)!r}).read().split()) == 1 else time.sleep(600)"
    sup = _supervisor([_recorder(first, dies_once), _recorder(second, "time.sleep(600)")], tmp_path)
    try:
        _wait(lambda: len(_pids(first)) == 2, "child a to be restarted")
        _wait(lambda: len(_pids(second)) == 1, "child b to start")
        assert _alive(_pids(first)[1]) and _alive(_pids(second)[0])
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(WAIT_S) == 0
    finally:
        sup.kill()
    for pid in [_pids(first)[1], _pids(second)[0]]:
        _wait(lambda pid=pid: not _alive(pid), f"child {pid} to stop")
    log = (tmp_path / "supervisor.log").read_text()
    assert "exited with status 3; restarting it" in log
    assert len(_pids(second)) == 1, "the healthy child was restarted too"


def test_children_that_keep_crashing_stop_the_supervisor_non_zero(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sup = _supervisor([_recorder(runs, "sys.exit(1)")], tmp_path, max_restarts=2)
    try:
        assert sup.wait(WAIT_S) == 1
    finally:
        sup.kill()
    assert len(_pids(runs)) == 3
    assert "giving up" in (tmp_path / "supervisor.log").read_text()


def test_a_child_that_refuses_to_start_stops_all_with_its_status(tmp_path: Path) -> None:
    runs, other = tmp_path / "runs", tmp_path / "other"
    sup = _supervisor(
        [_recorder(runs, f"sys.exit({REFUSED_EXIT})"), _recorder(other, "time.sleep(600)")],
        tmp_path,
    )
    try:
        assert sup.wait(WAIT_S) == REFUSED_EXIT
    finally:
        sup.kill()
    assert len(_pids(runs)) == 1, "a refused child was restarted"
    for pid in _pids(other):
        _wait(lambda pid=pid: not _alive(pid), "the other child to stop")


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sup = _supervisor([_recorder(runs, "time.sleep(600)")] * 2, tmp_path)
    try:
        _wait(lambda: len(_pids(runs)) == 2, "both children to start")
        sup.send_signal(signal.SIGKILL)
        sup.wait(WAIT_S)
    finally:
        sup.kill()
    for pid in _pids(runs):
        _wait(lambda pid=pid: not _alive(pid), f"child {pid} to die with its supervisor")
