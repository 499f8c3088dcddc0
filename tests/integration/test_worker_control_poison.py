"""A worker keeps serving while poison records arrive on its control and registry
topics, and a worker started while the latest announcement is poison serves the
last good one (issue 11: the control plane; ``docs/hot-reload.md``).

A worker with the tiny label model and the shipped speaker-embed model (so it
follows the speaker-registry topic) classifies two calls while hypothesis-generated
mutations of real records arrive: on the control topic (``model/scene``, one at a
time, each answered by a ``refused`` status; plus ``[`` x 100,000, a path out of
the repository and a poison ``model/speaker``) and on the registry topic (each a
logged, counted rejection). Every window of both calls gets its event, equal to the
pipeline's. Then v2 is published (active; the worker writes ``last-good/scene``), the
``[`` x 100,000 record is made the latest announcement, and a new worker started with
``--model`` v1 serves v2 and refuses the poison record.

Bounded by default; ``TYMPAN_TEST_SCALE=full`` sends more mutations.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka_helpers import consume_all, produce_records
from worker_harness import (
    LABELS,
    REPO,
    SPEC,
    WorkerFarm,
    by_id,
    comparable,
    expected_events,
    interleave,
    module_topics,
    produce,
    read_json,
    stream_frames,
    wait_for,
    wait_for_count,
)

from stream.control.gate import announce
from stream.control.records import publish_records
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.speakers.registry import ModelBinding, SpeakerRegistry
from stream.speakers.topic import apply_record, encode_enrollment
from tests.support.onnx_models import make_tiny_model_dir

FULL = os.environ.get("TYMPAN_TEST_SCALE") == "full"
CONTROL_MUTATIONS = 12 if FULL else 3
REGISTRY_MUTATIONS = 300 if FULL else 30
SPEAKER_MODEL = REPO / "models" / "zoo" / "speaker-embed" / "1"
DEEP = b"[" * 100_000
CALLS = ("call-a", "call-b")


def _mutate(data: st.DataObject, value: bytes, label: str) -> bytes:
    out = bytearray(value)
    for _ in range(data.draw(st.integers(1, 4), label=f"{label} edits")):
        at = data.draw(st.integers(0, len(out)))
        piece = data.draw(
            st.sampled_from([b"[", b"{", b"]", b"}", b'"', b"\\", b"\xff", b"[" * 40])
        )
        if data.draw(st.booleans()):
            out[at:at] = piece
        else:
            del out[at : at + len(piece)]
    return bytes(out)


def _statuses(broker: str, topics: Topics) -> list[dict[str, Any]]:
    return [
        json.loads(r.value)
        for r in consume_all(broker, topics.control_status)
        if r.key and r.key.startswith(b"status/") and r.value
    ]


def _last_good(broker: str, topics: Topics) -> list[dict[str, Any]]:
    return [
        json.loads(r.value)
        for r in consume_all(broker, topics.control_status)
        if r.key == b"last-good/scene" and r.value
    ]


def _enrollment(binding: ModelBinding, name: str, seed: int) -> tuple[bytes, bytes]:
    x = np.random.default_rng(seed).normal(size=(3, binding.embedding_dim))
    registry = SpeakerRegistry.empty(binding).with_speaker(
        name, x / np.linalg.norm(x, axis=1, keepdims=True), model=binding
    )
    return encode_enrollment(registry, name)


@settings(
    max_examples=1,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # one run on the broker: no replay, no shrinking
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_worker_serves_through_poison_and_restarts_on_the_last_good_model(
    broker: str, tmp_path: Path, data: st.DataObject
) -> None:
    with module_topics(broker, "control-poison") as topics:  # fresh if hypothesis reruns
        _scenario(broker, topics, tmp_path / f"run-{os.urandom(4).hex()}", data)


def _scenario(broker: str, topics: Topics, run: Path, data: st.DataObject) -> None:
    repo = run / "repo"
    v1 = make_tiny_model_dir(repo / "tiny" / "1", spec=SPEC, labels=LABELS)
    v2 = make_tiny_model_dir(repo / "tiny" / "2", spec=SPEC, labels=LABELS, version="2")
    ghost = make_tiny_model_dir(repo / "tiny" / "9", spec=SPEC, labels=LABELS, version="9")
    missing = announce(ghost, role="scene", repo=repo).to_json()  # then deleted: never loads
    for f in ghost.iterdir():
        f.unlink()
    client = KafkaClientConfig(bootstrap_servers=broker)
    binding = ModelBinding("speaker-embed", "1", 128)

    control = {_mutate(data, missing, f"control {i}") for i in range(CONTROL_MUTATIONS)}
    escape = json.loads(missing)
    escape["path"] = "../../../etc"
    control |= {DEEP, json.dumps(escape).encode()}
    registry = [
        (f"poison-{i}".encode(), _mutate(data, _enrollment(binding, "x", i)[1], f"registry {i}"))
        for i in range(REGISTRY_MUTATIONS)
    ]
    registry = [(k, v) for k, v in registry if not _still_valid(v, binding)]
    registry.append((b"deep", DEEP))

    calls = [stream_frames(sid, seconds=6.0, loud=True, seed=i) for i, sid in enumerate(CALLS)]
    frames = interleave(calls)
    half = len(frames) // 2
    farm = WorkerFarm(broker, topics, v1, run)
    common = ("--model-repo", str(repo), "--speaker-model", str(SPEAKER_MODEL))
    try:
        first = farm.spawn(*common, "--idle-timeout-s", "300")
        produce(broker, topics, frames[:half])
        wait_for(
            lambda: {e["stream_id"] for e in read_json(broker, topics.labels)} == set(CALLS),
            timeout_s=180,
            what="label events of both calls",
            farm=farm,
        )
        # control poison, one record at a time: each answered by a refusal
        for n, value in enumerate(sorted(control), start=1):
            produce_records(client, topics.control, [(b"model/scene", value)])
            wait_for(
                lambda n=n: (
                    len([s for s in _statuses(broker, topics) if s["state"] == "refused"]) >= n
                ),
                timeout_s=60,
                what=f"refusal {n} of {len(control)} control records",
                farm=farm,
            )
        produce_records(client, topics.control, [(b"model/speaker", DEEP)])
        produce_records(client, topics.speaker_registry, registry)
        produce(broker, topics, frames[half:])
        summaries = wait_for_count(
            broker, topics.summaries, len(CALLS), timeout_s=180, what="both summaries", farm=farm
        )
        wait_for(
            lambda: first.log_text().count("speaker registry: ") >= len(registry),
            timeout_s=60,
            what=f"{len(registry)} registry rejections",
            farm=farm,
        )
        statuses = _statuses(broker, topics)
        refused = [s for s in statuses if s["state"] == "refused"]
        assert len([s for s in refused if s["role"] == "scene"]) == len(control)
        assert any(s["role"] == "speaker" and "record_too_large" in s["reason"] for s in refused)
        assert any("inside the model repository" in s["reason"] for s in refused)
        assert first.log_text().count("speaker registry: ") == len(registry)
        labels = read_json(broker, topics.labels)

        # v2 goes live; then poison becomes the latest announcement and a new worker starts
        publish = [(b"model/scene", announce(v2, role="scene", repo=repo).to_json())]
        asyncio.run(publish_records(client, topics.control, publish))
        wait_for(
            lambda: _last_good(broker, topics),
            timeout_s=60,
            what="the worker's last-good/scene record",
            farm=farm,
        )
        assert _last_good(broker, topics)[-1]["version"] == "2"
        produce_records(client, topics.control, [(b"model/scene", DEEP)])
        wait_for(
            lambda: (
                len([s for s in _statuses(broker, topics) if s["state"] == "refused"])
                > len(refused)
            ),
            timeout_s=60,
            what="the refusal of the poison latest announcement",
            farm=farm,
        )
        first.stop()
        second = farm.spawn(*common)
        wait_for(
            lambda: "tympan worker: model tiny@2 " in second.log_text(),
            timeout_s=120,
            what="a restarted worker serving the last good model",
            farm=farm,
        )
        late = stream_frames("call-c", seconds=3.0, loud=True, seed=7)
        produce(broker, topics, late)
        wait_for_count(
            broker, topics.summaries, len(CALLS) + 1, timeout_s=180, what="call-c", farm=farm
        )
        late_labels = [e for e in read_json(broker, topics.labels) if e["stream_id"] == "call-c"]
        assert late_labels and {e["model"]["version"] for e in late_labels} == {"2"}
        for worker in farm.workers:
            assert "Traceback" not in worker.log_text(), worker.log_tail()
    finally:
        farm.stop_all()

    expected, _ = expected_events(v1, calls)
    got = by_id([e for e in labels if e["stream_id"] in CALLS])
    assert set(got) == set(expected), "every window of both calls, nothing else"
    for eid, events in got.items():
        for event in events:
            assert comparable(event) == comparable(expected[eid])
    assert {s["stream_id"] for s in summaries} == set(CALLS)


def _still_valid(value: bytes, binding: ModelBinding) -> bool:
    """A mutation that is still a valid enrollment is not poison."""
    _, applied = apply_record(SpeakerRegistry.empty(binding), b"x", value)
    return applied.outcome == "enrolled"
