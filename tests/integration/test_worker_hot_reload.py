"""Hot reload on the real broker with live streams (``docs/hot-reload.md``).

One worker starts on tiny model v1; while two calls stream, ``tympan models publish``
announces v2 (same FeatureSpec and labels, a threshold no window reaches, so its
labels differ detectably). Then a tampered v3 (drifted golden outputs) is refused by
the CLI and, written to the control topic anyway, by the worker, which reports it
and keeps serving v2; so is a v4 whose model.onnx changed after it was announced.
Every window gets exactly one event, each event equals what the model it names
computes, and the early windows name v1, the late ones v2. A worker started
afterwards serves the announced model, whatever ``--model`` says.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from kafka_helpers import consume_all
from worker_harness import (
    LABELS,
    SPEC,
    TYMPAN,
    WorkerFarm,
    by_id,
    comparable,
    expected_events,
    interleave,
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
from tests.support.onnx_models import make_tiny_model_dir, perturb_golden

CALLS = ("call-a", "call-b")
SECONDS = 9.0
ALWAYS_QUIET = 1e6  # v2's threshold: every window is "quiet" (v1: loud noise is "loud")


def _models(tmp: Path, topics: Topics, broker: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TYMPAN), "models", *args, "--broker", broker, "--topic-prefix", topics.prefix],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )


def _statuses(broker: str, topics: Topics) -> list[dict[str, Any]]:
    records = consume_all(broker, topics.control_status)
    return [json.loads(r.value) for r in records if r.key and r.key.startswith(b"status/")]


def _versions_seen(broker: str, topics: Topics) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for event in read_json(broker, topics.labels):
        out.setdefault(event["model"]["version"], set()).add(event["stream_id"])
    return out


def test_publish_swaps_models_mid_stream_and_refuses_a_tampered_one(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    v1 = make_tiny_model_dir(repo / "tiny" / "1", spec=SPEC, labels=LABELS)
    v2 = make_tiny_model_dir(
        repo / "tiny" / "2", spec=SPEC, labels=LABELS, version="2", threshold=ALWAYS_QUIET
    )
    v3 = make_tiny_model_dir(repo / "tiny" / "3", spec=SPEC, labels=LABELS, version="3")
    perturb_golden(v3, 0.5)
    calls = [stream_frames(sid, seconds=SECONDS, loud=True, seed=i) for i, sid in enumerate(CALLS)]
    frames = interleave(calls)
    third = len(frames) // 3
    farm = WorkerFarm(broker, topics, v1, tmp_path)
    common = ("--model-repo", str(repo), "--idle-timeout-s", "300", "--max-wait-ms", "20")
    try:
        farm.spawn(*common)
        produce(broker, topics, frames[:third])
        wait_for(
            lambda: _versions_seen(broker, topics).get("1") == set(CALLS),
            timeout_s=120,
            what="v1 label events for both calls",
            farm=farm,
        )

        published = _models(tmp_path, topics, broker, "publish", str(v2), "--model-repo", str(repo))
        assert published.returncode == 0, published.stderr
        active = wait_for(
            lambda: [s for s in _statuses(broker, topics) if s["state"] == "active"],
            timeout_s=60,
            what="the worker's report that v2 is active",
            farm=farm,
        )
        assert active[-1]["version"] == "2" and active[-1]["role"] == "scene"

        produce(broker, topics, frames[third : 2 * third])
        wait_for(
            lambda: _versions_seen(broker, topics).get("2") == set(CALLS),
            timeout_s=60,
            what="v2 label events for both calls",
            farm=farm,
        )

        refused_cli = _models(tmp_path, topics, broker, "publish", str(v3))
        assert refused_cli.returncode == 2 and "parity gate" in refused_cli.stderr
        tampered = announce(v3, role="scene", repo=repo)  # a publisher that skips the checks
        client = KafkaClientConfig(bootstrap_servers=broker)
        asyncio.run(publish_records(client, topics.control, [(tampered.key, tampered.to_json())]))
        refused = wait_for(
            lambda: [s for s in _statuses(broker, topics) if s["state"] == "refused"],
            timeout_s=60,
            what="the worker's refusal of v3",
            farm=farm,
        )
        assert refused[-1]["version"] == "3" and "parity gate" in refused[-1]["reason"]

        v4 = make_tiny_model_dir(repo / "tiny" / "4", spec=SPEC, labels=LABELS, version="4")
        corrupt = announce(v4, role="scene", repo=repo)
        (v4 / "model.onnx").write_bytes((v2 / "model.onnx").read_bytes())  # != manifest
        asyncio.run(publish_records(client, topics.control, [(corrupt.key, corrupt.to_json())]))
        refused = wait_for(
            lambda: [s for s in _statuses(broker, topics) if s["version"] == "4"],
            timeout_s=60,
            what="the worker's refusal of v4",
            farm=farm,
        )
        assert refused[-1]["state"] == "refused" and "sha256" in refused[-1]["reason"]

        produce(broker, topics, frames[2 * third :])
        summaries = wait_for_count(
            broker,
            topics.summaries,
            len(CALLS),
            timeout_s=120,
            what="both calls' summaries",
            farm=farm,
        )
        labels = read_json(broker, topics.labels)
        log = farm.workers[0].log_text()
        assert "refused scene model tiny@3" in log and "refused scene model tiny@4" in log
        assert "Traceback" not in log
    finally:
        farm.stop_all()

    expected: dict[str, dict[str, Any]] = {}
    for model_dir in (v1, v2):
        expected.update(expected_events(model_dir, calls)[0])
    for sid in CALLS:
        mine = sorted((e for e in labels if e["stream_id"] == sid), key=lambda e: e["window_index"])
        windows = {s["stream_id"]: s["windows"] for s in summaries}[sid]
        ids_per_window: dict[int, set[str]] = {}
        for event in mine:
            ids_per_window.setdefault(event["window_index"], set()).add(event["event_id"])
        assert sorted(ids_per_window) == list(range(windows)), f"{sid}: a window was lost"
        assert all(len(ids) == 1 for ids in ids_per_window.values()), f"{sid}: scored twice"
        versions = [e["model"]["version"] for e in mine]
        switch = versions.index("2")
        assert switch > 0, f"{sid}: early windows carry v1"
        assert versions == ["1"] * switch + ["2"] * (len(versions) - switch), sid
    got = by_id(labels)
    assert set(got) <= set(expected)
    for eid, events in got.items():  # each event is wholly its model's: no half-loaded one
        for event in events:
            assert comparable(event) == comparable(expected[eid])

    shown = _models(tmp_path, topics, broker, "active", "--json")
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["active"]["scene"]["version"] == "4"  # announced, but refused by the worker:
    assert state["workers"][-1]["state"] == "refused"  # its status says so

    # a restart serves the last model the control topic announces -- v4 is refused at
    # start too (logged), so it falls back to the last good one (v2, which the worker
    # wrote under last-good/scene); publishing v2 again makes it the announced one
    assert (
        _models(tmp_path, topics, broker, "publish", str(v2), "--model-repo", str(repo)).returncode
        == 0
    )
    restarted = farm.spawn(*common)
    try:
        wait_for(
            lambda: "model tiny@2" in restarted.log_text(),
            timeout_s=60,
            what="a restarted worker serving the announced v2",
            farm=farm,
        )
    finally:
        farm.stop_all()
