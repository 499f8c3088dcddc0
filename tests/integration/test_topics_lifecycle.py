"""Topics on a fresh broker, as a first user meets them: the real CLI, the real broker.

The dev broker does not auto-create topics, so whoever touches a topic first decides
its shape: ``tympan produce`` creates tympan's topics with the worker's partition
counts (the worker then starts instead of refusing a one-partition audio topic),
readers refuse with the command that creates them, and ``tympan topics delete`` clears a
prefix (asking first, refusing without a terminal unless ``--yes``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
from kafka_helpers import consume_all
from worker_harness import TYMPAN, WorkerProcess, noise, read_json, tiny_model, wait_for

from stream.kafka.admin import (
    EnsureReport,
    admin_client,
    delete_topics,
    describe_topics,
    ensure_topics,
    list_topics,
)
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics

pytestmark = pytest.mark.kafka


def tympan(
    broker: str, *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TYMPAN_BROKER": broker}
    env.pop("TYMPAN_TOPIC_PREFIX", None)
    return subprocess.run(
        [str(TYMPAN), *args], capture_output=True, text=True, env=env, stdin=stdin, timeout=180
    )


def on_broker(client: KafkaClientConfig, prefix: str) -> set[str]:
    """Every topic whose name starts with ``prefix`` (Faust's internal ones included)."""
    return {name for name in asyncio.run(list_topics(client)) if name.startswith(prefix)}


@pytest.fixture
def fresh(kafka_client: KafkaClientConfig) -> Iterator[Topics]:
    """A prefix with no topics yet; everything under it is deleted afterwards."""
    topics = Topics().with_prefix(f"test-fresh-{uuid.uuid4().hex[:8]}")
    assert not on_broker(kafka_client, topics.prefix)
    yield topics
    asyncio.run(delete_topics(kafka_client, sorted(on_broker(kafka_client, topics.prefix))))


def start_worker(broker: str, topics: Topics, tmp_path: Path, *extra: str) -> WorkerProcess:
    """``tympan worker`` on ``topics`` with a tiny model, creating topics (its default)."""
    return WorkerProcess(
        [
            str(TYMPAN),
            "worker",
            "--model",
            str(tiny_model(tmp_path / "model")),
            "--broker",
            broker,
            "--topic-prefix",
            topics.prefix,
            "--app-id",
            f"{topics.prefix}-worker",
            "--data-dir",
            str(tmp_path / "data"),
            "--web-port",
            "0",
            *extra,
        ],
        tmp_path / "worker.log",
        {**os.environ, "PYTHONUNBUFFERED": "1", "OPENBLAS_NUM_THREADS": "1"},
    ).start()


def test_produce_on_an_empty_broker_gives_a_working_worker(
    broker: str, kafka_client: KafkaClientConfig, fresh: Topics, tmp_path: Path
) -> None:
    wav = tmp_path / "first-call.wav"
    sf.write(wav, noise(1.0, 16000, 0.3, seed=7), 16000, subtype="PCM_16")

    done = tympan(
        broker, "produce", "--fast", "--no-progress", "--topic-prefix", fresh.prefix, str(wav)
    )

    assert done.returncode == 0, done.stderr
    assert fresh.audio in done.stderr  # "created ..." names what it made
    infos = {i.name: i for i in asyncio.run(describe_topics(kafka_client, list(fresh.names())))}
    for spec in fresh.specs():
        assert infos[spec.name].partitions == spec.partitions
    assert infos[fresh.control].configs["cleanup.policy"] == "compact"
    # the broker stamps audio records (idle closes follow Kafka time, not a producer's)
    assert infos[fresh.audio].configs["message.timestamp.type"] == "LogAppendTime"
    (frame_record, *_) = consume_all(broker, fresh.audio)
    assert frame_record.timestamp_type == 1  # LogAppendTime (CreateTime is 0)

    # The worker checks the topics it finds (no --no-create-topics) and must accept them.
    worker = start_worker(broker, fresh, tmp_path, "--loglevel", "info")
    try:
        summaries = wait_for(
            lambda: (
                [e for e in read_json(broker, fresh.summaries) if e["stream_id"] == "first-call"]
                or (worker.proc is not None and worker.proc.poll() is not None and ["exited"])
            ),
            timeout_s=180,
            what="the summary of the produced call",
        )
        assert summaries != ["exited"], worker.log_tail()
        assert "partitions, expected" not in worker.log_text()
    finally:
        worker.stop()


def test_an_at_least_once_worker_creates_only_the_topics_it_uses(
    broker: str, kafka_client: KafkaClientConfig, fresh: Topics, tmp_path: Path
) -> None:
    """A worker on a managed cluster may have no right on the progress topic, which only
    exactly-once uses: creating it anyway stopped such a worker at start."""
    worker = start_worker(broker, fresh, tmp_path, "--processes", "1")
    try:
        # one CreateTopics request makes them all: once the registry is there, so is the rest
        wait_for(
            lambda: fresh.speaker_registry in on_broker(kafka_client, fresh.prefix),
            timeout_s=120,
            what="the worker's topics",
        )
        created = on_broker(kafka_client, fresh.prefix)
    finally:
        worker.stop()

    assert set(fresh.for_worker(transactional=False)) <= created
    assert fresh.progress not in created


def test_a_reader_refuses_missing_topics_and_names_the_command(
    broker: str, kafka_client: KafkaClientConfig, fresh: Topics
) -> None:
    env_prefix = ["--topic-prefix", fresh.prefix]

    done = tympan(broker, "tail", "--topic", "summaries", "--idle-exit", "1", *env_prefix)

    assert done.returncode == 3  # ExitCode.BROKER: a topic the command needs is missing
    assert fresh.summaries in done.stderr
    assert f"tympan topics create --broker {broker} --topic-prefix {fresh.prefix}" in done.stderr
    assert not on_broker(kafka_client, fresh.prefix)  # asking did not create anything


def test_topics_delete_clears_one_prefix_and_asks_first(
    broker: str, kafka_client: KafkaClientConfig, fresh: Topics
) -> None:
    # A prefix that merely starts with the same characters is another deployment's.
    neighbour = fresh.with_prefix(f"{fresh.prefix}x")
    asyncio.run(ensure_topics(kafka_client, fresh))
    asyncio.run(ensure_topics(kafka_client, neighbour))

    refused = tympan(broker, "topics", "delete", "--prefix", fresh.prefix)  # stdin: no tty

    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert set(fresh.names()) <= on_broker(kafka_client, fresh.prefix)

    done = tympan(broker, "topics", "delete", "--prefix", fresh.prefix, "--yes")

    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[-1] for line in done.stdout.splitlines()) == sorted(fresh.names())
    assert on_broker(kafka_client, fresh.prefix) == set(neighbour.names())
    again = tympan(broker, "topics", "create", "--prefix", fresh.prefix)  # at once: deletion done
    assert again.returncode == 0, again.stderr


def test_an_existing_audio_topic_with_create_time_is_kept_and_the_fix_is_named(
    kafka_client: KafkaClientConfig, fresh: Topics
) -> None:
    async def scenario() -> tuple[EnsureReport, EnsureReport]:
        audio = fresh.for_cluster(1).spec(fresh.audio)
        configs = {k: v for k, v in audio.configs.items() if k != "message.timestamp.type"}
        old = replace(audio, configs=configs)  # as audio topics were created before
        admin = admin_client(kafka_client)
        await admin.start()
        try:
            await admin.create_topics([old.new_topic()])
        finally:
            await admin.close()
        first = await ensure_topics(kafka_client, fresh)
        return first, await ensure_topics(kafka_client, fresh)

    first, again = asyncio.run(scenario())

    assert fresh.audio in first.existing
    (line,) = first.advice
    assert f"topic {fresh.audio!r} has message.timestamp.type=(broker default)" in line
    assert f"--entity-name {fresh.audio} --add-config message.timestamp.type=LogAppendTime" in line
    infos = {i.name: i for i in asyncio.run(describe_topics(kafka_client, [fresh.audio]))}
    assert "message.timestamp.type" not in infos[fresh.audio].configs  # left as it was
    assert again.advice == first.advice  # said at every start until it is fixed
    # the other topics were created by ensure_topics itself: nothing to advise about them
    assert not any(fresh.control in a for a in first.advice)
