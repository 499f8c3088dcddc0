"""A stream id used twice (issue #27): two ``tympan produce`` runs of one file are two
streams with two summaries; a header-less stream id sent again after its end is
dead-lettered ``stream_reused``, never dropped in silence."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import soundfile as sf
from worker_harness import (
    TYMPAN,
    WorkerFarm,
    noise,
    produce,
    read_json,
    stream_frames,
    tiny_model,
    wait_for,
    wait_for_count,
)

from stream.kafka.topics import Topics

pytestmark = pytest.mark.kafka


def _produce_file(broker: str, topics: Topics, path: Path) -> None:
    subprocess.run(
        [str(TYMPAN), "produce", "--fast", "--no-progress", str(path), "--broker", broker,
         "--topic-prefix", topics.prefix],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip


def test_a_stream_id_used_twice_gives_two_streams_or_a_reason(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    path = tmp_path / "upload.wav"
    sf.write(path, noise(1.5, 16000, 0.2, seed=7), 16000, subtype="PCM_16")
    plain = stream_frames("plain", seconds=1.0, loud=True)  # no instance header
    farm = WorkerFarm(broker, topics, tiny_model(tmp_path / "model"), tmp_path)
    try:
        farm.spawn()
        _produce_file(broker, topics, path)
        produce(broker, topics, plain)
        wait_for_count(broker, topics.summaries, 2, timeout_s=120, what="first runs", farm=farm)
        _produce_file(broker, topics, path)  # the same command again
        produce(broker, topics, plain)  # the same header-less stream again
        summaries = wait_for_count(
            broker, topics.summaries, 3, timeout_s=120, what="second run's summary", farm=farm
        )
        rejected = wait_for(
            lambda: (
                [r for r in read_json(broker, topics.rejected) if r["stream_id"] == "plain"]
                if len(read_json(broker, topics.rejected)) >= len(plain)
                else None
            ),
            timeout_s=120,
            what="the reused stream's dead letters",
            farm=farm,
        )
    finally:
        farm.stop_all()
    uploads = [s for s in summaries if s["stream_id"] == "upload"]
    assert len(uploads) == 2 and all(s["closed_by"] == "eos" for s in uploads)
    assert len({s["instance"] for s in uploads}) == 2
    assert len({s["event_id"] for s in uploads}) == 2
    assert uploads[0]["dominant_label"] == uploads[1]["dominant_label"]
    assert next(s for s in summaries if s["stream_id"] == "plain").get("instance") is None
    assert len([s for s in summaries if s["stream_id"] == "plain"]) == 1
    assert len(rejected) == len(plain)
    assert {r["reason"] for r in rejected} == {"stream_reused"}
    labels = [e for e in read_json(broker, topics.labels) if e["stream_id"] == "upload"]
    assert len({e["event_id"] for e in labels}) == len(labels) > 0
    assert {e["instance"] for e in labels} == {s["instance"] for s in uploads}
