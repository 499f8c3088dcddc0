"""One vocabulary across the whole ``tympan`` command tree, checked by walking the parser.

Every command and sub-command (``tympan topics create``, ``tympan speakers enroll``...)
is walked; for each one:

* every option and positional has a help text, and a required option shows no default;
* its help shows an example that runs that very command;
* its help carries no note meant for the code's readers (module paths, "this module is
  the only place...");
* a concept has one name everywhere: the topic prefix is ``--topic-prefix``, the model
  repository ``--model-repo``, the speaker registry ``--speaker-registry``...; an old
  spelling stays a hidden alias for one release (it parses, it is not shown).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from stream.cli import build_parser, main
from stream.cli.help import Required


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(("tympan", *path)), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))

# A concept, how its help text reads, the one flag it is spelled with.
CONCEPTS: dict[str, tuple[re.Pattern[str], str]] = {
    "topic prefix": (
        re.compile(r"^(topic prefix|first part of every topic name)"),
        "--topic-prefix",
    ),
    "model repository": (re.compile(r"^(the )?model repository"), "--model-repo"),
    "speaker registry": (
        re.compile(r"^(the )?speaker registry (directory|file)"),
        "--speaker-registry",
    ),
    "bootstrap servers": (re.compile(r"^bootstrap servers"), "--broker"),
    "verbosity": (re.compile(r"^more logging"), "--verbose"),
}

# Spellings retired for one release: they must still parse, and never be shown.
RENAMED = {
    "--prefix": "--topic-prefix",
    "--repo": "--model-repo",
    "--out": "--model-repo",
    "--registry": "--speaker-registry",
    "--model": "--speaker-model",
}
ALIASES = [
    ("tympan topics create", "--prefix", "x", "prefix"),
    ("tympan topics delete", "--prefix", "x", "prefix"),
    ("tympan classify", "--repo", "r", "repo"),
    ("tympan evaluate", "--repo", "r", "repo"),
    ("tympan train", "--out", "r", "out"),
    ("tympan export", "--out", "r", "out"),
    ("tympan speakers", "--registry", "r", "registry"),
    ("tympan speakers", "--model", "m", "model"),
]

# Notes for the code's readers, not for someone at a terminal.
INTERNAL = re.compile(
    r"this module|the only place|entry[- ]point|registered through"
    r"|(?<![/\w-])(?:stream|models|exporters|faust|platformdirs)\.[a-z_]+"
    r"|\bstream/[a-z_/]+\.py",
    re.IGNORECASE,
)


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.help is not argparse.SUPPRESS
        and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


def _required(action: argparse.Action) -> bool:
    return action.required or isinstance(action.default, Required)


def _flag(action: argparse.Action) -> str:
    longs = [s for s in action.option_strings if s.startswith("--")]
    return longs[0] if longs else action.dest


def test_the_whole_tree_is_walked() -> None:
    assert {
        "tympan",
        "tympan topics delete",
        "tympan models publish",
        "tympan speakers enroll",
        "tympan ingest rtp",
        "tympan keys generate",
    } <= set(PARSERS)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_has_help(command: str) -> None:
    parser = PARSERS[command]
    bare = [_flag(a) for a in _visible(parser) if not (a.help or "").strip()]
    assert not bare, f"`{command} --help`: {bare} have no help text"
    shows_default = [
        _flag(a)
        for a in _visible(parser)
        if a.option_strings and _required(a) and "default" in (a.help or "")
    ]
    assert not shows_default, f"`{command}`: required {shows_default} show a default"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_shows_an_example_of_itself(command: str) -> None:
    text = PARSERS[command].format_help()
    assert re.search(r"^examples?\b[^\n]*:$", text, re.IGNORECASE | re.MULTILINE), (
        f"`{command} --help` has no example section:\n{text}"
    )
    runs_it = re.compile(rf"^\s+(?:\S.*\|\s*)?{re.escape(command)}(?:\s|$)", re.MULTILINE)
    assert runs_it.search(text), f"`{command} --help` has no example that runs it:\n{text}"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_has_no_internal_notes(command: str) -> None:
    text = PARSERS[command].format_help()
    found = sorted({m.group(0) for m in INTERNAL.finditer(text)})
    assert not found, f"`{command} --help` carries notes for the code's readers: {found}"


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_one_name_per_concept(concept: str) -> None:
    pattern, flag = CONCEPTS[concept]
    spelled = {
        _flag(a)
        for parser in PARSERS.values()
        for a in _visible(parser)
        if a.option_strings and pattern.search(a.help or "")
    }
    assert spelled == {flag}, f"the {concept} is spelled {sorted(spelled)}; one name: {flag}"


def test_retired_spellings_are_never_shown() -> None:
    shown = {
        (command, s)
        for command, parser in PARSERS.items()
        for a in _visible(parser)
        for s in a.option_strings
        if s in RENAMED
        and not (s == "--model" and command != "tympan speakers")
        and not (s == "--out" and command not in ("tympan train", "tympan export"))
    }
    assert not shown, f"old spellings still shown: {sorted(shown)}"


def test_the_speaker_registry_is_a_directory_everywhere() -> None:
    said = {
        command
        for command, parser in PARSERS.items()
        for a in _visible(parser)
        if re.search(r"registry file", a.help or "")
    }
    assert not said, f"{sorted(said)} call the speaker registry a file; it is a directory"


@pytest.mark.parametrize(("command", "old", "value", "dest"), ALIASES)
def test_old_spellings_still_parse_and_warn(
    command: str, old: str, value: str, dest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    words = command.split()[1:]
    tail = {
        "tympan classify": ["x.wav"],
        "tympan evaluate": ["scene", "data"],
        "tympan train": ["data"],
        "tympan export": ["m.keras"],
        "tympan speakers": ["list"],
        "tympan topics delete": [],
    }.get(command, [])
    if command == "tympan topics delete":
        argv = [*words, old, value]
    elif command == "tympan speakers":
        argv = [*words, old, value, *tail]
    else:
        argv = [*words, *tail, old, value]
    args = build_parser().parse_args(argv)
    assert str(getattr(args, dest)) == value
    assert f"{old} is now {RENAMED[old]}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["-v", "topics", "list"], ["topics", "-v", "list"], ["topics", "list", "-v"]]
)
def test_verbose_works_before_and_after_the_command(argv: list[str]) -> None:
    from stream.cli.help import VERBOSE_AFTER

    args = build_parser().parse_args(argv)
    assert args.verbose + getattr(args, VERBOSE_AFTER, 0) == 1


def test_verbose_counts_on_both_sides() -> None:
    from stream.cli.help import VERBOSE_AFTER

    args = build_parser().parse_args(["-v", "tail", "-v"])
    assert args.verbose + getattr(args, VERBOSE_AFTER, 0) == 2


def test_a_retired_spelling_is_not_the_new_flag_name() -> None:
    """The check above can fail: a parser that shows ``--prefix`` is caught."""
    parser = argparse.ArgumentParser(prog="tympan x")
    parser.add_argument("--prefix", help="topic prefix")
    pattern, flag = CONCEPTS["topic prefix"]
    assert {_flag(a) for a in _visible(parser) if pattern.search(a.help or "")} != {flag}
    assert INTERNAL.search("This module is the only place that reads the environment")
    assert INTERNAL.search("see stream.events.kinds")
    assert not INTERNAL.search("tympan.audio.v1 under $TYMPAN_TOPIC_PREFIX")


def test_main_exits_with_usage_for_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "exit status" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["topics", "delete"], ["train", "data"], ["export", "m.keras"]],
    ids=lambda argv: argv[0],
)
def test_a_required_option_with_an_old_spelling_is_still_required(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "the following arguments are required: --" in capsys.readouterr().err
