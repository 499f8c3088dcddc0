"""Speaker tracking in the synchronous domain core (``stream.pipeline.replay``).

A tiny real label model says ``speech`` for loud windows and ``silence`` for quiet
ones; the "speaker model" is a small fake embedding that maps a window's loudest mel
region to a direction, so a 300 Hz tone and a 2 kHz tone are two "voices". Events
must come at decision points only, name the right speaker, and follow the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from stream.events import ModelRef, SpeakerEvent
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.pipeline import (
    Pipeline,
    PipelinePolicy,
    Record,
    SpeakerStage,
    WindowJob,
    embed_speech,
)
from stream.produce import frames_from_array
from stream.speakers.scoring import SpeakerScorer, Verdict
from stream.wire import encode_frame
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import SyncRun
from tests.support.replay import replay as replay_records

SPEC = FeatureSpec()  # 1 s windows, 0.5 s hop: the tracker's defaults assume these
SR = SPEC.sr
SPK = ModelRef("fake-embed", "1")
GROUPS = 8
VOICE_HZ = {"alice": 300.0, "bob": 2000.0, "stranger": 5000.0}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["silence", "speech"]))


def _embed(jobs: Sequence[WindowJob]) -> np.ndarray:
    """One-hot-ish direction of the region of 8 holding the loudest mel band: a
    stand-in voice print (each test voice is a tone in its own region)."""
    out = np.full((len(jobs), GROUPS), 0.01, dtype=np.float32)
    for row, job in zip(out, jobs, strict=True):
        bands = job.window.features.mean(axis=1)
        row[int(np.argmax(bands)) * GROUPS // len(bands)] = 1.0
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _voice(name: str, seconds: float) -> np.ndarray:
    """A loud tone over noise: loud enough for the tiny model's ``speech``."""
    t = np.arange(round(seconds * SR)) / SR
    noise = np.random.default_rng(len(name)).standard_normal(t.size) * 0.05
    return (0.3 * np.sin(2 * np.pi * VOICE_HZ[name] * t) + noise).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SR), dtype=np.float32)


def _records(sid: str, *parts: np.ndarray) -> list[Record]:
    y = np.concatenate(parts)
    out = []
    for offset, frame in enumerate(frames_from_array(y, SR, stream_id=sid, chunk_ms=100)):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), "audio", 0, offset))
    return out


def _enrolled(*names: str) -> SpeakerScorer:
    voices = {n: _embed_voice(n) for n in names}
    return SpeakerScorer(voices, threshold=0.8)


def _embed_voice(name: str) -> np.ndarray:
    bank = FeatureBank(SPEC)
    windows = [*bank.push({"e": _voice(name, 3.0)}).windows, *bank.flush("e")]
    jobs = [WindowJob(w, 0, None, False, 0.0) for w in windows]  # type: ignore[arg-type]
    return _embed(jobs)


class Registry:
    """The current scorer, swappable mid-stream like a ``RegistryFollower``'s."""

    def __init__(self, scorer: SpeakerScorer) -> None:
        self.current = scorer
        self.calls = 0

    def scorer(self) -> SpeakerScorer:
        self.calls += 1
        return self.current


def _pipeline(model: OnnxModel, registry: Registry) -> Pipeline:
    return Pipeline(
        SPEC,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(SPEC),
        PipelinePolicy(),
        speakers=SpeakerStage(SPK, registry.scorer),
    )


def _replay(
    model: OnnxModel, pipeline: Pipeline, records: Iterable[Record], *, close_all: bool = True
) -> SyncRun:
    return replay_records(
        pipeline, records, lambda x: model.run(x).probabilities, embed=_embed, close_all=close_all
    )


def _names(events: Iterable[SpeakerEvent]) -> list[str]:
    return [e.speaker for e in events]


def test_events_come_at_decisions_only_and_skip_silence(model: OnnxModel) -> None:
    registry = Registry(_enrolled("alice", "bob"))
    records = _records("call", _voice("alice", 3.0), _silence(3.0), _voice("alice", 3.0))
    run = _replay(model, _pipeline(model, registry), records)
    speech = [e for e in run.labels if e.label == "speech"]
    assert len(run.labels) > 10 and 0 < len(speech) < len(run.labels)
    (event,) = run.speakers  # one decision for the whole call, not one per window
    assert event.speaker == "alice" and event.previous is None
    assert event.score > 0.8 and event.margin > 0.03 and event.runner_up == "bob"
    assert event.model == SPK and 2 <= event.windows <= 6
    assert event.span.start_sample < event.span.end_sample <= event.span.index * 8000 + SR
    (summary,) = run.summaries
    assert summary.speaker == "alice" and summary.speaker_windows == len(speech)


def test_a_change_of_speaker_emits_a_new_event(model: OnnxModel) -> None:
    registry = Registry(_enrolled("alice", "bob"))
    records = _records("call", _voice("alice", 4.0), _voice("bob", 5.0))
    run = _replay(model, _pipeline(model, registry), records)
    assert _names(run.speakers) == ["alice", "bob"]
    first, second = run.speakers
    assert second.previous == "alice" and second.runner_up == "alice"
    assert first.span.index < second.span.index
    assert second.span.start_sample >= 3 * SR  # rests on bob's windows
    assert len({e.event_id for e in run.speakers}) == 2


def test_an_empty_registry_makes_every_stream_unknown(model: OnnxModel) -> None:
    registry = Registry(SpeakerScorer({}, threshold=0.5))
    pipeline = _pipeline(model, registry)
    records = [*_records("a", _voice("alice", 3.0)), *_records("b", _voice("bob", 3.0))]
    run = _replay(model, pipeline, records)
    assert sorted((e.stream_id, e.speaker) for e in run.speakers) == [
        ("a", "unknown"),
        ("b", "unknown"),
    ]
    assert all(e.score == 0.0 and e.runner_up is None for e in run.speakers)
    assert {(s.stream_id, s.speaker, s.speaker_score) for s in run.summaries} == {
        ("a", "unknown", 0.0),
        ("b", "unknown", 0.0),
    }


def test_a_stranger_is_unknown_and_the_summary_says_so(model: OnnxModel) -> None:
    registry = Registry(_enrolled("alice", "bob"))
    run = _replay(model, _pipeline(model, registry), _records("x", _voice("stranger", 4.0)))
    assert _names(run.speakers) == ["unknown"]
    (summary,) = run.summaries
    assert summary.speaker == "unknown" and summary.speaker_score is not None
    assert summary.speaker_score < 0.8


def test_the_summary_carries_the_final_verdict_of_the_whole_stream(model: OnnxModel) -> None:
    registry = Registry(_enrolled("alice", "bob"))
    records = _records("call", _voice("alice", 7.0), _voice("bob", 3.0))
    run = _replay(model, _pipeline(model, registry), records)
    assert _names(run.speakers) == ["alice", "bob"]  # bob speaks last ...
    (summary,) = run.summaries
    assert summary.speaker == "alice"  # ... but alice dominates the call
    assert summary.speaker_runner_up == "bob" and summary.speaker_margin is not None
    speech = sum(e.label == "speech" for e in run.labels)
    assert summary.speaker_windows == speech
    data = summary.to_dict()
    assert data["speaker"] == "alice" and data["speaker_windows"] == speech


def test_a_stream_without_speech_is_unknown_with_no_windows(model: OnnxModel) -> None:
    registry = Registry(_enrolled("alice"))
    run = _replay(model, _pipeline(model, registry), _records("q", _silence(3.0)))
    assert run.speakers == []
    (summary,) = run.summaries
    assert (summary.speaker, summary.speaker_windows) == ("unknown", 0)


def test_a_replay_gives_identical_speaker_events(model: OnnxModel) -> None:
    records = _records("call", _voice("alice", 4.0), _voice("bob", 5.0))

    def once() -> list[dict[str, object]]:
        run = _replay(model, _pipeline(model, Registry(_enrolled("alice", "bob"))), records)
        return [{**e.to_dict(), "latency_ms": 0} for e in run.speakers]

    assert once() == once()


def test_a_registry_update_reaches_a_live_stream(model: OnnxModel) -> None:
    registry = Registry(SpeakerScorer({}, threshold=0.8))
    pipeline = _pipeline(model, registry)
    records = _records("live", _voice("alice", 8.0))
    half = len(records) // 2
    before = _replay(model, pipeline, records[:half], close_all=False)
    registry.current = _enrolled("alice", "bob")  # alice enrolls while the call goes on
    after = _replay(model, pipeline, records[half:])
    assert _names(before.speakers) == ["unknown"]
    assert _names(after.speakers) == ["alice"] and after.speakers[0].previous == "unknown"
    (summary,) = after.summaries
    assert summary.speaker == "alice"


class CountingScorer(SpeakerScorer):
    """A real scorer that counts its batched ``identify`` calls."""

    identify_calls = 0

    def identify(self, embeddings: npt.ArrayLike) -> list[Verdict]:
        self.identify_calls += 1
        return super().identify(embeddings)


def test_streams_of_one_batch_are_scored_together(model: OnnxModel) -> None:
    scorer = CountingScorer({n: _embed_voice(n) for n in ("alice", "bob")}, threshold=0.8)
    registry = Registry(scorer)
    pipeline = _pipeline(model, registry)
    a = _records("a", _voice("alice", 4.0))
    b = _records("b", _voice("bob", 4.0))
    step = pipeline.accept_many([*a, *b])  # one inference batch holding both streams
    step.extend(pipeline.close_all())
    x = np.stack([j.window.features for j in step.jobs])[..., None]
    probabilities = model.run(x).probabilities
    embeddings = embed_speech(step.jobs, pipeline.speech_mask(probabilities), _embed)
    calls = registry.calls
    events = pipeline.complete_speakers(step.jobs, embeddings)
    assert registry.calls - calls == 1  # the registry is read once per batch
    # scored in rounds of one window per stream: as many calls as one stream has
    # windows in the batch, not one per window of every stream
    per_stream = max(sum(j.window.stream_id == s for j in step.jobs) for s in "ab")
    assert len(step.jobs) == 2 * per_stream
    assert scorer.identify_calls <= per_stream
    assert sorted((e.stream_id, e.speaker) for e in events) == [("a", "alice"), ("b", "bob")]


def test_speaker_event_ids_change_with_the_registry_version(model: OnnxModel) -> None:
    records = _records("call", _voice("alice", 4.0))

    def ids(scorer: SpeakerScorer) -> list[str]:
        run = _replay(model, _pipeline(model, Registry(scorer)), records)
        return [e.event_id for e in run.speakers]

    first, same = ids(_enrolled("alice")), ids(_enrolled("alice"))
    other = ids(_enrolled("alice", "bob"))  # bob enrolled: another registry version
    assert first == same, "the same registry gives the same ids"
    assert len(first) == len(other) and not set(first) & set(other)
