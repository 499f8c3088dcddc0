"""The demo's real recordings (``models.realset.demo``): which clips, how they are cut,
and what the demo prints about the worker's summaries of them.

Fetching the packages and playing the clips is ``tests/integration/test_demo.py``'s
(it runs ``scripts/demo.sh``); here the choices and the report are checked on their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.realset.build import SR
from models.realset.demo import CLIPS, cut_at_turn, main, read_events, report, verdict
from models.realset.sources import RealSetError, load_manifest

TURNS = [[0.0, 2.0], [2.5, 5.0], [5.5, 9.0]]


def _sidecar(expected: str) -> dict[str, Any]:
    return {
        "what": "a recording",
        "expected": expected,
        "channel": "mulaw8k",
        "duration_s": 9.0,
        "sources": [{"package": "pkg", "version": "1.0-1", "licence": "GPL-2+"}],
    }


def _summary(stream: str, dominant: str, speaker: str | None, **windows: int) -> dict[str, Any]:
    return {
        "stream_id": stream,
        "model": {"name": "scene", "version": "9"},
        "windows": sum(windows.values()),
        "dominant_label": dominant,
        "speaker": speaker,
        "timeline": [{"label": k, "windows": n} for k, n in windows.items()],
    }


def test_the_clips_are_evaluation_items_of_the_real_set_never_training_ones() -> None:
    manifest = load_manifest()
    items = {item.id: item for item in manifest.items}
    training = {str(t["package"]): set(t.get("languages", ())) for t in manifest.training}
    for clip in CLIPS:
        item = items[clip.item]
        assert item.label == clip.expected
        for part in item.parts:
            assert "evaluation" in manifest.sources[part.source].role
            if part.source in training:  # only some languages of it train: not these
                languages = training[part.source]
                assert languages and not languages & set(part.path.split("/")), part
        assert len(clip.name) <= 15  # shown whole beside its instance by tympan tail
    assert {c.expected for c in CLIPS} == {"speech", "music"}
    assert any(c.telephone for c in CLIPS)


def test_a_conversation_is_cut_at_the_end_of_a_turn() -> None:
    audio = np.ones(10 * SR, dtype=np.float32)
    assert cut_at_turn(audio, TURNS, 6.0).size == 5 * SR
    assert cut_at_turn(audio, TURNS, 100.0).size == 9 * SR
    assert cut_at_turn(audio, TURNS, 1.0).size == 2 * SR  # the first turn stays whole
    assert cut_at_turn(audio, [], 4.0).size == 4 * SR  # music: at the limit


def test_the_verdict_says_right_when_the_model_is_right() -> None:
    lines = verdict(_sidecar("speech"), _summary("c", "speech", "unknown", speech=3, tone=1))
    assert lines[0].startswith("  scene@9 heard speech (4 windows: speech 75%, tone 25%)")
    assert lines[0].endswith("expected speech: right")
    assert lines[1].endswith(": right") and "unknown" in lines[1]
    assert lines[2] == "  live speaker decisions: 0, every one unknown: right"


def test_the_verdict_says_wrong_when_the_model_is_wrong() -> None:
    lines = verdict(_sidecar("speech"), _summary("c", "music", "agent-7", music=3, speech=1))
    assert lines[0].endswith("expected speech: WRONG")
    assert "agent-7" in lines[1] and "WRONG" in lines[1]
    music = verdict(_sidecar("music"), _summary("m", "speech", "unknown", speech=2))
    assert music == ["  scene@9 heard speech (2 windows: speech 100%); expected music: WRONG"]


def test_a_live_decision_naming_an_enrolled_voice_is_said_wrong() -> None:
    live = [
        {"speaker": "unknown", "start_s": 0.0, "end_s": 2.0, "score": 0.3},
        {"speaker": "agent-7", "start_s": 12.5, "end_s": 16.5, "score": 0.566},
    ]
    lines = verdict(_sidecar("speech"), _summary("c", "speech", "unknown", speech=3), live)
    assert lines[1].endswith(": right")  # the summary's verdict
    assert lines[2] == (
        "  live speaker decisions named agent-7 12.5-16.5 s (score 0.566): "
        "WRONG, a false accept while it lasted"
    )


def test_a_missing_summary_is_said() -> None:
    assert "no end-of-stream summary" in verdict(_sidecar("music"), None)[0]


def test_the_report_names_each_clip_real_with_its_package_and_licence(tmp_path: Path) -> None:
    for clip in CLIPS:
        (tmp_path / f"{clip.name}.json").write_text(json.dumps(_sidecar(clip.expected)))
    summaries = [_summary(c.name, c.expected, "unknown", **{c.expected: 4}) for c in CLIPS]
    lines = report(tmp_path, summaries)
    heads = [line for line in lines if not line.startswith(" ")]
    assert [h.split()[0] for h in heads] == [c.name for c in CLIPS]
    for head in heads:
        assert "REAL recording" in head and "pkg 1.0-1, GPL-2+" in head
    assert sum(line.endswith(": right") for line in lines) == len(CLIPS) + 2


def test_a_line_that_is_not_json_is_refused_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"stream_id": "a"}\n\nnot json\n')
    with pytest.raises(RealSetError, match=r"s\.jsonl:3: not a JSON event"):
        read_events(path)


def test_report_without_summaries_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "--out", str(tmp_path)])
    assert exc.value.code == 2
