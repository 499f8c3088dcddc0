"""``tympan worker``: consume audio frames, emit label/speaker/summary events.

A thin wrapper over Faust's own worker (``faust.Worker``): it builds the settings
from flags and ``TYMPAN_*`` variables (``stream.settings``), makes sure the topics
exist, loads and checks the model, then hands the app to Faust, which handles
signals, the service lifecycle and the web server (``/metrics``); the audio topic is
consumed a fetched batch at a time by ``stream.worker``.

``--processes N`` (default: one per core, ``TYMPAN_PROCESSES``) runs N such workers
in one consumer group as child processes of a supervisor that restarts a child that
dies (``stream.worker.supervisor``); child ``i`` serves metrics on ``web_port + i``
and keeps its data in ``data_dir/process-i``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from stream.errors import ContractError

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the streaming worker (Faust): audio frames → label/speaker/summary events",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="label model: directory or name[/version] (default: scene)")
    parser.add_argument("--speaker-model", dest="speaker_model", help="speaker model (optional)")
    parser.add_argument("--speaker-registry", dest="speaker_registry", help="speaker registry file")
    parser.add_argument("--model-repo", dest="model_repo", help="model repository (models/zoo)")
    parser.add_argument("--broker", help="bootstrap servers host:port[,...] (TYMPAN_BROKER)")
    parser.add_argument("--topic-prefix", dest="topic_prefix", help="topic prefix (tympan)")
    parser.add_argument("--app-id", dest="app_id", help="Faust app id = consumer group")
    parser.add_argument("--data-dir", dest="data_dir", help="Faust data directory")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="onnxruntime device")
    parser.add_argument("--max-batch", dest="max_batch", type=int, help="windows per batch")
    parser.add_argument("--max-wait-ms", dest="max_wait_ms", type=float, help="batch wait budget")
    parser.add_argument("--queue-windows", dest="queue_windows", type=int, help="queue bound")
    parser.add_argument("--reorder-frames", dest="reorder_frames", type=int)
    parser.add_argument("--max-gap-frames", dest="max_gap_frames", type=int)
    parser.add_argument("--idle-timeout-s", dest="idle_timeout_s", type=float)
    parser.add_argument("--max-streams", dest="max_streams", type=int)
    parser.add_argument(
        "--max-frame-bytes", dest="max_frame_bytes", type=int, help="larger frames: dead letter"
    )
    parser.add_argument(
        "--max-frame-ms", dest="max_frame_ms", type=float, help="longer frames: dead letter"
    )
    parser.add_argument(
        "--max-gap-s", dest="max_gap_s", type=float, help="zero-fill gaps up to this, else reset"
    )
    parser.add_argument(
        "--max-seq-jump", dest="max_seq_jump", type=int, help="larger seq jumps: dead letter"
    )
    parser.add_argument(
        "--max-segment-s", dest="max_segment_s", type=float, help="roll longer streams"
    )
    parser.add_argument("--top-k", dest="top_k", type=int)
    parser.add_argument(
        "--dead-letter-max-bytes",
        dest="dead_letter_max_bytes",
        type=int,
        help="payload bytes a dead letter keeps (65536; TYMPAN_DEAD_LETTER_MAX_BYTES)",
    )
    parser.add_argument("--web-host", dest="web_host", help="metrics bind address (127.0.0.1)")
    parser.add_argument("--web-port", dest="web_port", type=int, help="metrics port; 0 = off")
    parser.add_argument(
        "--processes",
        type=int,
        help="worker processes in one consumer group (TYMPAN_PROCESSES; default: one per core)",
    )
    parser.add_argument("--loglevel", default="info", help="Faust worker log level")
    parser.add_argument(
        "--trusted-key",
        dest="trusted_keys",
        action="append",
        metavar="PUB",
        help="publisher public key (file or folder of *.pub; repeat): only announcements "
        "and enrollments it signed are applied (TYMPAN_TRUSTED_KEYS)",
    )
    parser.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_false",
        help="do not create missing topics at start",
    )
    parser.set_defaults(func=run)


_SETTING_FLAGS = (
    "model",
    "speaker_model",
    "speaker_registry",
    "model_repo",
    "broker",
    "topic_prefix",
    "app_id",
    "data_dir",
    "device",
    "max_batch",
    "max_wait_ms",
    "queue_windows",
    "reorder_frames",
    "max_gap_frames",
    "idle_timeout_s",
    "max_streams",
    "max_frame_bytes",
    "max_frame_ms",
    "max_gap_s",
    "max_seq_jump",
    "max_segment_s",
    "top_k",
    "dead_letter_max_bytes",
    "web_host",
    "web_port",
    "trusted_keys",
)


ENV_PROCESSES = "TYMPAN_PROCESSES"


def run(args: argparse.Namespace) -> int:
    from stream.settings import WorkerSettings
    from stream.topics import Topics, ensure_topics
    from stream.worker.build import build_worker

    try:
        settings = WorkerSettings.from_environ(
            os.environ, {name: getattr(args, name) for name in _SETTING_FLAGS}
        )
        processes = _processes(args.processes, os.environ.get(ENV_PROCESSES))
        if args.create_topics:
            topics = Topics().with_prefix(settings.topic_prefix)
            asyncio.run(ensure_topics(settings.kafka, topics))
        if processes > 1:
            return _supervise(args, settings, processes)
        worker = build_worker(settings)
    except ContractError as exc:
        print(f"tympan worker: {exc}", file=sys.stderr)
        return 2
    _banner(worker)
    import faust

    faust_worker = faust.Worker(worker.app, loglevel=args.loglevel)
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exc:  # how Faust's worker always ends
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    return _exit_code(worker, code)


def _exit_code(worker: Any, code: int) -> int:
    """Non-zero whenever the runtime failed: a supervisor must see a failed worker."""
    from stream.worker.build import EXIT_FATAL

    fatal = worker.fatal
    if fatal is not None and fatal.reason is not None:
        print(f"tympan worker: stopped by a failure: {fatal.reason!r}", file=sys.stderr)
        return EXIT_FATAL
    return code


def _processes(flag: int | None, env: str | None) -> int:
    from stream.errors import ConfigError
    from stream.worker.supervisor import default_processes

    if flag is None and env:
        try:
            flag = int(env)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PROCESSES}={env!r} is not a number of processes") from exc
    count = default_processes() if flag is None else flag
    if count < 1:
        raise ConfigError(f"--processes {count} must be >= 1")
    return count


def _supervise(args: argparse.Namespace, settings: Any, processes: int) -> int:
    """Run ``processes`` single-process workers with the same flags (topics already
    exist), each with its own data directory and metrics port."""
    from stream.errors import ConfigError
    from stream.worker.supervisor import Supervisor, child_command

    base = ["-v"] * getattr(args, "verbose", 0) + ["worker"]
    for name in _SETTING_FLAGS:
        value = getattr(args, name)
        if value is not None:
            base += [f"--{name.replace('_', '-')}", str(value)]
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
        f"tympan worker: {processes} worker processes in group {settings.app_id!r} "
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
        f"{worker.model.device}) | consuming {worker.topics.audio} as group {s.app_id!r} on "
        f"{s.kafka.bootstrap_servers} | events → {worker.topics.labels}, "
        f"{worker.topics.speakers}, {worker.topics.summaries}; dead letters → "
        f"{worker.topics.rejected} | metrics {web}",
        flush=True,
    )
