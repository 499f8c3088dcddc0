"""speaker-embed/1, the speaker model tympan trains itself (pinnable since
speaker-embed/2 became the default): contract, parity, and open-set accuracy on voices
it never saw (rendered fresh, with settings its training data never used)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import speaker
from models.corpus import identities
from stream.inference.golden import read_golden
from stream.inference.manifest import load_manifest
from stream.inference.repository import default_repo, resolve_model_dir
from stream.roles import Role
from stream.speakers.embedder import SpeakerEmbedder

MODEL_DIR = resolve_model_dir("speaker-embed/1", repo=default_repo(), role=Role.SPEAKER)


def test_shipped_model_matches_the_recipe() -> None:
    manifest = load_manifest(MODEL_DIR, expected_spec=speaker.SPEAKER_SPEC)
    assert manifest.name == "speaker-embed"
    assert manifest.embedding_dim == 128
    assert (MODEL_DIR / "MODEL_CARD.md").is_file()
    # Trained before its voices moved into models/corpus/; retraining records data_hash().
    assert manifest.training["data_hash"] == speaker.SHIPPED_DATA_HASH
    assert speaker.data_hash() != speaker.SHIPPED_DATA_HASH


def test_golden_windows_reproduce_and_embeddings_are_unit() -> None:
    embedder = SpeakerEmbedder(MODEL_DIR)
    golden = read_golden(MODEL_DIR / "golden.npz")
    got = embedder.embed_windows(golden.x)
    np.testing.assert_allclose(got, golden.embedding, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_heldout_voices_are_disjoint_from_training() -> None:
    training, heldout = identities.training_voices(), identities.heldout_voices()
    train = {v.variant for v in training if v.engine == "espeak"}
    held = {v.variant for v in heldout if v.engine == "espeak"}
    assert train and held and not train & held
    settings = {(v.name, v.variant, v.pitch, v.pitch_cents) for v in training}
    assert not settings & {(v.name, v.variant, v.pitch, v.pitch_cents) for v in heldout}
    names = [v.identity for v in training + heldout]
    assert len(set(names)) == len(names)


def test_the_telephony_channel_is_the_corpus_g711_channel() -> None:
    """One telephone channel: the speaker passages' is models.corpus.channel.telephone."""
    from models.corpus.channel import telephone

    y = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    got = identities.apply_channel(y, "telephony", np.random.default_rng(5))
    gain = 10 ** (np.random.default_rng(5).uniform(-12, 0) / 20)
    expected = telephone(y / np.max(np.abs(y)) * 0.7 * gain)
    np.testing.assert_allclose(got, np.clip(expected, -1, 1), atol=1e-6)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """Fresh clips of the unseen voices (texts, impostor choice and channels differ
    from the model card's run)."""
    root = tmp_path_factory.mktemp("heldout")
    return root, identities.render_heldout(root, seed=4242, test_clips=3)


@pytest.mark.slow
def test_open_set_identification_on_unseen_voices(
    heldout: tuple[Path, dict[str, list[str]]], artifacts_dir: Path
) -> None:
    """Done criterion: enroll ≤ 20 s per unseen voice; other clips ≥ 0.9 identified,
    never-enrolled voices ≥ 0.8 ``unknown``."""
    from stream.speakers.evaluation import evaluate_dir, plot_det

    root, split = heldout
    assert len(split["impostors"]) == 5 and len(split["enrolled"]) == 12
    reports = evaluate_dir(SpeakerEmbedder(MODEL_DIR), root)
    plot_det(reports, artifacts_dir / "speaker-heldout-det.png")
    (artifacts_dir / "speaker-heldout.json").write_text(
        json.dumps([r.to_dict() for r in reports], indent=2)
    )
    centroid = next(r for r in reports if r.method == "centroid")
    assert centroid.accuracy >= 0.9, centroid.to_dict()
    assert centroid.unknown_rejection >= 0.8, centroid.to_dict()


@pytest.mark.slow
def test_tracker_follows_a_change_of_unseen_speaker(
    heldout: tuple[Path, dict[str, list[str]]],
) -> None:
    """The streaming path: 1 s windows → speech gate → span average → decisions.

    Each "call" is two clips of one voice followed by two of the next; the tracker
    must emit exactly [first, second] (``unknown`` for never-enrolled voices; one
    decision when both are ``unknown``).
    """
    from stream.audio.files import audio_files, load_audio
    from stream.speakers.embedder import clip_windows
    from stream.speakers.evaluation import enroll_dir
    from stream.speakers.tracker import SpeakerTracker

    root, _ = heldout
    embedder = SpeakerEmbedder(MODEL_DIR)
    registry = enroll_dir(embedder, root / "enroll")
    scorer = registry.scorer()
    voices = sorted(p.name for p in (root / "test").iterdir())

    def audio(voice: str) -> np.ndarray:
        files = audio_files(root / "test" / voice)[:2]
        return np.concatenate([load_audio(f, sr=embedder.spec.sr)[0] for f in files])

    right = 0
    for first, second in zip(voices, voices[1:] + voices[:1], strict=True):
        cut = clip_windows(np.concatenate([audio(first), audio(second)]), embedder.spec)
        emb = embedder.embed_windows(cut.features)
        tracker = SpeakerTracker(f"{first}->{second}")
        got = [
            d.speaker
            for (start, end), e, speech in zip(cut.spans, emb, cut.speech, strict=True)
            if (d := tracker.add(e, start, end, speech=bool(speech), scorer=scorer))
        ]
        expected = [v if v in registry else "unknown" for v in (first, second)]
        expected = expected[:1] if expected[0] == expected[1] else expected
        right += got == expected
    assert right / len(voices) >= 0.8, f"{right}/{len(voices)} calls tracked exactly"


@pytest.mark.slow
@pytest.mark.tf
def test_training_recipe_runs_end_to_end(tmp_path: Path) -> None:
    """A tiny run of the real recipe: render, train one epoch, export with parity."""
    cfg = speaker.SpeakerNetConfig(epochs=1, passages=1, filters=(4, 8, 8), embedding_dim=16)
    model_dir = speaker.train(tmp_path, cfg=cfg, version="0", max_voices=3)
    assert model_dir == tmp_path / "speaker-embed" / "0"
    manifest = load_manifest(model_dir, expected_spec=speaker.SPEAKER_SPEC)
    assert manifest.embedding_dim == 16 and len(manifest.labels) == 3
    assert manifest.metrics["parity_max_abs_diff"] <= 1e-4
    assert manifest.training["voices"] == 3 and manifest.macs_per_window
    report = json.loads((model_dir / "report.json").read_text())
    assert report["training"]["data_hash"] == speaker.data_hash()
