"""`tympan X --help` reads as plain text in a terminal: no reStructuredText markup.

Module docstrings double as help texts (``description=__doc__``); Sphinx roles and
double backticks that read well in the source are noise on a terminal.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from stream.cli import build_parser

# Double backticks, Sphinx roles (:class:`X`, :func:`f`), "Example::" literal-block
# markers and directives (.. note::).
MARKUP = re.compile(r"``|:[a-z]+:`|\w::\s*$|^\s*\.\. \w+::", re.MULTILINE)


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(("tympan", *path)), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))


def test_every_subcommand_is_walked() -> None:
    assert {"tympan topics delete", "tympan models publish", "tympan speakers enroll"} <= set(
        PARSERS
    )


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_has_no_restructuredtext_markup(command: str) -> None:
    text = PARSERS[command].format_help()
    found = sorted({m.group(0).strip() for m in MARKUP.finditer(text)})
    assert not found, f"`{command} --help` prints markup {found}:\n{text}"


def test_the_markup_check_can_fail() -> None:
    assert MARKUP.search("see ``tympan topics``")
    assert MARKUP.search("a :class:`Topics`")
    assert MARKUP.search("Examples::\n\n    tympan produce x.wav")
    assert not MARKUP.search("tympan produce call.wav  # one stream 'call', at 16000 Hz")
