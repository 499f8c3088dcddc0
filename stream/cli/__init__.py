"""The ``tympan`` command line: one entry point, one module per subcommand.

Each command module exposes ``register(subparsers) -> None`` which adds its parser
and sets ``func`` (a callable taking the parsed namespace and returning an exit
code). Commands that need the training stack (``train``, ``export``) live in
``models``/``exporters`` and arrive through the ``tympan.commands`` entry-point
group, so the runtime never imports them by name.

Every command's output may go to a pipe whose reader stops early (``tympan tail |
head``): :func:`main` then exits quietly with status 0, in one place for all commands,
instead of a ``BrokenPipeError`` traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from stream.cli.exit_codes import EPILOG as EXIT_STATUS
from stream.cli.exit_codes import ExitCode, for_error
from stream.cli.help import VERBOSE_AFTER, missing, plain_help, verbose_everywhere
from stream.errors import TympanError
from stream.kafka.config import broker_refusals

__all__ = ["build_parser", "main"]

# Runtime commands, in the order they appear in ``tympan --help``.
_RUNTIME_COMMANDS = (
    "stream.cli.produce",
    "stream.cli.ingest",
    "stream.cli.worker",
    "stream.cli.tail",
    "stream.cli.classify",
    "stream.cli.evaluate",
    "stream.cli.speakers",
    "stream.cli.models",
    "stream.cli.dashboard",
    "stream.cli.topics",
    "stream.cli.keys",
)

Register = Callable[[Any], None]


def _runtime_registrars() -> list[Register]:
    return [importlib.import_module(name).register for name in _RUNTIME_COMMANDS]


def _plugin_registrars() -> list[Register]:
    out: list[Register] = []
    for ep in entry_points(group="tympan.commands"):
        try:
            out.append(ep.load())
        except ImportError as exc:
            out.append(_unavailable(ep.name, exc))
    return out


def _unavailable(name: str, exc: ImportError) -> Register:
    """A stub parser for a plugin whose extra is not installed: say which extra."""

    def register(subparsers: Any) -> None:
        parser = subparsers.add_parser(name, help=f"(needs the 'train' extra: {exc.name})")
        parser.add_argument("args", nargs=argparse.REMAINDER)

        def fail(_: argparse.Namespace) -> int:
            print(
                f"tympan {name}: needs the training extra (in the checkout: pip install -e "
                f"'.[train]'; docs/install.md): cannot import {exc.name!r}",
                file=sys.stderr,
            )
            return 2

        parser.set_defaults(func=fail)

    return register


def _version() -> str:
    """The installed distribution's version (a checkout run without installing says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tympan")
    except PackageNotFoundError:
        return "(not installed)"


_EXAMPLES = """\
examples (a broker at 127.0.0.1:9092; docs/quickstart.md):
  tympan topics create                     # the topics, once
  tympan worker                            # serve the latest scene model
  tympan produce --fast call.wav           # publish a file as audio frames
  tympan tail --topic summaries            # one line per finished stream
  tympan COMMAND --help                    # each command's options and examples
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tympan",
        description="Streaming real-time audio classification on Kafka.",
        epilog=f"{_EXAMPLES}\n{EXIT_STATUS}\n\nerror messages and their fixes: "
        "docs/troubleshooting.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    parser.add_argument(
        "--version", action="version", version=f"tympan {_version()}", help="print the version"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _runtime_registrars() + _plugin_registrars():
        register(subparsers)
    return plain_help(verbose_everywhere(parser))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if missing(args):
        parser.error(f"the following arguments are required: {', '.join(missing(args))}")
    args.verbose += getattr(args, VERBOSE_AFTER, 0)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return ExitCode.USAGE
    refusals = broker_refusals()
    try:
        status = int(func(args) or 0)
    except TympanError as exc:  # a command that did not report its own error
        print(f"tympan {args.command}: {exc}", file=sys.stderr)
        status = for_error(exc)
    except KeyboardInterrupt:
        print(f"tympan {args.command}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's broken pipe (a broker, a peer) is a real error
        _silence_stdout()
        return 0
    if status != 0 and refusals.hint is not None and not refusals.told:
        print(f"tympan {args.command}: {refusals.hint}", file=sys.stderr)
    return status


def _stdout_closed() -> bool:
    """Whether standard output is a pipe nobody reads any more."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit (of what the
    closed pipe never took) does not print "Exception ignored ... BrokenPipeError"."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
