"""The local three-node cluster (``scripts/kafka.sh up --cluster``) as tests drive it.

The cluster is the one ``scripts/kafka.sh`` manages for this checkout: its ports and
folder come from ``TYMPAN_KAFKA_CLUSTER_PORT`` and ``TYMPAN_KAFKA_CLUSTER_DIR`` when they
are set (a cluster of one's own beside the shared one), else the script's defaults.
Node ``N`` is Kafka broker id ``N``; its pid is in ``<dir>/node-N/kafka.pid``, as the
script writes it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from stream.kafka.admin import admin_client
from stream.kafka.config import KafkaClientConfig

REPO = Path(__file__).resolve().parents[2]
NODES = (1, 2, 3)


def cluster_dir() -> Path:
    """Where ``scripts/kafka.sh --cluster`` keeps the nodes' folders (its own default)."""
    return Path(os.environ.get("TYMPAN_KAFKA_CLUSTER_DIR") or REPO / ".tympan" / "kafka-cluster")


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

    def start(self, node: int) -> None:
        """Start one node if it is not running and wait until it answers."""
        self._kafka_sh("up", "--node", str(node))

    def start_all(self) -> None:
        """Start whichever nodes are not running and wait until each answers."""
        for node in NODES:  # a node left frozen by a failed test runs again
            pid = self.pid(node)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        self._kafka_sh("up")

    def pid(self, node: int) -> int | None:
        """The pid of node ``node``'s JVM, found the way ``kafka.sh`` finds it (``None``:
        not running)."""
        node_dir = cluster_dir() / f"node-{node}"
        try:
            pid = int((node_dir / "kafka.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            return None
        config = f"kafka.Kafka {node_dir / 'config' / 'server.properties'}".encode()
        return pid if config in cmdline else None

    def _signal(self, node: int, sig: signal.Signals) -> int:
        pid = self.pid(node)
        assert pid is not None, f"node {node} of the cluster is not running"
        os.kill(pid, sig)
        return pid

    def kill(self, node: int) -> None:
        """SIGKILL node ``node``: no shutdown, no leadership handed over, no flush."""
        pid = self._signal(node, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def freeze(self, node: int) -> None:
        """SIGSTOP node ``node``: it holds its connections and answers nothing."""
        self._signal(node, signal.SIGSTOP)

    def thaw(self, node: int) -> None:
        """SIGCONT a node :meth:`freeze` stopped."""
        self._signal(node, signal.SIGCONT)

    def rolling_restart(self, topics: list[str], *, timeout_s: float = 180.0) -> None:
        """Restart every node in turn (clean stop, start), each only once every
        partition of ``topics`` has all its replicas in sync again."""
        for node in NODES:
            self.wait_in_sync(topics, timeout_s=timeout_s)
            self.stop(node)
            self.start(node)
        self.wait_in_sync(topics, timeout_s=timeout_s)

    def wait_in_sync(self, topics: list[str], *, timeout_s: float = 180.0) -> None:
        """Wait until every partition of ``topics`` has a leader and a full ISR."""
        deadline = time.monotonic() + timeout_s
        while True:
            behind = [
                f"{t['topic']}[{p['partition']}]"
                for t in self.metadata(topics)
                for p in t["partitions"]
                if p["leader"] < 0 or len(p["isr"]) < len(p["replicas"])
            ]
            if not behind:
                return
            assert time.monotonic() < deadline, f"partitions not back in sync: {behind[:10]}"
            time.sleep(1.0)

    def leader_of_most(self, topic: str) -> int:
        """The node that leads most partitions of ``topic`` (the lowest id on a tie)."""
        (meta,) = self.metadata([topic])
        leaders = Counter(p["leader"] for p in meta["partitions"] if p["leader"] >= 0)
        assert leaders, f"topic {topic!r} has no partition with a leader"
        most = max(leaders.values())
        return min(node for node, n in leaders.items() if n == most)

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition → leader node of ``topic`` (-1: none)."""
        (meta,) = self.metadata([topic])
        return {p["partition"]: p["leader"] for p in meta["partitions"]}

    def metadata(self, topics: list[str], *, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """The brokers' metadata of ``topics`` (partitions with leader, replicas, isr);
        asked again while the node the client picked is the one a test killed."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._metadata(topics)
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _metadata(self, topics: list[str]) -> list[dict[str, Any]]:

        async def describe() -> list[dict[str, Any]]:
            admin = admin_client(self.client, request_timeout_ms=10_000)
            await admin.start()
            try:
                wanted = set(topics)
                return [t for t in await admin.describe_topics() if t["topic"] in wanted]
            finally:
                await admin.close()

        return asyncio.run(describe())

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
