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
import sys
from typing import Any

_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
# :class:`Topics`, :func:`~stream.kafka.admin.ensure_topics`, :ref:`text <target>`
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


class _RenamedOption(argparse.Action):
    """An option's old spelling: sets the new one's value and says it was renamed."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"{parser.prog}: {option_string} is now {self.new}; the old name goes in the "
            "next release",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def renamed(parser: argparse.ArgumentParser, old: str, *, new: str) -> None:
    """Keep ``old`` working as a hidden alias of the option ``new`` (for one release).

    The alias parses like ``new`` (same destination, type and choices), is left out of
    ``--help`` and warns on stderr when used, so a script written for the old name keeps
    running and says what to change.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser that already has the option ``new`` (a value-taking option).
    old : str
        The previous spelling, e.g. ``--prefix``.
    new : str
        The option's name now, e.g. ``--topic-prefix``.
    """
    current = parser._option_string_actions[new]
    if current.required:  # argparse would not count the alias as giving it
        current.required = False
        current.default = Required(new)
    parsing: dict[str, Any] = {"type": current.type} if current.type is not None else {}
    parser.add_argument(
        old,
        action=_RenamedOption,
        new=new,
        dest=current.dest,
        **parsing,
        choices=current.choices,
        metavar=current.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


class Required:
    """The default of a required option that has an old spelling: argparse counts only
    the new one as given, so :func:`missing` checks after parsing instead."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __repr__(self) -> str:
        return f"Required({self.flag!r})"


def missing(args: argparse.Namespace) -> list[str]:
    """The required options (with an old spelling) that ``args`` lacks."""
    return [value.flag for value in vars(args).values() if isinstance(value, Required)]


VERBOSE_AFTER = "verbose_after"
"""Where ``-v`` given after a subcommand is counted (added to the root's ``-v``)."""


def verbose_everywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Accept ``-v``/``--verbose`` after every subcommand too, not only before it.

    argparse gives each subparser a namespace of its own, so the count after the
    subcommand lands in :data:`VERBOSE_AFTER`; ``tympan`` adds both.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The root of a command tree, after every subcommand is registered.

    Returns
    -------
    argparse.ArgumentParser
        ``parser`` itself, changed in place.
    """
    for sub in _subparsers(parser):
        if "-v" not in sub._option_string_actions:
            sub.add_argument(
                "-v",
                "--verbose",
                dest=VERBOSE_AFTER,
                action="count",
                default=argparse.SUPPRESS,
                help="more logging (-vv: debug); also accepted before the command",
            )
        verbose_everywhere(sub)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [
        sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for sub in dict.fromkeys(action.choices.values())
    ]


def examples(*lines: str) -> dict[str, Any]:
    """``add_parser`` keywords that end a command's help with example command lines.

    Parameters
    ----------
    *lines : str
        Command lines, each optionally followed by ``  # what it does``.

    Returns
    -------
    dict
        ``epilog`` (an "Examples:" section) and a ``formatter_class`` that keeps its
        line breaks.
    """
    body = "\n".join(f"    {line}" for line in lines)
    return {
        "epilog": f"Examples:\n\n{body}\n",
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
