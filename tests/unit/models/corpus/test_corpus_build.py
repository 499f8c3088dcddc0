"""The dataset builders write the documented layout, deterministically."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from pathlib import Path

import pytest
import soundfile as sf

from models.corpus import build, tools
from models.corpus.__main__ import main
from stream.errors import ToolError


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_scene_layout_and_determinism(tmp_path: Path) -> None:
    a = build.build_scene(tmp_path / "a", seed=3, per_class=2, jobs=2, progress=False)
    b = build.build_scene(tmp_path / "b", seed=3, per_class=2, jobs=1, progress=False)
    rows = list(csv.DictReader((a / "manifest.csv").open()))
    assert sorted({r["label"] for r in rows}) == sorted(build.SCENE_LABELS)
    assert len(rows) == 10
    for label in build.SCENE_LABELS:
        files = sorted((a / label).glob("*.wav"))
        assert len(files) == 2
        info = sf.info(files[0])
        assert info.samplerate == 16000 and info.channels == 1
        assert 2.0 <= info.duration <= 6.0
    # Half of every class went through the telephone.
    assert {r["channel"] for r in rows if r["path"].endswith("0001.wav")} <= {"mulaw8k", "alaw8k"}
    assert _digest(a) == _digest(b)


def test_instruments_labels_csv(tmp_path: Path) -> None:
    out = build.build_instruments(tmp_path, seed=1, clips=3, duration_s=1.0, progress=False)
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert len(rows) == 3
    for r in rows:
        tags = r["tags"].split(";")
        assert 1 <= len(tags) <= 3 and set(tags) <= set(build.music.INSTRUMENTS)
        assert sf.info(out / r["path"]).samplerate == 16000


def test_speakers_and_heldout_share_no_identity(tmp_path: Path) -> None:
    train = build.build_speakers(tmp_path / "t", identities=3, utterances=4, progress=False)
    held = build.build_speakers(
        tmp_path / "h", identities=3, utterances=1, heldout=True, progress=False
    )
    doc = json.loads((train / "speakers.json").read_text())
    ids = [i["identity"] for i in doc["identities"]]
    assert len(ids) == 3 and all((train / i).is_dir() for i in ids)
    assert all(len(list((train / i).glob("*.wav"))) == 4 for i in ids)
    assert [u["channel"] for u in doc["identities"][0]["utterances"]][3] == "mulaw8k"
    held_ids = {
        i["identity"] for i in json.loads((held / "speakers.json").read_text())["identities"]
    }
    assert held_ids.isdisjoint(ids)


def test_speaker_settings_never_overlap_heldout() -> None:
    train = build.speaker_voices(n=40)
    held = build.speaker_voices(n=40, heldout=True)
    for attr in ("variant", "name", "pitch", "speed_wpm"):
        a = {getattr(v, attr) for v in train if v.engine == "espeak"}
        b = {getattr(v, attr) for v in held if v.engine == "espeak"}
        assert a.isdisjoint(b), attr


def test_demo_call_timeline_covers_the_file(tmp_path: Path) -> None:
    out = build.build_demo(tmp_path, calls=1, music_tracks=0, progress=False)
    meta = json.loads((out / "call-00.json").read_text())
    info = sf.info(out / meta["file"])
    assert info.samplerate == meta["sr"] == 8000 and meta["channel"] == "mulaw8k"
    assert 25.0 <= info.duration <= 40.0
    segs = meta["segments"]
    assert segs[0]["start_s"] == 0.0
    assert segs[-1]["end_s"] == pytest.approx(info.duration, abs=0.01)
    assert all(
        a["end_s"] == pytest.approx(b["start_s"], abs=1e-3) for a, b in itertools.pairwise(segs)
    )
    labels = {s["label"] for s in segs}
    assert {"speech", "music", "tone", "silence"} <= labels
    assert all("identity" in s["voice"] for s in segs if s["label"] == "speech")


def test_a_scaled_demo_call_is_shorter_with_the_same_cast_and_structure(tmp_path: Path) -> None:
    full = build.build_demo(tmp_path / "full", calls=1, music_tracks=1, progress=False)
    short = build.build_demo(tmp_path / "short", calls=1, music_tracks=1, scale=0.5, progress=False)
    a, b = (json.loads((d / "call-00.json").read_text()) for d in (full, short))
    assert (a["agent"], a["caller"]) == (b["agent"], b["caller"])
    assert [s["label"] for s in a["segments"] if s["label"] != "silence"][:3] == [
        s["label"] for s in b["segments"] if s["label"] != "silence"
    ][:3]
    assert 10.0 <= b["duration_s"] <= 0.75 * a["duration_s"]  # speech keeps whole words
    assert sf.info(short / "music-00.wav").duration == pytest.approx(15.0)
    assert b["segments"][-1]["end_s"] == pytest.approx(b["duration_s"], abs=0.01)
    assert {"speech", "music", "tone"} <= {s["label"] for s in b["segments"]}


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    tools._which.cache_clear()
    yield
    tools._which.cache_clear()


@pytest.mark.usefixtures("no_tools")
def test_missing_tool_names_tool_and_setup_script(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"espeak-ng.*scripts/setup-system\.sh"):
        build.build_scene(tmp_path / "x", per_class=1, progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.usefixtures("no_tools")
def test_cli_exits_2_with_the_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scene", "--out", str(tmp_path / "x"), "--per-class", "1", "--quiet"]) == 2
    assert "scripts/setup-system.sh" in capsys.readouterr().err


def test_corpus_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, models.corpus.build, models.corpus.__main__; "
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
