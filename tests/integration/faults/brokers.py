"""A private single-node broker for the faults that stop the broker itself (stopping
the shared test broker would disturb every other test): ``scripts/kafka.sh`` on free
ports and a data directory of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from worker_harness import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    def __init__(self, tmp: Path) -> None:
        port = _free_port()
        self.dir = tmp / "kafka"
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "TYMPAN_KAFKA_PORT": str(port),
            "TYMPAN_KAFKA_CONTROLLER_PORT": str(_free_port()),
            "TYMPAN_KAFKA_DIR": str(self.dir),
            "TYMPAN_KAFKA_STOP_TIMEOUT": "20",
        }

    def run(self, *args: str) -> None:
        subprocess.run(
            [str(REPO / "scripts" / "kafka.sh"), *args],
            env=self.env,
            check=True,
            timeout=180,
            capture_output=True,
        )

    @property
    def pid(self) -> int:
        return int((self.dir / "kafka.pid").read_text().strip())

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)
