"""Help texts as plain terminal text: the reStructuredText of docstrings rendered away.

Command modules pass their docstring as ``description`` so that one text serves the
source reader and ``tympan X --help``. Docstrings use Sphinx markup (double backticks,
roles, ``Examples::``), which is noise on a terminal; :func:`plain_help` gives every
parser of a command tree a formatter that strips it when help is printed, so no module
has to write its text twice.
"""

from __future__ import annotations

import argparse
import re

_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
# :class:`Topics`, :func:`~stream.kafka.topics.ensure_topics`, :ref:`text <target>`
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]+?)\s*(?:<[^`>]*>)?`")
_LITERAL_BLOCK = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_BARE_LITERAL_BLOCK = re.compile(r"^[ \t]*::[ \t]*\n", re.MULTILINE)


def plain_text(text: str) -> str:
    """``text`` with its reStructuredText inline markup replaced by the plain words.

    Parameters
    ----------
    text : str
        Help text written as a docstring.

    Returns
    -------
    str
        The same text without double backticks, Sphinx roles (``:class:`X``` gives ``X``,
        ``:func:`~a.b``` gives ``b``) or literal-block markers (``Examples::`` gives
        ``Examples:``).
    """

    def role(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        return target.rsplit(".", 1)[-1] if short else target

    text = _LITERAL.sub(r"\1", text)
    text = _ROLE.sub(role, text)
    text = _LITERAL_BLOCK.sub(r"\1:", text)
    return _BARE_LITERAL_BLOCK.sub("", text)


class PlainHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter (wraps descriptions) that prints plain text."""

    def format_help(self) -> str:
        return plain_text(super().format_help())


class PlainRawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's raw-description formatter (keeps line breaks) that prints plain text."""

    def format_help(self) -> str:
        return plain_text(super().format_help())


def plain_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` and every subparser under it a plain-text formatter; return it.

    A parser that keeps its description's line breaks (``RawDescriptionHelpFormatter``)
    keeps them; the others are still wrapped.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The root of a command tree, after every subcommand is registered.

    Returns
    -------
    argparse.ArgumentParser
        ``parser`` itself, changed in place.
    """
    current = parser.formatter_class
    raw = isinstance(current, type) and issubclass(current, argparse.RawDescriptionHelpFormatter)
    parser.formatter_class = PlainRawDescriptionHelpFormatter if raw else PlainHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                plain_help(sub)
    return parser
