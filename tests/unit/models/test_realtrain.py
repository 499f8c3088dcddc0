"""The real training recordings (``models.realtrain``) stay apart from the real set.

The packages are fetched by ``python -m models.realtrain build``; these tests check
the pinned sources against the evaluation manifest and the split loader on files
made here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from models.realset.sources import RealSetError, load_manifest
from models.realtrain.build import ClipSettings, manifest_path, scene_split
from models.realtrain.sources import KTUBERLING, SOURCES, check_disjoint


def test_the_pinned_training_sources_share_nothing_with_the_evaluation_set() -> None:
    check_disjoint(SOURCES, load_manifest())
    evaluation = {name for name, s in load_manifest().sources.items() if s.role == "evaluation"}
    assert not {s.package for s in SOURCES} & evaluation
    for source in SOURCES:
        assert source.version and source.licence and source.label in {"speech", "music"}


def test_a_package_of_the_evaluation_set_is_refused() -> None:
    drascula = dataclasses.replace(SOURCES[1], package="drascula-music")
    with pytest.raises(RealSetError, match="'drascula-music' is part of the real evaluation"):
        check_disjoint((drascula,), load_manifest())


def test_a_ktuberling_voice_the_evaluation_uses_is_refused() -> None:
    speech = next(s for s in SOURCES if s.package == "ktuberling-data")
    with_french = dataclasses.replace(speech, groups=(*speech.groups, ("fr", f"{KTUBERLING}/fr/*")))
    with pytest.raises(RealSetError, match=r"voices \['fr'\] are not reserved"):
        check_disjoint((with_french,), load_manifest())


def test_another_package_s_voice_in_an_evaluated_language_is_refused() -> None:
    tuxpaint = next(s for s in SOURCES if s.package == "tuxpaint-stamps-default")
    english = dataclasses.replace(tuxpaint, groups=(("en", "usr/share/x/*_desc_en.ogg"),))
    with pytest.raises(RealSetError, match=r"voices \['en'\] speak languages the real set"):
        check_disjoint((english,), load_manifest())


def test_scene_split_reads_the_clips_of_the_manifest_by_split(tmp_path: Path) -> None:
    clips = [
        {"id": "a", "label": "speech", "group": "v1", "split": "train", "parts": []},
        {"id": "b", "label": "music", "group": "t1", "split": "val", "parts": []},
    ]
    (tmp_path / "manifest.json").write_text(json.dumps({"clips": clips}))
    split = scene_split(tmp_path)
    assert [(c.path, c.labels) for c in split.train] == [
        (tmp_path / "scene" / "speech" / "a.wav", ("speech",))
    ]
    assert [c.labels for c in split.val] == [("music",)] and split.test == ()


def test_scene_split_without_a_build_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(RealSetError, match=r"python -m models\.realtrain build"):
        scene_split(tmp_path)


def test_clips_cut_another_way_get_their_own_folder_and_manifest(tmp_path: Path) -> None:
    """scene/3's clips (the default settings) keep their names, so a later recipe's
    clips never overwrite the ones an older recipe rebuilds from."""
    default, floored = ClipSettings(), ClipSettings((0.05, 1.0), (15.0, 40.0))
    assert default.tag == "" and manifest_path(tmp_path) == tmp_path / "manifest.json"
    assert floored.tag == "-pauses0.05-1-floor15-40"
    assert manifest_path(tmp_path, floored).name == "manifest-pauses0.05-1-floor15-40.json"
    clips = [{"id": "a", "label": "speech", "group": "v1", "split": "train", "parts": []}]
    manifest_path(tmp_path, floored).write_text(json.dumps({"clips": clips}))
    split = scene_split(tmp_path, floored)
    assert split.train[0].path == tmp_path / "scene-pauses0.05-1-floor15-40" / "speech" / "a.wav"
    with pytest.raises(RealSetError, match=r"manifest\.json is missing"):
        scene_split(tmp_path)
