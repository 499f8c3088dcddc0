"""speaker-embed/2 in the worker's pipeline: its power-mel frontend runs as the aux
feature bank beside the label model's, and the windows it embeds live are the ones
``tympan speakers`` embeds from the whole clip."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.corpus import speech  # renders with espeak-ng
from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.inference.repository import resolve_model_dir
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record, SpeakerStage, WindowJob
from stream.produce import frames_from_array
from stream.roles import Role
from stream.speakers.embedder import SpeakerEmbedder, clip_windows
from stream.speakers.evaluation import binding
from stream.speakers.registry import SpeakerRegistry
from stream.speakers.vad import shared_model
from stream.wire import encode_frame
from tests.support.replay import replay

SR = 16000
VOICES = {
    "anna": speech.Voice("espeak", "en-us", "f2", pitch=70, speed_wpm=160),
    "bruno": speech.Voice("espeak", "en-gb", "m3", pitch=35, speed_wpm=175),
}


def _say(name: str, seed: int, seconds: float) -> np.ndarray:
    y, _ = speech.utterance(VOICES[name], np.random.default_rng(seed), min_s=seconds)
    return np.asarray(y[: round(seconds * SR)], dtype=np.float32)


def test_streamed_windows_feed_the_default_speaker_model_unchanged() -> None:
    embedder = SpeakerEmbedder(resolve_model_dir(None, role=Role.SPEAKER))
    assert embedder.model_id == ("speaker-embed", "2")
    scene = OnnxModel.load(resolve_model_dir(None))
    registry = SpeakerRegistry.empty(binding(embedder))
    for seed, name in enumerate(VOICES):
        clip = _say(name, 100 + seed, 12.0)
        registry = registry.with_speaker(name, embedder.embed_clip(clip), model=registry.model)
    scorer = registry.scorer()
    pipeline = Pipeline(
        scene.spec,
        ModelRef(scene.manifest.name, scene.manifest.version),
        scene.labels,
        FeatureBank(scene.spec),
        PipelinePolicy(),
        aux_frontend=FeatureBank(embedder.spec),
        speakers=SpeakerStage(ModelRef(*embedder.model_id), lambda: scorer, vad=shared_model()),
    )
    seen: dict[int, np.ndarray] = {}

    def embed(jobs: Sequence[WindowJob]) -> np.ndarray:
        assert all(j.aux_features is not None for j in jobs)
        for j in jobs:
            seen[j.window.index] = np.asarray(j.aux_features)
        x = np.stack([np.asarray(j.aux_features) for j in jobs])[..., np.newaxis]
        return embedder.embed_windows(x.astype(np.float32))

    # on 16-bit PCM samples, so the wire (pcm_s16le) carries exactly what offline reads
    call = np.clip(np.round(_say("anna", 7, 8.0) * 32768), -32768, 32767).astype(np.float32)
    call /= np.float32(32768)
    records = [
        Record(*encode_frame(frame)[:2], tuple(encode_frame(frame)[2]), "audio", 0, offset)
        for offset, frame in enumerate(frames_from_array(call, SR, stream_id="c", chunk_ms=20))
    ]
    run = replay(pipeline, records, lambda x: scene.run(x).probabilities, embed=embed)

    offline = clip_windows(call, embedder.spec).features[..., 0]
    assert seen, "no window reached the speaker model"
    for index, feats in seen.items():
        np.testing.assert_allclose(feats, offline[index], rtol=1e-5, atol=1e-12)
    events = [e.to_dict() for e in run.speakers]
    assert events and {(e["model"]["name"], e["model"]["version"]) for e in events} == {
        ("speaker-embed", "2")
    }
