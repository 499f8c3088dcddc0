"""Run ``tympan worker`` as a subprocess against the test broker, and read its output.

Used by ``test_worker_*.py`` (``from worker_harness import ...``; pytest puts this
folder on ``sys.path``). Each worker gets the test's unique topic prefix, its own
consumer group (app id), data dir and log file; the log's tail is shown when a test
fails so the worker's view is part of the report.

The expected events come from the same domain code run synchronously
(``tests.support.replay.run_sync``) over the same frames, so a test states "the worker
on Kafka says what the pipeline says", whatever the order, duplicates or crashes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kafka_helpers import consume_all

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.kafka.admin import delete_topics, ensure_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.produce import frames_from_array, frames_from_payload, produce_frames
from stream.wire import AudioFrame, Encoding, encode_frame
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import run_sync

REPO = Path(__file__).resolve().parents[2]
TYMPAN = REPO / ".venv" / "bin" / "tympan"
LABELS = ("quiet", "loud")
SPEC = FeatureSpec()


def tiny_model(path: Path) -> Path:
    """A tiny real model: ``loud`` when a window is louder than about -45 dB."""
    return make_tiny_model_dir(path, spec=SPEC, labels=LABELS)


@dataclass
class WorkerProcess:
    """One ``tympan worker`` subprocess."""

    args: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    replaced: bool = False  # exited, and a supervisor (a fault test) started another

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class WorkerFarm:
    """Workers of one test: same topics and consumer group, separate data dirs."""

    broker: str
    topics: Topics
    model_dir: Path
    tmp: Path
    app_id: str = field(default_factory=lambda: f"test-worker-{uuid.uuid4().hex[:8]}")
    workers: list[WorkerProcess] = field(default_factory=list)

    def spawn(self, *extra: str) -> WorkerProcess:
        n = len(self.workers)
        args = [
            str(TYMPAN),
            "worker",
            "--model",
            str(self.model_dir),
            "--broker",
            self.broker,
            "--topic-prefix",
            self.topics.prefix,
            "--app-id",
            self.app_id,
            "--data-dir",
            str(self.tmp / f"data-{n}"),
            "--web-port",
            "0",
            "--no-create-topics",
            "--processes",
            "1",
            "--loglevel",
            "info",
            *extra,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENBLAS_NUM_THREADS": "1"}
        worker = WorkerProcess(args, self.tmp / f"worker-{n}.log", env).start()
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name} ---\n{w.log_tail()}" for w in self.workers)


# -- audio --------------------------------------------------------------------------------


def noise(seconds: float, sr: int, amp: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(round(seconds * sr)) * amp, -1, 1).astype(np.float32)


def stream_frames(
    stream_id: str,
    *,
    seconds: float,
    loud: bool,
    sr: int = 16000,
    encoding: Encoding = Encoding.PCM_S16LE,
    channels: int = 1,
    chunk_ms: float = 20,
    seed: int = 0,
) -> list[AudioFrame]:
    """Frames of white noise: loud (RMS 0.2) or near-silent (RMS 1e-5)."""
    amp = 0.2 if loud else 1e-5
    start_us = 1_700_000_000_000_000
    if channels == 1:
        y = noise(seconds, sr, amp, seed)
        return list(
            frames_from_array(
                y, sr, stream_id=stream_id, encoding=encoding, chunk_ms=chunk_ms, start_us=start_us
            )
        )
    assert encoding is Encoding.PCM_F32LE
    y = np.stack([noise(seconds, sr, amp, seed + c) for c in range(channels)], axis=1)
    return list(
        frames_from_payload(
            y.astype("<f4").tobytes(),
            sr,
            stream_id=stream_id,
            encoding=encoding,
            channels=channels,
            chunk_ms=chunk_ms,
            start_us=start_us,
        )
    )


def interleave(streams: Sequence[Sequence[AudioFrame]]) -> list[AudioFrame]:
    """Round-robin: concurrent streams, each in its own order."""
    out: list[AudioFrame] = []
    longest = max(len(s) for s in streams)
    for i in range(longest):
        out.extend(s[i] for s in streams if i < len(s))
    return out


def produce(broker: str, topics: Topics, frames: Iterable[AudioFrame]) -> None:
    asyncio.run(produce_frames(broker, topics.audio, list(frames), restamp=False))


# -- expectations ------------------------------------------------------------------------


def expected_events(
    model_dir: Path, streams: Sequence[Sequence[AudioFrame]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Label and summary events (by event id) the pipeline gives on ordered frames."""
    model = OnnxModel.load(model_dir)
    pipeline = Pipeline(
        model.spec,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(model.spec),
        PipelinePolicy(),
    )
    records = []
    for offset, frame in enumerate(interleave(streams)):
        key, value, headers = encode_frame(frame)
        records.append(Record(key, value, tuple(headers), "audio", 0, offset))
    labels, summaries, rejected = run_sync(pipeline, records, lambda x: model.run(x).probabilities)
    assert not rejected
    return (
        {e.event_id: e.to_dict() for e in labels},
        {e.event_id: e.to_dict() for e in summaries},
    )


def read_json(broker: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in consume_all(broker, topic)]


def wait_for(
    check: Callable[[], Any], *, timeout_s: float, what: str, farm: WorkerFarm | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the workers' logs."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        result = check()
        if result:
            print(f"[harness] {what}: {time.monotonic() - started:.1f} s")
            return result
        if time.monotonic() > deadline:
            logs = farm.logs() if farm is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")
        time.sleep(1.0)


def wait_for_count(
    broker: str, topic: str, n: int, *, timeout_s: float, what: str, farm: WorkerFarm
) -> list[dict[str, Any]]:
    """Wait until ``topic`` holds at least ``n`` events; return all of them."""
    return wait_for(
        lambda: (events := read_json(broker, topic)) and len(events) >= n and events,
        timeout_s=timeout_s,
        what=what,
        farm=farm,
    )


def wait_for_ids(
    broker: str,
    topic: str,
    want: Iterable[str],
    *,
    what: str,
    farm: WorkerFarm,
    timeout_s: float = 30,
) -> list[dict[str, Any]]:
    """Wait until every event id in ``want`` is on ``topic``; return all its events
    (duplicates included, so callers can check them too)."""
    wanted = set(want)
    return wait_for(
        lambda: (
            (events := read_json(broker, topic))
            and wanted <= {e["event_id"] for e in events}
            and events
        ),
        timeout_s=timeout_s,
        what=what,
        farm=farm,
    )


def wait_until_committed(
    broker: str, topics: Topics, farm: WorkerFarm, *, what: str, timeout_s: float = 30
) -> None:
    """Wait until the farm's group has committed offsets to the end of the audio topic:
    the sign that nothing is pinned by an undelivered event any more."""

    def caught_up() -> bool:
        behind, total = committed_lag(broker, farm.app_id, topics.audio, topics.audio_partitions)
        assert total > 0, f"{topics.audio} is empty"
        return behind == 0

    wait_for(caught_up, timeout_s=timeout_s, what=what, farm=farm)


@contextmanager
def module_topics(broker: str, name: str) -> Iterator[Topics]:
    """Tympan's topics under a unique ``test-<name>-<uuid>`` prefix, for a module-scoped
    fixture (conftest's ``topics`` is per test); deleted afterwards."""
    client = KafkaClientConfig.from_environ(os.environ, bootstrap_servers=broker)
    topics = Topics().with_prefix(f"test-{name}-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(client, topics))
    try:
        yield topics
    finally:
        asyncio.run(delete_topics(client, list(topics.names())))


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """An event without what legitimately differs between two runs (latency) and with
    scores rounded to the precision batching can move them (onnxruntime kernels may
    round differently for different batch sizes)."""
    out = {k: v for k, v in event.items() if k != "latency_ms"}
    if "score" in out:
        out["score"] = round(out["score"], 4)
    if "top_k" in out:
        out["top_k"] = [{"label": t["label"], "score": round(t["score"], 4)} for t in out["top_k"]]
    if "timeline" in out:
        out["timeline"] = [{**s, "mean_score": round(s["mean_score"], 4)} for s in out["timeline"]]
    return out


def by_id(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["event_id"], []).append(event)
    return out


def assert_same_events(
    got: Iterable[dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Assert the events ``got`` are exactly the ``expected`` ones (by event id), every
    copy -- duplicates from replays included -- with the expected content; return
    them grouped by id."""
    grouped = by_id(got)
    assert set(grouped) == set(expected), "a window is missing or unexpected"
    for eid, copies in grouped.items():
        for copy in copies:  # a replayed duplicate has the same id and the same content
            assert comparable(copy) == comparable(expected[eid])
    return grouped


def committed_lag(broker: str, group: str, topic: str, partitions: int) -> tuple[int, int]:
    """``(records past group's committed offsets, records in the topic)``, summed over
    the ``partitions`` of ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def lag() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(tps)
            behind = 0
            for tp in tps:
                committed = await consumer.committed(tp)
                behind += ends[tp] - (committed or 0)
            return behind, sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(lag())
