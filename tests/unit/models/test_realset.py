"""The real-recording set's manifest and clip assembly (``models.realset``).

The packages themselves are fetched by ``make real-set``; these tests check the
checked-in manifest's promises (provenance on every part, evaluation and training
sources apart, labels the models know) and the assembly on small files made here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.realset.build import SR, assemble, write_clip
from models.realset.sources import (
    Item,
    Part,
    RealSetError,
    load_manifest,
    sha256_file,
)

SCENE_LABELS = {"speech", "music"}
INSTRUMENT_LABELS = {"bass", "drums", "flute", "guitar", "organ", "piano", "trumpet", "violin"}


def test_every_part_has_provenance_and_every_source_a_licence() -> None:
    manifest = load_manifest()
    assert manifest.items
    for item in manifest.items:
        assert item.parts, item.id
        for part in item.parts:
            assert len(part.sha256) == 64 and part.path.startswith("usr/"), part
    for source in manifest.sources.values():
        assert source.version and source.licence and source.role, source
    assert len({item.id for item in manifest.items}) == len(manifest.items)


def test_labels_are_the_models_and_voices_are_disjoint_between_enroll_and_test() -> None:
    manifest = load_manifest()
    for item in manifest.items:
        if item.task == "instrument":
            assert item.label in INSTRUMENT_LABELS, item.id
        else:
            assert item.label in SCENE_LABELS, item.id
    enroll = {p.path for i in manifest.items if i.task == "speaker-enroll" for p in i.parts}
    test = {p.path for i in manifest.items if i.task == "speaker-test" for p in i.parts}
    assert enroll and test and not enroll & test
    never = {i.speaker for i in manifest.items if i.task == "speaker-test"} - {
        i.speaker for i in manifest.items if i.task == "speaker-enroll"
    }
    assert len(never) >= 3


def test_sources_reserved_for_training_are_never_evaluated() -> None:
    manifest = load_manifest()
    used = {p.source for i in manifest.items for p in i.parts}
    reserved = {r["package"]: r for r in manifest.training}
    for package in used & set(reserved):
        languages = set(reserved[package].get("languages", []))
        assert languages, f"{package} is reserved whole for training"
        for item in manifest.items:
            for part in item.parts:
                if part.source == package:
                    assert part.path.split("/")[4] not in languages, part.path


def _tone_file(path: Path, seconds: float, sr: int) -> Path:
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), sr)
    return path


def _part(root: Path, name: str, seconds: float, speaker: str = "") -> Part:
    path = _tone_file(root / name, seconds, 22_050)
    return Part("pkg", name, sha256_file(path), speaker)


def test_a_conversation_is_assembled_with_its_turns(tmp_path: Path) -> None:
    parts = (
        _part(tmp_path, "a1.wav", 1.0, "a"),
        _part(tmp_path, "a2.wav", 1.0, "a"),
        _part(tmp_path, "b1.wav", 0.5, "b"),
    )
    item = Item("c", "conversation", "speech", "", "x", parts, gap_s=0.1, turn_gap_s=0.5)
    audio, turns = assemble(item, {"pkg": tmp_path})
    assert audio.size == pytest.approx((1.0 + 0.1 + 1.0 + 0.5 + 0.5) * SR, abs=2)
    np.testing.assert_allclose(turns, [[0.0, 2.1], [2.6, 3.1]], atol=1e-3)


def test_a_changed_file_is_refused_with_its_name(tmp_path: Path) -> None:
    part = _part(tmp_path, "x.wav", 0.5)
    _tone_file(tmp_path / "x.wav", 0.6, 22_050)
    item = Item("x", "scene", "speech", "", "", (part,))
    with pytest.raises(RealSetError, match=r"x\.wav: SHA-256"):
        assemble(item, {"pkg": tmp_path})


def test_music_is_excerpted_and_the_phone_copy_is_8k_mulaw(tmp_path: Path) -> None:
    part = _part(tmp_path, "m.wav", 30.0)
    item = Item("m", "scene", "music", "", "", (part,), start_s=10.0, duration_s=20.0)
    audio, _ = assemble(item, {"pkg": tmp_path})
    assert audio.size == 20 * SR
    write_clip(tmp_path / "out" / "m.wav", audio, phone=True)
    info = sf.info(tmp_path / "out" / "m.wav")
    assert (info.samplerate, info.subtype) == (8000, "ULAW")


def test_the_manifest_file_is_json_with_the_documented_keys() -> None:
    doc = json.loads(Path("models/realset/manifest.json").read_text())
    assert set(doc) >= {"sources", "items", "reserved_for_training"}


def test_instrument_figures_count_the_tags_over_the_models_thresholds(tmp_path: Path) -> None:
    """Top-1 and tags over threshold on each clip's mean window probabilities.

    The tiny multi-label model's tags switch on 10 dB apart (a quiet → c loud): a faint
    clip has only ``a`` over 0.3, a louder one ``a`` and ``b`` over theirs and ``c``
    (0.55) under its 0.7, so that clip's top is wrong, its own tag is not over and two
    wrong tags are.
    """
    from models.realset.evaluate import instrument_figures
    from stream.features.spec import FeatureSpec
    from stream.inference.session import OnnxModel
    from tests.support.onnx_models import make_tiny_model_dir

    model_dir = make_tiny_model_dir(
        tmp_path / "m",
        spec=FeatureSpec(),
        labels=["a", "b", "c"],
        task="multi",
        thresholds=(0.3, 0.5, 0.7),
    )
    rng = np.random.default_rng(0)
    folder = tmp_path / "instruments"
    folder.mkdir()
    for name, amplitude in (("faint", 0.001), ("louder", 0.01)):
        noise = amplitude * rng.standard_normal(2 * SR)
        sf.write(folder / f"{name}.wav", noise.astype(np.float32), SR)
    (folder / "labels.csv").write_text("path,tags\nfaint.wav,a\nlouder.wav,c\n")
    figures = instrument_figures(OnnxModel.load(model_dir), folder)
    assert figures["top1"] == 0.5 and figures["clips"] == 2
    assert figures["own_over"] == 1 and figures["others_over"] == 2
    assert figures["heard"] == {"faint.wav": "a → a (a)", "louder.wav": "c → a (a, b)"}
