"""``tympan topics create|check|list|describe|delete|wait``: tympan's topics on a broker.

``--broker`` defaults to ``$TYMPAN_BROKER``, else ``127.0.0.1:9092``; ``--topic-prefix``
to ``$TYMPAN_TOPIC_PREFIX``, else ``tympan`` (as for the worker, tail and dashboard);
TLS/SASL come from the ``TYMPAN_KAFKA_*`` variables (docs/kafka.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from stream.cli.exit_codes import ExitCode, for_error
from stream.cli.help import examples, missing, plain_help, renamed
from stream.errors import TympanError
from stream.kafka.admin import (
    check_topics,
    delete_topics,
    describe_topics,
    ensure_topics,
    list_topics,
    wait_for_broker,
)
from stream.kafka.config import DEFAULT_BOOTSTRAP, ENV_BROKER, KafkaClientConfig
from stream.kafka.topics import Topics, prefixed
from stream.settings import ENV_TOPIC_PREFIX

EXAMPLES = """\
Examples:

    tympan topics create                          # the tympan.* topics, 8 audio partitions
    tympan topics check --topic-prefix staging    # missing or under-replicated topics
    tympan topics delete --topic-prefix staging --yes
"""


def register(subparsers: Any) -> None:
    """Add ``tympan topics`` and its actions to the ``tympan`` command line.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``tympan`` parser's subcommands.
    """
    parser = subparsers.add_parser(
        "topics",
        help="create, list, describe or delete tympan's Kafka topics",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_commands(parser)
    parser.set_defaults(func=lambda _args: _usage(parser))


def standalone(argv: Sequence[str]) -> int:
    """Entry point of ``python -m stream.cli.topics``.

    Parameters
    ----------
    argv : sequence of str
        The arguments after the module name.

    Returns
    -------
    int
        The exit status (``stream.cli.exit_codes``): 0 done, 2 usage or refused, 3 the broker
        failed.
    """
    parser = argparse.ArgumentParser(prog="python -m stream.cli.topics", description=__doc__)
    # aiokafka logs every refused connection while ``wait`` polls; the outcome is printed.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    _add_commands(parser)
    plain_help(parser)
    args = parser.parse_args(argv)
    if missing(args):
        parser.error(f"the following arguments are required: {', '.join(missing(args))}")
    func = getattr(args, "func", None)
    if func is None:
        return _usage(parser)
    return int(func(args))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return ExitCode.USAGE


def _add_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="topics_command", metavar="ACTION")

    create = commands.add_parser(
        "create",
        help="create missing topics, check existing ones",
        **examples("tympan topics create --topic-prefix staging --audio-partitions 16"),
    )
    _add_broker(create)
    _add_layout(create)
    create.set_defaults(func=_create)

    check = commands.add_parser(
        "check",
        help="report missing, under-replicated or not durable topics (changes nothing)",
        description="Compare tympan's topics on the cluster with what `create` would make: "
        "missing topics, fewer replicas than min(3, brokers), partitions under-replicated "
        "now, a missing min.insync.replicas or timestamp type. Each finding names the "
        "command that fixes it. Exit status 0 when there is nothing to report, 1 otherwise.",
        **examples("tympan topics check --topic-prefix staging"),
    )
    _add_broker(check)
    _add_layout(check)
    check.set_defaults(func=_check)

    listing = commands.add_parser(
        "list", help="list topics on the broker", **examples("tympan topics list --all")
    )
    _add_broker(listing)
    listing.add_argument("--all", action="store_true", help="include topics of other prefixes")
    _add_prefix(listing)
    listing.set_defaults(func=_list)

    describe = commands.add_parser(
        "describe",
        help="partitions and configs of topics",
        **examples("tympan topics describe tympan.audio.v1"),
    )
    _add_broker(describe)
    describe.add_argument("names", nargs="*", help="topic names (default: tympan's topics)")
    _add_prefix(describe)
    describe.set_defaults(func=_describe)

    delete = commands.add_parser(
        "delete",
        help="delete every topic under a prefix (asks first unless --yes)",
        description="Delete every topic named PREFIX.* (e.g. to recreate a topic with the "
        "right partition count). It lists them and asks for confirmation on the terminal; "
        "without a terminal it refuses unless --yes is given.",
        **examples("tympan topics delete --topic-prefix staging --yes"),
    )
    _add_broker(delete)
    delete.add_argument(
        "--topic-prefix",
        dest="prefix",
        metavar="PREFIX",
        required=True,
        help="delete the topics named PREFIX.* (required: no prefix is assumed)",
    )
    renamed(delete, "--prefix", new="--topic-prefix")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=_delete)

    wait = commands.add_parser(
        "wait",
        help="wait until the broker answers a metadata request",
        **examples("tympan topics wait --timeout 120 && tympan worker"),
    )
    _add_broker(wait)
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default: 60)")
    wait.set_defaults(func=_wait)


def _add_broker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        default=os.environ.get(ENV_BROKER) or DEFAULT_BOOTSTRAP,
        help=f"bootstrap servers host:port[,...] (default: ${ENV_BROKER} or {DEFAULT_BOOTSTRAP})",
    )


def _add_prefix(parser: argparse.ArgumentParser) -> None:
    default = Topics().prefix
    parser.add_argument(
        "--topic-prefix",
        dest="prefix",
        metavar="PREFIX",
        default=os.environ.get(ENV_TOPIC_PREFIX) or default,
        help=f"first part of every topic name (default: ${ENV_TOPIC_PREFIX} or {default})",
    )
    renamed(parser, "--prefix", new="--topic-prefix")


def _add_layout(parser: argparse.ArgumentParser) -> None:
    defaults = Topics()
    _add_prefix(parser)
    parser.add_argument(
        "--audio-partitions",
        type=int,
        default=defaults.audio_partitions,
        help=f"partitions of the audio topic (default: {defaults.audio_partitions})",
    )
    parser.add_argument(
        "--result-partitions",
        type=int,
        default=defaults.result_partitions,
        help=f"partitions of the label, speaker and summary topics "
        f"(default: {defaults.result_partitions})",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=defaults.replication_factor,
        help="replicas per partition (default: min(3, brokers in the cluster); with 3 or more "
        "the topics get min.insync.replicas=2)",
    )


def _client(args: argparse.Namespace) -> KafkaClientConfig:
    return KafkaClientConfig.from_environ(
        os.environ, bootstrap_servers=args.broker, default_client_id="tympan-topics"
    )


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        return int(asyncio.run(body(args)))
    except TympanError as exc:
        print(f"tympan topics: {exc}", file=sys.stderr)
        return for_error(exc)


def _layout(args: argparse.Namespace) -> Topics:
    return Topics(
        prefix=args.prefix,
        audio_partitions=args.audio_partitions,
        result_partitions=args.result_partitions,
        replication_factor=args.replication_factor,
    )


def _create(args: argparse.Namespace) -> int:
    async def body(args: argparse.Namespace) -> int:
        topics = _layout(args)
        report = await ensure_topics(_client(args), topics)
        for name in topics.names():
            state = "created" if name in report.created else "exists"
            print(f"{state:8} {name}")
        for line in report.advice:
            print(f"tympan topics: {line}", file=sys.stderr)
        return 0

    return _run(args, body)


def _check(args: argparse.Namespace) -> int:
    async def body(args: argparse.Namespace) -> int:
        topics = _layout(args)
        report = await check_topics(_client(args), topics)
        for name in report.missing:
            print(
                f"missing  {name} (create it with "
                f"`tympan topics create --topic-prefix {args.prefix}`)"
            )
        for line in report.advice:
            print(line)
        if report.ok:
            print(f"ok       {len(topics.names())} topics, durable for {report.brokers} broker(s)")
        return 0 if report.ok else 1

    return _run(args, body)


def _list(args: argparse.Namespace) -> int:
    async def body(args: argparse.Namespace) -> int:
        for name in await list_topics(_client(args)):
            if args.all or name.startswith(f"{args.prefix}."):
                print(name)
        return 0

    return _run(args, body)


def _describe(args: argparse.Namespace) -> int:
    async def body(args: argparse.Namespace) -> int:
        names = list(args.names) or list(Topics(prefix=args.prefix).names())
        for info in await describe_topics(_client(args), names):
            configs = " ".join(f"{key}={value}" for key, value in sorted(info.configs.items()))
            print(
                f"{info.name}  partitions={info.partitions} "
                f"replication={info.replication_factor}  {configs}".rstrip()
            )
        return 0

    return _run(args, body)


def _delete(args: argparse.Namespace) -> int:
    async def body(args: argparse.Namespace) -> int:
        Topics(prefix=args.prefix)  # refuses an illegal prefix before asking anything
        client = _client(args)
        doomed = prefixed(await list_topics(client), args.prefix)
        if not doomed:
            print(f"no topics named {args.prefix}.* on {args.broker}")
            return 0
        if not confirm_delete(doomed, yes=args.yes, stdin=sys.stdin, out=sys.stderr):
            return 2
        for name in await delete_topics(client, doomed, wait_s=30.0):
            print(f"deleted  {name}")
        return 0

    return _run(args, body)


def confirm_delete(names: Sequence[str], *, yes: bool, stdin: TextIO, out: TextIO) -> bool:
    """Whether to delete ``names``: ``--yes``, or a "y" typed on the terminal.

    Without a terminal on ``stdin`` (a script, CI) and without ``--yes`` it refuses
    rather than reading an answer nobody typed.

    Parameters
    ----------
    names : sequence of str
        The topics about to be deleted (listed before the question).
    yes : bool
        ``--yes`` was given: no question.
    stdin : TextIO
        Where the answer is read; only a terminal is asked.
    out : TextIO
        Where the list, the question and a refusal go (stderr).

    Returns
    -------
    bool
        True to delete.
    """
    if yes:
        return True
    if not stdin.isatty():
        print(
            f"tympan topics delete: refusing to delete {len(names)} topic(s) without "
            "confirmation: stdin is not a terminal; add --yes",
            file=out,
        )
        return False
    print("\n".join(f"  {name}" for name in names), file=out)
    print(f"delete these {len(names)} topic(s) and every record in them? [y/N] ", end="", file=out)
    out.flush()
    answer = stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        print("tympan topics delete: nothing deleted", file=out)
        return False
    return True


def _wait(args: argparse.Namespace) -> int:
    async def body(args: argparse.Namespace) -> int:
        brokers = await wait_for_broker(_client(args), timeout_s=args.timeout)
        print(f"broker answered at {args.broker} ({brokers} broker(s))")
        return 0

    return _run(args, body)


if __name__ == "__main__":
    sys.exit(standalone(sys.argv[1:]))
