"""The pipeline package's shape: its public names, and stages small enough to read
(issue 22: no module over ~500 lines, no class over ~400)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import stream.pipeline

PACKAGE = Path(stream.pipeline.__file__).parent
# what the runtime, the build, the tests, the benchmarks and the harnesses import today
USED_NAMES = {
    "EmbedJobs",
    "Pipeline",
    "PipelinePolicy",
    "Record",
    "SpeakerStage",
    "Step",
    "WindowJob",
    "check_aligned",
    "embed_speech",
}


def test_every_public_name_resolves_and_the_used_ones_are_public() -> None:
    names = stream.pipeline.__all__
    assert sorted(set(names)) == sorted(names)
    for name in names:
        assert getattr(stream.pipeline, name) is not None, name
    assert set(names) >= USED_NAMES


def test_each_stage_is_a_module_of_its_own() -> None:
    stages = ("intake", "segments", "deadlines", "conditioning", "jobs", "labels", "speakers")
    for stage in (*stages, "sequencing", "summary", "facade", "records"):
        importlib.import_module(f"stream.pipeline.{stage}")


def test_no_module_over_500_lines_and_no_class_over_400() -> None:
    too_long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            too_long.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > 400:
                    too_long.append(f"{path.name}: class {node.name} of {length} lines")
    assert too_long == []


def test_the_scan_measures_classes() -> None:
    """The check above can fail: it sees the facade's class and its length."""
    tree = ast.parse((PACKAGE / "facade.py").read_text(encoding="utf-8"))
    (pipeline,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Pipeline"]
    assert pipeline.end_lineno is not None and pipeline.end_lineno - pipeline.lineno > 100
