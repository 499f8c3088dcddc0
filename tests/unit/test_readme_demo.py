"""The README's demo excerpt says what ``scripts/demo.sh`` prints today.

The excerpt had drifted (``scene@1`` after scene/2 became the default, old column
headers). Here it is checked against what decides each part of the output without
running the demo: the script's step lines, ``tympan tail``'s headers, the default
models in the repository and the demo's cast. ``tests/integration/test_demo.py``
compares it with a real run.
"""

from __future__ import annotations

import json

from models.corpus.build import demo_enrolled_voices
from models.realset.demo import CLIPS
from models.realset.sources import load_manifest
from stream.cli.tail import HEADERS
from stream.events.kinds import LABELS, SPEAKERS, SUMMARIES
from stream.inference.repository import resolve_model_dir
from stream.roles import Role
from tests.support import demo_output as demo

EXCERPT = demo.readme_excerpt()


def _model_ref(role: Role) -> str:
    manifest = json.loads((resolve_model_dir(None, role=role) / "manifest.json").read_text())
    return f"{manifest['name']}@{manifest['version']}"


def test_every_step_line_is_one_the_script_prints_in_the_script_order() -> None:
    patterns = list(demo.script_steps().values())
    lines = demo.steps(EXCERPT)
    assert lines, "the README's demo excerpt shows no ==> steps"
    positions = []
    for line in lines:
        matches = [i for i, p in enumerate(patterns) if p.match(line)]
        assert matches, f"README step {line!r} is not printed by scripts/demo.sh"
        positions.append(matches[0])
    assert positions == sorted(positions), f"README steps out of the script's order: {lines}"
    assert lines[-1].startswith(demo.DONE)


def test_every_step_the_script_always_prints_is_in_the_readme() -> None:
    """All but the line a machine without ffmpeg prints instead of the RTP call (the
    rendering line is shown, as on a first run)."""
    shown = demo.steps(EXCERPT)
    for template, pattern in demo.script_steps().items():
        if "no ffmpeg" in template:
            continue
        assert any(pattern.match(line) for line in shown), f"README lacks {template!r}"


def test_the_tables_have_tympan_tails_column_headers() -> None:
    expected = [HEADERS[LABELS.name], HEADERS[SPEAKERS.name], HEADERS[SUMMARIES.name]]
    assert demo.headers(EXCERPT) == expected


def test_the_rows_name_the_default_models() -> None:
    labels, speakers = demo.label_rows(EXCERPT), demo.speaker_rows(EXCERPT)
    assert labels and speakers
    assert {r.fields[-1] for r in labels} == {_model_ref(Role.LABEL)}
    # the demo pins its speaker model (scripts/demo.sh: SPEAKER_MODEL), a pinnable older one
    assert {r.fields[-1] for r in speakers} == {demo.speaker_model().replace("/", "@")}


def test_the_voices_are_the_ones_the_demo_enrolls() -> None:
    """Names are cut to the column's width: 20 in speaker rows, 16 in summaries."""
    enrolled = set(demo_enrolled_voices())
    listed = demo.listed_voices(EXCERPT)
    assert listed and set(listed) <= enrolled
    named = [r.fields[4] for r in demo.speaker_rows(EXCERPT)]
    named += [r.fields[5] for r in demo.summary_rows(EXCERPT)]
    for name in named:
        assert name == "unknown" or any(v.startswith(name) for v in enrolled), name
    assert any(name != "unknown" for name in named)


def test_the_real_recordings_are_reported_as_real_with_their_packages() -> None:
    """The excerpt's report names each real clip the demo plays (models/realset/demo.py)
    and shows a summary row and label rows for it, like any stream."""
    reported = demo.real_report(EXCERPT)
    assert sorted(reported) == sorted(clip.name for clip in CLIPS)
    packages = {s.package for s in load_manifest().sources.values()}
    for clip in CLIPS:
        head = reported[clip.name][0]
        assert "REAL recording" in head and any(f"({p} " in head for p in packages), head
        assert clip.name in {r.stream for r in demo.summary_rows(EXCERPT)}
        assert clip.name in {r.stream for r in demo.label_rows(EXCERPT)}
