"""The local three-node cluster (``scripts/kafka.sh up --cluster``) as tests drive it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stream.kafka.config import KafkaClientConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    """The local three-node cluster, and its nodes one by one."""

    bootstrap: str

    @property
    def client(self) -> KafkaClientConfig:
        return KafkaClientConfig(bootstrap_servers=self.bootstrap, client_id="tympan-tests")

    def _kafka_sh(self, *args: str) -> None:
        subprocess.run(
            ["scripts/kafka.sh", *args, "--cluster"],
            cwd=REPO,
            check=True,
            capture_output=True,
            env={**os.environ, "TYMPAN_PYTHON": sys.executable},
        )

    def stop(self, node: int) -> None:
        """Stop one node (SIGTERM: a clean shutdown, its partitions' leadership moves)."""
        self._kafka_sh("down", "--node", str(node))

    def start_all(self) -> None:
        """Start whichever nodes are not running and wait until each answers."""
        self._kafka_sh("up")

    def tympan(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the ``tympan`` CLI against the cluster."""
        return subprocess.run(
            [str(Path(sys.executable).with_name("tympan")), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "TYMPAN_BROKER": self.bootstrap},
        )
