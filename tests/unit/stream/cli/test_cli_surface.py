"""The public command surface: what `tympan --help` promises, and the import rule.

Dashboards, scripts and the Docker images call these commands; removing or renaming
one is a breaking change, so it has to show up here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from stream.cli import build_parser

COMMANDS = {
    "produce",
    "ingest",
    "worker",
    "tail",
    "classify",
    "evaluate",
    "speakers",
    "models",
    "dashboard",
    "topics",
    "keys",
    "train",
    "export",
}


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_every_documented_command_is_there() -> None:
    assert _subcommands(build_parser()) == COMMANDS


def test_runtime_cli_imports_no_training_stack() -> None:
    """Building the parser loads train/export lazily: no TensorFlow, models or exporters."""
    code = (
        "import sys; from stream.cli import build_parser; build_parser(); "
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'exporters.export', "
        "'models.train') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
