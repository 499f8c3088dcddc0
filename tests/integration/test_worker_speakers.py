"""Speaker events end to end: the worker with the shipped scene and speaker models.

Two espeak-ng voices are enrolled into a registry directory with the shipped
``speaker-embed`` model; the worker runs with ``--speaker-model speaker-embed
--speaker-registry DIR``. A call of voice A then voice B must give speaker events
naming A then B (at decisions, not per window), a third voice must be ``unknown``,
and the summaries must carry the tracker's final verdicts -- the same ones the
synchronous pipeline gives for the same frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_harness import (
    REPO,
    WorkerFarm,
    interleave,
    module_topics,
    produce,
    read_json,
    wait_for,
    wait_for_count,
    wait_for_ids,
)

from models.corpus import speech  # renders with espeak-ng
from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.inference.repository import resolve_model_dir
from stream.inference.session import OnnxModel
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record, SpeakerStage, WindowJob
from stream.produce import frames_from_array
from stream.speakers.embedder import SpeakerEmbedder
from stream.speakers.registry import ModelBinding, SpeakerRegistry, save_registry
from stream.wire import AudioFrame, encode_frame
from tests.support.replay import replay

SCENE = resolve_model_dir(None)  # the label model a worker serves by default
SPEAKER = REPO / "models" / "zoo" / "speaker-embed" / "1"
SR = 16000
TURN_S = 8.0  # seconds each voice speaks
VOICES = {
    "anna": speech.Voice("espeak", "en-us", "f2", pitch=70, speed_wpm=160),
    "bruno": speech.Voice("espeak", "en-gb", "m3", pitch=35, speed_wpm=175),
    "stranger": speech.Voice("espeak", "en-gb-scotland", "klatt", pitch=50, speed_wpm=150),
}


@dataclass
class Run:
    expected_speakers: list[dict[str, Any]]
    expected_summaries: dict[str, dict[str, Any]]
    speakers: list[dict[str, Any]]
    summaries: dict[str, dict[str, Any]]


def _say(name: str, seed: int, seconds: float) -> np.ndarray:
    y, _ = speech.utterance(VOICES[name], np.random.default_rng(seed), min_s=seconds)
    return np.asarray(y[: round(seconds * SR)], dtype=np.float32)


def _enroll(embedder: SpeakerEmbedder, path: Path) -> None:
    name, version = embedder.model_id
    model = ModelBinding(name, version, embedder.manifest.embedding_dim or 0)
    registry = SpeakerRegistry.empty(model)
    for seed, speaker in enumerate(("anna", "bruno")):
        clip = _say(speaker, 100 + seed, 15.0)  # other sentences than the calls'
        registry = registry.with_speaker(speaker, embedder.embed_clip(clip), model=model)
    save_registry(registry, path)


def _frames(stream_id: str, y: np.ndarray) -> list[AudioFrame]:
    return list(frames_from_array(y, SR, stream_id=stream_id, chunk_ms=20))


def _expected(
    embedder: SpeakerEmbedder, registry: Path, streams: Sequence[Sequence[AudioFrame]]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """What the synchronous pipeline says about the same frames (the worker's stage:
    Silero VAD picks the speech windows)."""
    from stream.speakers.registry import load_registry
    from stream.speakers.vad import shared_model

    scene = OnnxModel.load(SCENE)
    scorer = load_registry(registry).scorer()
    name, version = embedder.model_id
    pipeline = Pipeline(
        scene.spec,
        ModelRef(scene.manifest.name, scene.manifest.version),
        scene.labels,
        FeatureBank(scene.spec),
        PipelinePolicy(),
        aux_frontend=FeatureBank(embedder.spec),
        speakers=SpeakerStage(ModelRef(name, version), lambda: scorer, vad=shared_model()),
    )

    def embed(jobs: Sequence[WindowJob]) -> np.ndarray:
        feats = [j.window.features if j.aux_features is None else j.aux_features for j in jobs]
        x = np.stack(feats)[..., np.newaxis].astype(np.float32)
        return embedder.embed_windows(x)

    records = []
    for offset, frame in enumerate(interleave(streams)):
        key, value, headers = encode_frame(frame)
        records.append(Record(key, value, tuple(headers), "audio", 0, offset))
    run = replay(pipeline, records, lambda x: scene.run(x).probabilities, embed=embed)
    return [e.to_dict() for e in run.speakers], {s.stream_id: s.to_dict() for s in run.summaries}


@pytest.fixture(scope="module")
def run(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("worker-speakers")
    registry = tmp / "registry"
    embedder = SpeakerEmbedder(SPEAKER)
    _enroll(embedder, registry)
    with module_topics(broker, "worker-speakers") as topics:
        farm = WorkerFarm(broker, topics, SCENE, tmp)
        try:
            farm.spawn("--speaker-model", "speaker-embed", "--speaker-registry", str(registry))
            call_ab = np.concatenate([_say("anna", 7, TURN_S), _say("bruno", 8, TURN_S)])
            streams = {
                "call-ab": _frames("call-ab", call_ab),
                "call-stranger": _frames("call-stranger", _say("stranger", 9, TURN_S)),
            }
            expected_speakers, expected_summaries = _expected(
                embedder, registry, list(streams.values())
            )
            produce(broker, topics, interleave(list(streams.values())))
            summaries = wait_for_count(
                broker,
                topics.summaries,
                len(streams),
                timeout_s=90,
                what=f"{len(streams)} summaries",
                farm=farm,
            )
            speakers = wait_for_ids(
                broker,
                topics.speakers,
                {e["event_id"] for e in expected_speakers},
                what="every expected speaker event",
                farm=farm,
            )
            yield Run(
                expected_speakers,
                expected_summaries,
                speakers,
                {s["stream_id"]: s for s in summaries},
            )
        finally:
            farm.stop_all()


def _mine(events: list[dict[str, Any]], stream_id: str) -> list[dict[str, Any]]:
    """One stream's speaker events in window order."""
    return sorted(
        (e for e in events if e["stream_id"] == stream_id), key=lambda e: e["window_index"]
    )


def _names(events: list[dict[str, Any]], stream_id: str) -> list[str]:
    return [e["speaker"] for e in _mine(events, stream_id)]


def test_a_call_of_voice_a_then_voice_b_names_a_then_b(run: Run) -> None:
    assert _names(run.speakers, "call-ab") == ["anna", "bruno"]
    anna, bruno = _mine(run.speakers, "call-ab")
    assert bruno["previous"] == "anna" and bruno["runner_up"] == "anna"
    assert bruno["start_s"] >= TURN_S - 3.0  # the decision rests on bruno's own windows
    assert anna["model"] == {"name": "speaker-embed", "version": "1"}


def test_an_enrolled_nobody_is_unknown(run: Run) -> None:
    assert _names(run.speakers, "call-stranger") == ["unknown"]
    assert run.summaries["call-stranger"]["speaker"] == "unknown"


def test_speaker_events_and_verdicts_equal_the_synchronous_pipeline(run: Run) -> None:
    def key(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["event_id"], e["stream_id"], e["window_index"], e["speaker"], e["previous"])

    assert sorted(set(map(key, run.speakers))) == sorted(map(key, run.expected_speakers))
    for sid, summary in run.summaries.items():
        want = run.expected_summaries[sid]
        assert summary["speaker"] == want["speaker"]
        assert summary["speaker_windows"] == want["speaker_windows"] > 0
        assert summary["speaker_score"] == pytest.approx(want["speaker_score"], abs=1e-3)
    assert run.summaries["call-ab"]["speaker"] in {"anna", "bruno"}


def test_an_enrollment_on_the_registry_topic_reaches_a_running_worker(
    broker: str, topics: Topics, kafka_client: KafkaClientConfig, tmp_path: Path
) -> None:
    """No ``--speaker-registry``: the worker follows the compacted registry topic, and
    an enrollment published while it runs applies to the next calls, no restart."""
    from stream.speakers.registry import load_registry
    from stream.speakers.topic import publish

    embedder = SpeakerEmbedder(SPEAKER)
    _enroll(embedder, tmp_path / "registry")
    farm = WorkerFarm(broker, topics, SCENE, tmp_path)
    anna = _say("anna", 11, 5.0)

    def call(stream_id: str) -> dict[str, Any]:
        produce(broker, topics, _frames(stream_id, anna))
        return wait_for(
            lambda: next(
                (s for s in read_json(broker, topics.summaries) if s["stream_id"] == stream_id),
                None,
            ),
            timeout_s=60,
            what=f"the summary of {stream_id}",
            farm=farm,
        )

    try:
        farm.spawn("--speaker-model", "speaker-embed")
        assert call("before")["speaker"] == "unknown"  # nobody enrolled yet
        registry = load_registry(tmp_path / "registry")
        asyncio.run(publish(kafka_client, registry, topic=topics.speaker_registry))
        # the follower applies the records in the background: a call that started
        # before it did may still be unknown, a later one must name anna
        verdicts = []
        for attempt in range(5):
            verdicts.append(call(f"after-{attempt}")["speaker"])
            if verdicts[-1] == "anna":
                break
        assert verdicts[-1] == "anna", verdicts
        assert "anna" in _names(read_json(broker, topics.speakers), f"after-{len(verdicts) - 1}")
    finally:
        farm.stop_all()
