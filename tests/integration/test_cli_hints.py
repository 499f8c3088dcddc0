"""Producing where no worker consumes says so; producing where one does stays quiet.

The audio topic keeps what is produced whether or not a worker reads it, so a user who
produced to the wrong prefix (or forgot the worker) used to wait for events that never
came. ``tympan produce`` and ``tympan tail`` now ask whether the workers' consumer group
(``<prefix>-worker``) has members. A real aiokafka consumer in that group stands in for
the worker: membership is all the check reads.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from aiokafka import AIOKafkaConsumer
from worker_harness import TYMPAN

from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

pytestmark = pytest.mark.kafka


def _tympan(broker: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TYMPAN_APP_ID", "TYMPAN_TOPIC_PREFIX")}
    env["TYMPAN_BROKER"] = broker
    return subprocess.run(
        [str(TYMPAN), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _clip(tmp_path: Path) -> Path:
    path = tmp_path / "call.wav"
    sf.write(path, np.full(8000, 0.1, np.float32), 16000, subtype="PCM_16")
    return path


async def _with_member(client: KafkaClientConfig, topics: Topics, then: object) -> object:
    consumer = AIOKafkaConsumer(
        topics.audio, group_id=f"{topics.prefix}-worker", **client.aiokafka_kwargs()
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # joined: the coordinator lists it as a member
            await consumer.getmany(timeout_ms=200)
        return await asyncio.to_thread(then)  # type: ignore[arg-type]
    finally:
        await consumer.stop()


def test_produce_and_tail_warn_when_no_worker_consumes(
    broker: str, kafka_client: KafkaClientConfig, topics: Topics, tmp_path: Path
) -> None:
    clip = _clip(tmp_path)
    argv = ["produce", "--fast", "--no-progress", "--topic-prefix", topics.prefix, str(clip)]

    alone = _tympan(broker, *argv)
    tailed = _tympan(broker, "tail", "--topic-prefix", topics.prefix, "--idle-exit", "1")

    hint = (
        f"no worker is consuming {topics.audio} now (its consumer group "
        f"'{topics.prefix}-worker' has no members)"
    )
    assert alone.returncode == 0, alone.stderr
    assert hint in alone.stderr and f"tympan worker --topic-prefix {topics.prefix}" in alone.stderr
    assert tailed.returncode == 0 and hint in tailed.stderr

    served = asyncio.run(_with_member(kafka_client, topics, lambda: _tympan(broker, *argv)))

    assert isinstance(served, subprocess.CompletedProcess)
    assert served.returncode == 0, served.stderr
    assert "no worker is consuming" not in served.stderr
