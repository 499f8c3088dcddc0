"""A failure of the runtime itself (here: the broker refusing every label event)
stops the worker with a non-zero exit and one clear log line; nothing past the
failure is committed. Before the fix this path exited 1 (mode re-raising the crash
reason) with no line saying what the operator must know; the fixed worker exits 70
(``stream.worker.build.EXIT_FATAL``) even when Faust's shutdown hangs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from checker import committed_lag
from worker_harness import (
    WorkerFarm,
    interleave,
    produce,
    stream_frames,
    tiny_model,
    wait_for,
)

from stream.kafka.topics import Topics

EXIT_FATAL = 70  # stream.worker.build.EXIT_FATAL, spelled out: the CLI's contract


async def _refuse_writes(broker: str, topic: str) -> None:
    """Make the broker refuse every record of ``topic`` (too large for it)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "64"})
        await admin.alter_configs([resource])
    finally:
        await admin.close()


def test_broker_refusing_writes_stops_the_worker_non_zero(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    asyncio.run(_refuse_writes(broker, topics.labels))
    farm = WorkerFarm(broker, topics, tiny_model(tmp_path / "model"), tmp_path)
    try:
        worker = farm.spawn("--idle-timeout-s", "600")
        produce(broker, topics, interleave([stream_frames("refused", seconds=3.0, loud=True)]))
        assert worker.proc is not None
        proc = worker.proc
        wait_for(
            lambda: proc.poll() is not None,
            timeout_s=180,
            what="the worker to exit after the broker refused its events",
            farm=farm,
        )
        log = worker.log_text()
    finally:
        farm.stop_all()
    assert proc.returncode == EXIT_FATAL, log[-3000:]
    assert log.count("tympan worker stopping (exit 70)") == 1, log[-3000:]
    behind = committed_lag(broker, farm.app_id, topics.audio, topics.audio_partitions)
    assert behind > 0, "nothing past the failure may be committed"
