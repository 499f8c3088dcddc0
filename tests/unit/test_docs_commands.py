"""The README and docs/ show commands the CLI accepts today, under today's names.

Every ``tympan ...`` line in a code block of README.md and docs/*.md is parsed by the real
parser: a removed option, or an old spelling kept only as a hidden alias (which warns),
fails here instead of in a reader's terminal. docs/troubleshooting.md lists every exit
status the CLI defines.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from stream.cli import build_parser
from stream.cli.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMAND = re.compile(r"^(?:\$ )?(?:\S+=\S+ )*(?:\.venv/bin/)?tympan (.+)$")


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            lines = [line.strip() for line in block.splitlines()]
            prompted = [line for line in lines if line.startswith("$ ")]
            for line in prompted or lines:  # a console block: its output is no command
                match = COMMAND.match(line)
                if match:
                    found.append((page.name, match.group(1)))
    return found


def _argv(rest: str) -> list[str] | None:
    """The words of a documented command line, up to a comment, pipe or ``&``; ``None``
    for a synopsis (``[--opt X]``, ``A|B``, ``...``) rather than a command."""
    words = []
    for word in shlex.split(rest, comments=True):
        if word in ("|", "&", "&&", ";", ">", "2>&1"):
            break
        words.append(word)
    if any(ch in " ".join(words) for ch in "[]|…") or "..." in words or "COMMAND" in words:
        return None
    return words


COMMANDS = [(page, argv) for page, rest in _commands() if (argv := _argv(rest)) is not None]


def test_the_pages_show_commands() -> None:
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "quickstart.md", "troubleshooting.md"} <= pages or len(COMMANDS) > 20


@pytest.mark.parametrize(("page", "argv"), COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_a_documented_command_parses_under_todays_names(
    page: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --version, --help
            return
        pytest.fail(f"{page}: `tympan {' '.join(argv)}` is refused: {capsys.readouterr().err}")
        raise AssertionError from exc
    err = capsys.readouterr().err
    assert " is now " not in err, f"{page}: `tympan {' '.join(argv)}` uses an old name: {err}"


def test_troubleshooting_lists_every_exit_status() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \|", text, re.MULTILINE), code
