"""``tympan worker``: consume audio frames, emit label/speaker/summary events.

Reads the audio topic of ``--topic-prefix`` a fetched batch at a time, puts each
stream's frames back in order, runs the label model (and the speaker model, when one is
given) and writes label, speaker and summary events; a record it cannot use becomes a
dead letter on the rejected topic, with its reason. Missing topics are created at start
(unless ``--no-create-topics``) and the model is checked before the first record is
read. Each option below can also be set by the ``TYMPAN_*`` variable named beside it
(docs/configuration.md); a flag wins over its variable. Ctrl-C or SIGTERM stops it.

``--processes N`` (default: one per core) runs N workers in one consumer group under a
supervisor that restarts one that dies; worker ``i`` serves metrics on ``--web-port`` + i
and keeps its state in ``--data-dir``/process-i.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from typing import Any

from stream.cli.exit_codes import for_error
from stream.cli.help import examples
from stream.errors import ContractError
from stream.settings import WorkerSettings
from stream.settings.specs import SettingSpec, specs

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the streaming worker (Faust): audio frames → label/speaker/summary events",
        description=__doc__,
        **examples(
            "tympan worker                                   # latest scene model, 1 per core",
            "tympan worker --topic-prefix staging --model scene/2 --processes 2",
            "tympan worker --speaker-model speaker-embed --speaker-registry ~/speakers",
        ),
    )
    parser.add_argument("--broker", help="bootstrap servers host:port[,...] (TYMPAN_BROKER)")
    for spec in specs(WorkerSettings):
        parser.add_argument(spec.flag, **_argument(spec))
    parser.add_argument(
        "--loglevel",
        default="info",
        help="log level of the worker's own log lines: debug, info, warning, error (default: info)",
    )
    parser.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_false",
        help="do not create missing topics at start",
    )
    parser.set_defaults(func=run)


def _argument(spec: SettingSpec) -> dict[str, Any]:
    """argparse's keywords for one declared setting: typed, its help from the declaration."""
    keywords: dict[str, Any] = {
        "dest": spec.name,
        "type": spec.kind,
        "help": spec.help_text().replace("%", "%%"),
    }
    if spec.many:
        keywords.update(action="append", metavar=spec.name.removesuffix("s").upper())
    if spec.choices is not None:
        keywords["choices"] = spec.choices
    return keywords


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, by name (``None``: not given)."""
    given = {spec.name: getattr(args, spec.name) for spec in specs(WorkerSettings)}
    return {"broker": args.broker, **given}


def run(args: argparse.Namespace) -> int:
    from stream.control.signing import Verifier
    from stream.kafka.admin import ensure_topics, require_topics
    from stream.kafka.topics import Topics
    from stream.worker.build import build_worker
    from stream.worker.supervisor import default_processes

    try:
        settings = WorkerSettings.from_environ(os.environ, _flags(args))
        Verifier.load(settings.trusted_keys)  # a bad --trusted-key fails closed, first
        processes = settings.processes or default_processes()
        topics = Topics().with_prefix(settings.topic_prefix)
        if args.create_topics:
            used = topics.for_worker(transactional=settings.guarantee == "exactly-once")
            asyncio.run(ensure_topics(settings.kafka, topics, only=used))
        elif settings.guarantee == "exactly-once":  # its progress topic: say so at start
            asyncio.run(require_topics(settings.kafka, topics, [topics.progress], create=False))
        if processes > 1:
            return _supervise(args, settings, processes)
        worker = build_worker(settings)
    except ContractError as exc:
        print(f"tympan worker: {exc}", file=sys.stderr)
        return for_error(exc)
    _banner(worker)
    import faust

    faust_worker = faust.Worker(worker.app, loglevel=args.loglevel)
    _freeze_startup_objects()
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exc:  # how Faust's worker always ends
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    return _exit_code(worker, code)


def _freeze_startup_objects() -> None:
    """Move what start-up built (modules, Faust, the model: ~215,000 objects) out of
    the garbage collector's reach: a full collection then traverses only what the
    streams allocate. Measured in a worker at 1,000 streams: a full collection paused
    the event loop 133-212 ms, 6-20 ms once frozen (benchmarks/RESULTS.md). The
    usual tuning for long-lived Python servers."""
    gc.collect()
    gc.freeze()


def _exit_code(worker: Any, code: int) -> int:
    """Non-zero whenever the runtime failed: a supervisor must see a failed worker."""
    from stream.worker.build import EXIT_FATAL

    fatal = worker.fatal
    if fatal is not None and fatal.reason is not None:
        print(f"tympan worker: stopped by a failure: {fatal.reason!r}", file=sys.stderr)
        return EXIT_FATAL
    return code


def _supervise(args: argparse.Namespace, settings: Any, processes: int) -> int:
    """Run ``processes`` single-process workers with the same flags (topics already
    exist), each with its own data directory and metrics port."""
    from stream.errors import ConfigError
    from stream.worker.supervisor import Supervisor, child_command

    base = ["-v"] * getattr(args, "verbose", 0) + ["worker"]
    if args.broker is not None:
        base += ["--broker", args.broker]
    for spec in specs(WorkerSettings):
        value = getattr(args, spec.name)
        if value is not None and spec.name not in ("processes", "web_port", "data_dir"):
            base += spec.argv(value)
    base += ["--loglevel", args.loglevel, "--no-create-topics", "--processes", "1"]
    commands = []
    for index in range(processes):
        port = settings.web_port + index if settings.web_port else 0
        data_dir = settings.data_dir / f"process-{index}"
        try:
            data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates the last level only
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {data_dir}: {exc}") from exc
        commands.append(
            child_command([*base, "--web-port", str(port), "--data-dir", str(data_dir)])
        )
    print(
        f"tympan worker: {processes} worker processes in group {settings.group_id!r} "
        f"(a dead one is restarted; SIGTERM stops all)",
        flush=True,
    )
    return Supervisor(commands).run()


def _banner(worker: Any) -> None:
    s = worker.settings
    m = worker.model.manifest
    web = f"http://{s.web_host}:{s.web_port}/metrics" if s.web_port else "off"
    print(
        f"tympan worker: model {m.name}@{m.version} ({len(m.labels)} labels, "
        f"{worker.model.device}; {worker.served_because}) | consuming {worker.topics.audio} "
        f"as group {s.group_id!r} on "
        f"{s.kafka.bootstrap_servers} | events → {worker.topics.labels}, "
        f"{worker.topics.speakers}, {worker.topics.summaries}; dead letters → "
        f"{worker.topics.rejected} | metrics {web}",
        flush=True,
    )
