"""The worker's speaker tracking asks the voice activity model which windows are speech.

With ``SpeakerStage.vad`` the conditioner runs Silero VAD per stream on the samples it
hands the feature frontend (every stream of a drain in one batched call) and marks each
window job with ``speech``; ``Pipeline.speech_mask`` follows it even where the label
model says otherwise (a tiny label model here calls every loud window ``speech``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record, SpeakerStage, WindowJob
from stream.produce import frames_from_array
from stream.speakers.scoring import SpeakerScorer
from stream.speakers.vad import shared_model
from stream.wire import encode_frame
from tests.support.onnx_models import make_tiny_model_dir
from tests.unit.stream.speakers.test_speaker_vad import espeak, music

SPEC = FeatureSpec()
SR = SPEC.sr


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["silence", "speech"]))


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return espeak(
        "Good morning, this is the front desk calling about your booking for Friday; "
        "could you confirm the number of guests and the time you expect to arrive?"
    )


def _records(sid: str, y: np.ndarray, partition: int) -> list[Record]:
    out = []
    for offset, frame in enumerate(frames_from_array(y, SR, stream_id=sid, chunk_ms=100)):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), "audio", partition, offset))
    return out


def _pipeline(model: OnnxModel, *, vad: bool) -> Pipeline:
    scorer = SpeakerScorer({"x": np.eye(1, 8, dtype=np.float32)}, threshold=0.8)
    return Pipeline(
        SPEC,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(SPEC),
        PipelinePolicy(),
        speakers=SpeakerStage(
            ModelRef("embed", "1"), lambda: scorer, vad=shared_model() if vad else None
        ),
    )


def _jobs(pipeline: Pipeline, streams: dict[str, np.ndarray]) -> list[WindowJob]:
    """Interleave the streams' 100 ms records as one fetched batch after another."""
    per = [_records(sid, y, p) for p, (sid, y) in enumerate(streams.items())]
    jobs: list[WindowJob] = []
    for k in range(max(len(r) for r in per)):
        jobs += pipeline.accept_many([r[k] for r in per if k < len(r)]).jobs
    jobs += pipeline.close_all().jobs
    return jobs


def _speech_by_stream(jobs: Sequence[WindowJob]) -> dict[str, list[bool | None]]:
    out: dict[str, list[bool | None]] = {}
    for job in jobs:
        out.setdefault(job.window.stream_id, []).append(job.speech)
    return out


def test_tones_noise_and_music_are_never_speech_a_voice_is(
    model: OnnxModel, voice: np.ndarray
) -> None:
    rng = np.random.default_rng(0)
    n = voice.size
    t = np.arange(n) / SR
    streams = {
        "voice": voice,
        "tone": (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "noise": (0.1 * rng.normal(size=n)).astype(np.float32),
        "music": music(n / SR, rng)[:n],
    }
    pipeline = _pipeline(model, vad=True)
    jobs = _jobs(pipeline, streams)
    speech = _speech_by_stream(jobs)
    for sid in ("tone", "noise", "music"):
        assert not any(speech[sid]), (sid, speech[sid])
    measured = [s for s in speech["voice"] if s is not None]
    assert len(measured) >= len(speech["voice"]) - 1
    assert np.mean(measured) >= 0.6, speech["voice"]
    probabilities = np.tile(np.array([[0.0, 1.0]], np.float32), (len(jobs), 1))  # all "speech"
    mask = pipeline.speech_mask(probabilities, jobs)
    assert mask.tolist() == [bool(j.speech) if j.speech is not None else True for j in jobs]


def test_each_stream_is_judged_as_if_alone(model: OnnxModel, voice: np.ndarray) -> None:
    """Streams batched together get the windows' speech they get one at a time."""
    noise = (0.05 * np.random.default_rng(1).normal(size=voice.size)).astype(np.float32)
    together = _speech_by_stream(_jobs(_pipeline(model, vad=True), {"a": voice, "b": noise}))
    alone = _speech_by_stream(_jobs(_pipeline(model, vad=True), {"a": voice}))
    assert together["a"] == alone["a"]


def test_without_a_vad_the_label_model_decides(model: OnnxModel, voice: np.ndarray) -> None:
    pipeline = _pipeline(model, vad=False)
    jobs = _jobs(pipeline, {"a": voice})
    assert all(job.speech is None for job in jobs)
    probabilities = np.tile(np.array([[1.0, 0.0]], np.float32), (len(jobs), 1))
    assert not pipeline.speech_mask(probabilities, jobs).any()


def test_a_long_backlog_in_one_batch_is_judged_like_a_live_stream(
    model: OnnxModel, voice: np.ndarray
) -> None:
    """A worker catching up drains many seconds of a stream at once: every window is
    still measured, with the verdicts the stream gets 100 ms at a time."""
    long_voice = np.concatenate([voice, voice, voice])
    live = _speech_by_stream(_jobs(_pipeline(model, vad=True), {"a": long_voice}))
    pipeline = _pipeline(model, vad=True)
    backlog = pipeline.accept_many(_records("a", long_voice, 0)).jobs
    backlog += pipeline.close_all().jobs
    assert _speech_by_stream(backlog)["a"] == live["a"]
