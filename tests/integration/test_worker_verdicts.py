"""One verdict offline and streaming: a stream's summary equals ``tympan classify --json``.

Rendered music (our corpus tools: composed MIDI through fluidsynth) and synthetic scenes
are streamed with ``tympan produce --fast`` through a real ``tympan worker`` for each
shipped label model, the single-label scene model and the multi-label instruments
tagger. The windows the worker cuts are bit-identical to the ones ``classify`` cuts
from the file, and both fold them through ``stream.events.verdict``, so each summary's
verdict (task, windows, dominant label, tags with shares and segments, timeline) must
be exactly ``classify``'s. Every label and summary event also validates against its
schema in ``docs/schemas/`` (multi-label events carry ``tags``).

``TYMPAN_TEST_SCALE=ci`` (``make test``) streams 8 s files; ``full`` streams 30 s.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from worker_harness import TYMPAN, WorkerFarm, read_json, wait_for_count

from models.corpus import music, synth
from stream.inference.repository import resolve_model_dir
from stream.kafka.topics import Topics
from tests.schema_check import validate

SECONDS = {"ci": 8.0, "full": 30.0}[os.environ.get("TYMPAN_TEST_SCALE", "ci")]
SR = 16000
MODELS = ("scene", "instruments")
VERDICT_KEYS = ("task", "windows", "dominant_label", "tags", "timeline")


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 16 kHz 16-bit files: two ensembles, a solo, and tone → noise → organ."""
    out = tmp_path_factory.mktemp("tracks")
    rng = np.random.default_rng(16)
    for name, instruments in {
        "band": ("bass", "drums", "piano"),
        "strings": ("violin", "guitar"),
        "organ-solo": ("organ",),
    }.items():
        piece = music.compose(instruments, rng=rng, duration_s=SECONDS)
        sf.write(out / f"{name}.wav", music.render(piece, duration_s=SECONDS, sr=SR), SR)
    third = SECONDS / 3
    organ = music.render(music.compose(("organ",), rng=rng, duration_s=third), duration_s=third)
    scene = np.concatenate(
        [
            synth.tone(440.0, third, sr=SR, amplitude=0.3),
            0.05 * synth.white_noise(third, rng=rng, sr=SR),
            organ,
        ]
    )
    sf.write(out / "tone-noise-organ.wav", scene.astype(np.float32), SR, subtype="PCM_16")
    return out


def _classify(model_dir: Path, files: list[Path]) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [str(TYMPAN), "classify", "--model", str(model_dir), "--json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    records = [json.loads(line) for line in done.stdout.splitlines()]
    return {Path(r["path"]).stem: r for r in records}


@pytest.mark.parametrize("model_name", MODELS)
def test_each_summary_is_the_classify_verdict_of_its_file(
    model_name: str, tracks: Path, broker: str, topics: Topics, tmp_path: Path
) -> None:
    model_dir = resolve_model_dir(model_name)  # its latest version: what a worker serves
    files = sorted(tracks.glob("*.wav"))
    farm = WorkerFarm(broker, topics, model_dir, tmp_path)
    try:
        farm.spawn()
        subprocess.run(
            [str(TYMPAN), "produce", "--fast", "--no-progress", str(tracks), "--broker", broker,
             "--topic-prefix", topics.prefix],
            check=True, timeout=300, capture_output=True,
        )  # fmt: skip
        summaries = wait_for_count(
            broker, topics.summaries, len(files), timeout_s=240, what="summaries", farm=farm
        )
    finally:
        farm.stop_all()
    offline = _classify(model_dir, files)
    by_stream = {s["stream_id"]: s for s in summaries}
    assert set(by_stream) == set(offline)
    for stem, record in offline.items():
        summary = by_stream[stem]
        validate(summary, "summary")
        assert {k: summary[k] for k in VERDICT_KEYS} == record["verdict"], stem
        assert record["labels"] == (
            [t["tag"] for t in summary["tags"]]
            if model_name == "instruments"
            else [summary["dominant_label"]]
        )
    labels = read_json(broker, topics.labels)
    assert len(labels) == sum(r["n_windows"] for r in offline.values())
    for event in labels:
        validate(event, "label")
        assert ("tags" in event) == (model_name == "instruments")
    if model_name == "instruments":
        assert any(s["tags"] for s in summaries), "no track got a tag: a vacuous comparison"
        assert {t["tag"] for t in by_stream["organ-solo"]["tags"]} >= {"organ"}
