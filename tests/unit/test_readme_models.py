"""The README's "Models and what they were trained on" table covers the shipped models.

One row per ``models/zoo/<name>/<version>/`` (a directory with a model card), no row
for a model that is gone, and each row says whether its training audio was rendered
or real: a new version (scene/3, instruments/2, ...) fails here until its row is added.
"""

from __future__ import annotations

import re

from tests.support.demo_output import README, REPO

HEADING = "## Models and what they were trained on"


def _rows() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(HEADING) :]
    section = section[: section.index("\n## ", len(HEADING))]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"`([\w.-]+/[\w.-]+)`", cells[0]) if line.startswith("|") else None
        if found:
            assert found.group(1) not in rows, f"two README rows for {found.group(1)}"
            rows[found.group(1)] = cells
    return rows


def _shipped() -> set[str]:
    cards = (REPO / "models" / "zoo").glob("*/*/MODEL_CARD.md")
    return {f"{card.parent.parent.name}/{card.parent.name}" for card in cards}


def test_every_shipped_model_has_a_row_and_every_row_a_model() -> None:
    rows, shipped = set(_rows()), _shipped()
    assert shipped, "no model cards under models/zoo"
    missing, stale = sorted(shipped - rows), sorted(rows - shipped)
    assert not missing, (
        f"README.md '{HEADING}' has no row for {missing}: add one from the model card "
        "(what it does, training sources rendered or real, its real-set figures)"
    )
    assert not stale, f"README.md '{HEADING}' has rows for models not in models/zoo: {stale}"


def test_every_row_says_rendered_or_real_and_gives_figures() -> None:
    for model, cells in _rows().items():
        assert len(cells) == 4, f"{model}: {cells}"
        assert re.search(r"\*\*(rendered|real)\*\*", cells[2]), f"{model}: {cells[2]}"
        assert re.search(r"\d", cells[3]), f"{model}: no real-set figure in {cells[3]!r}"
