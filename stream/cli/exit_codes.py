"""The exit status of every ``tympan`` command: one code per kind of failure.

A script that runs ``tympan produce``, ``tail`` or ``worker`` must be able to tell "the
broker is down" from "this option is wrong" from "one of the files was bad" without
reading the message, and the same failure must end every command with the same code.
The codes are defined here once, listed in ``tympan --help`` (:data:`EPILOG`) and in
docs/troubleshooting.md, and :func:`for_error` maps the error tree of
:mod:`stream.errors` onto them.
"""

from __future__ import annotations

from enum import IntEnum

from stream.errors import BrokerError, ContractError, TympanError


class ExitCode(IntEnum):
    """What a ``tympan`` command's exit status means."""

    OK = 0
    """Done; everything given was processed."""
    INPUT = 1
    """The command ran, but some of its inputs failed (a file that cannot be read, a
    topic check that found problems); each one was reported by name."""
    USAGE = 2
    """Refused at start: a bad option or setting, a model or registry that cannot serve
    (argparse's own code for a bad flag)."""
    BROKER = 3
    """Kafka could not be reached, refused us, or lacks the topics the command needs."""
    FATAL = 70
    """The runtime itself failed (a bug outside any one record; EX_SOFTWARE): a
    supervisor restarts the worker, which replays from its committed offsets."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (SIGINT) before it finished."""


def for_error(exc: TympanError) -> ExitCode:
    """The exit status of a command that stopped on ``exc``.

    Parameters
    ----------
    exc : TympanError
        The error the command reports before it exits.

    Returns
    -------
    ExitCode
        :attr:`ExitCode.BROKER` for a :class:`~stream.errors.BrokerError`,
        :attr:`ExitCode.USAGE` for another contract error (refused at start),
        :attr:`ExitCode.INPUT` for an input error (a file, a record).
    """
    if isinstance(exc, BrokerError):
        return ExitCode.BROKER
    if isinstance(exc, ContractError):
        return ExitCode.USAGE
    return ExitCode.INPUT


EPILOG = "exit status (every command):\n" + "\n".join(
    f"  {code.value:<4} {_line}"
    for code, _line in (
        (ExitCode.OK, "done"),
        (ExitCode.INPUT, "some inputs failed or were refused (each is named on stderr)"),
        (ExitCode.USAGE, "bad option or setting; model or registry refused at start"),
        (ExitCode.BROKER, "Kafka unreachable, refused us, or a topic is missing"),
        (ExitCode.FATAL, "the worker's runtime failed (a supervisor restarts it)"),
        (ExitCode.INTERRUPTED, "interrupted (Ctrl-C)"),
    )
)
"""The exit statuses as ``tympan --help`` lists them."""
