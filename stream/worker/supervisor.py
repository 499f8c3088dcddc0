"""A process per core: ``tympan worker --processes N`` runs N workers as child processes.

One Python process is one event loop, so one worker uses one core. N children in one
consumer group share the audio partitions like N separately started workers; the
supervisor only starts them, restarts one that dies, and stops them all:

* a child that exits while the supervisor is running is logged and restarted; more
  than ``max_restarts`` exits within ``restart_window_s`` means the workers cannot
  run here (a broker that refuses them, a bad model directory): the supervisor stops
  the others and exits 1;
* a child exiting with :data:`REFUSED_EXIT` (the worker's "refused to start"
  status: bad settings, a model that fails its checks) stops everything at once
  with the same status: restarting cannot fix a configuration;
* SIGTERM or SIGINT is passed on to every child; a child still running after
  ``stop_timeout_s`` is killed;
* every child is killed by the kernel if the supervisor itself dies (``SIGKILL``
  included; Linux ``PR_SET_PDEATHSIG``), so no orphan keeps consuming.

The supervisor holds no Kafka client and no model: it is plain ``subprocess``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

REFUSED_EXIT = 2  # what ``tympan worker`` returns when it refuses to start
_PR_SET_PDEATHSIG = 1
CHILD_MAIN = "import sys; from stream.cli import main; sys.exit(main())"


@dataclass(frozen=True, slots=True)
class SupervisorPolicy:
    """How the children are watched.

    Attributes
    ----------
    max_restarts: exits tolerated within ``restart_window_s`` before giving up.
    restart_window_s: the window those exits are counted in.
    stop_timeout_s: how long children get to stop after SIGTERM before SIGKILL.
    poll_s: how often the children are checked.
    """

    max_restarts: int = 5
    restart_window_s: float = 60.0
    stop_timeout_s: float = 30.0
    poll_s: float = 0.2


def default_processes() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def child_command(args: Sequence[str]) -> list[str]:
    """The command line of one child: this interpreter running ``tympan`` ``args``."""
    return [sys.executable, "-c", CHILD_MAIN, *args]


class Supervisor:
    """Runs ``commands`` (one per child) until stopped; :meth:`run` returns the exit status."""

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        policy: SupervisorPolicy | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.commands = [list(c) for c in commands]
        self.policy = policy or SupervisorPolicy()
        self.env = dict(env) if env is not None else None
        self.children: list[subprocess.Popen[bytes] | None] = [None] * len(self.commands)
        self._exits: deque[float] = deque()
        self._signal: int | None = None

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for index in range(len(self.commands)):
                self._spawn(index)
            return self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum

    def _watch(self) -> int:
        while self._signal is None:
            for index, child in enumerate(self.children):
                status = None if child is None else child.poll()
                if status is None:
                    continue
                verdict = self._on_exit(index, status)
                if verdict is not None:
                    return verdict
            time.sleep(self.policy.poll_s)
        log.info("signal %d: stopping %d worker processes", self._signal, len(self.children))
        return 0

    def _on_exit(self, index: int, status: int) -> int | None:
        """A child died: restart it, or say why the supervisor must stop (its status)."""
        child = self.children[index]
        pid = child.pid if child is not None else -1
        how = f"signal {-status}" if status < 0 else f"status {status}"
        if status == REFUSED_EXIT:
            log.critical("worker process %d (pid %d) refused to start; stopping all", index, pid)
            return REFUSED_EXIT
        now = time.monotonic()
        self._exits.append(now)
        while self._exits and now - self._exits[0] > self.policy.restart_window_s:
            self._exits.popleft()
        if len(self._exits) > self.policy.max_restarts:
            log.critical(
                "worker processes exited %d times within %.0f s (last: process %d, pid %d, "
                "%s); giving up",
                len(self._exits),
                self.policy.restart_window_s,
                index,
                pid,
                how,
            )
            return 1
        log.warning("worker process %d (pid %d) exited with %s; restarting it", index, pid, how)
        self._spawn(index)
        return None

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        child = subprocess.Popen(
            self.commands[index], env=self.env, preexec_fn=lambda: _die_with_parent(parent)
        )
        self.children[index] = child
        log.info("worker process %d started (pid %d)", index, child.pid)

    def _stop_all(self) -> None:
        alive = [c for c in self.children if c is not None and c.poll() is None]
        for child in alive:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout_s
        for child in alive:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process pid %d did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: be killed when the supervisor dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)
