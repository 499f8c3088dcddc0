"""``tympan models``: announce the model every worker serves, and show what is active.

``tympan models publish MODEL_DIR [--role label|speaker]`` checks the model here first
(manifest, checksums, golden parity after a warm-up at the batch sizes workers run:
1 and ``--max-batch``), then writes the compacted control record ``model/<role>``
that workers follow (``docs/hot-reload.md``). MODEL_DIR must lie inside the model
repository (``--model-repo``): workers load nothing from outside theirs. Versions only
move forward: to go back to a lower version, publish it with ``--rollback``.
``tympan models active [--json]`` prints the announced model per role and each
worker's last reload outcome (``status/<worker>/<role>``, on the control-status topic
that workers write: they may not write the control topic).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from stream.cli.exit_codes import for_error
from stream.cli.help import examples
from stream.control.signing import signer_from
from stream.errors import ContractError
from stream.kafka.admin import require_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.roles import Role
from stream.settings import ENV_MODEL_REPO, ENV_TOPIC_PREFIX, BatchingPolicy
from stream.settings.specs import from_sources, spec_of

MAX_BATCH = spec_of(BatchingPolicy, "max_batch")

#: ``--role``: the roles' names, and their control-topic spellings (``scene`` for label).
ROLE_CHOICES = tuple(dict.fromkeys(s for r in Role for s in (r.name.lower(), r.value)))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="hot reload: publish the active model per role, show what workers serve",
        description=__doc__,
        **examples(
            "tympan models publish models/zoo/scene/2        # every worker swaps to scene@2",
            "tympan models publish speaker-embed/1 --role speaker",
            "tympan models active --json",
        ),
    )
    sub = parser.add_subparsers(dest="models_command", required=True)
    publish = sub.add_parser(
        "publish",
        help="validate MODEL_DIR and announce it to workers",
        **examples("tympan models publish models/zoo/scene/2 --signing-key keys/prod.key"),
    )
    publish.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="model to serve: a directory, or name[/version] in the model repository "
        "(as classify and worker take it)",
    )
    publish.add_argument(
        "--role",
        default=Role.LABEL.name.lower(),
        choices=ROLE_CHOICES,
        help="what the model does (default label; scene: the control topic's name for label)",
    )
    publish.add_argument(
        "--model-repo",
        dest="model_repo",
        help="the model repository MODEL_DIR is inside (TYMPAN_MODEL_REPO; models/zoo)",
    )
    publish.add_argument(
        "--max-batch",
        dest="max_batch",
        type=int,
        help="the workers' largest inference batch, validated besides 1 "
        f"({MAX_BATCH.env}; default: {MAX_BATCH.default_text})",
    )
    publish.add_argument(
        "--rollback",
        action="store_true",
        help="go back to a lower version than workers serve (the announcement says so, "
        "inside its signature; without it workers refuse a version that moves back)",
    )
    publish.add_argument(
        "--signing-key",
        dest="signing_key",
        help="Ed25519 private key that signs the announcement (TYMPAN_SIGNING_KEY; "
        "tympan keys generate)",
    )
    publish.add_argument(
        "--for-restart",
        dest="for_restart",
        action="store_true",
        help="announce a model the running workers cannot swap in live (other FeatureSpec, "
        "labels or task; another speaker model): they take it when they restart",
    )
    _kafka_arguments(publish)
    publish.set_defaults(func=run_publish)
    active = sub.add_parser(
        "active",
        help="the announced model per role and worker statuses",
        **examples("tympan models active --topic-prefix staging"),
    )
    active.add_argument("--json", action="store_true", help="one JSON object")
    _kafka_arguments(active)
    active.set_defaults(func=run_active)


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="bootstrap servers host:port[,...] (TYMPAN_BROKER)")
    parser.add_argument(
        "--topic-prefix",
        dest="topic_prefix",
        help="first part of every topic name (default: $TYMPAN_TOPIC_PREFIX or tympan)",
    )


def run_publish(args: argparse.Namespace) -> int:
    from stream.control.gate import announce, check_publishable, validate_model
    from stream.control.records import publish_records, read_control
    from stream.inference.repository import default_repo, resolve_model_dir

    repo_name = args.model_repo or os.environ.get(ENV_MODEL_REPO)
    repo = Path(repo_name) if repo_name else default_repo()
    try:
        max_batch = _max_batch(args)
        role = Role.parse(args.role)
        model_dir = resolve_model_dir(args.model_dir, repo=repo, role=role)
        model = validate_model(model_dir, batch_sizes=(1, max_batch))
        announcement = announce(model_dir, role=args.role, repo=repo, rollback=args.rollback)
        topics = _topics(args)
        topic = topics.control
        asyncio.run(require_topics(_client(args), topics, [topic], create=True))
        if not args.for_restart:  # what the workers serve: announcements and their statuses
            latest = asyncio.run(read_control(_client(args), topic))
            latest |= _written_by_workers(args, topics)
            check_publishable(model.manifest, latest, role=role, repo=repo)
        asyncio.run(
            publish_records(
                _client(args),
                topic,
                [(announcement.key, announcement.to_json())],
                signer=signer_from(args.signing_key),
            )
        )
    except ContractError as exc:
        print(f"tympan models publish: refused: {exc}", file=sys.stderr)
        return for_error(exc)
    m = model.manifest
    rollback = " as a rollback" if announcement.rollback else ""
    print(
        f"published {announcement.key.decode()} = {m.name}@{m.version}{rollback} "
        f"({announcement.path}, manifest sha256 {announcement.sha256[:12]}) to {topic}",
        flush=True,
    )
    return 0


def _max_batch(args: argparse.Namespace) -> int:
    """``--max-batch``, else ``TYMPAN_MAX_BATCH``, else the worker's default: read as the
    worker reads its batching settings, so both validate the same batch size."""
    flags = {MAX_BATCH.name: args.max_batch}
    batching: BatchingPolicy = from_sources(BatchingPolicy, os.environ, flags)
    return batching.max_batch


def run_active(args: argparse.Namespace) -> int:
    from stream.control.records import MODEL_PREFIX, announcements, read_control, statuses

    topics = _topics(args)
    topic = topics.control
    try:
        asyncio.run(require_topics(_client(args), topics, [topic], create=False))
        latest = asyncio.run(read_control(_client(args), topic))
        written = _statuses_topic(args, topics)
    except ContractError as exc:
        print(f"tympan models active: {exc}", file=sys.stderr)
        return for_error(exc)
    active = {role: json.loads(a.to_json()) for role, a in announcements(latest).items()}
    workers, unreadable = statuses(written)
    if args.json:
        body = {
            "topic": topic,
            "status_topic": topics.control_status,
            "active": active,
            "workers": workers,
            "unreadable": unreadable,
        }
        print(json.dumps(body, indent=2))
        return 0
    if not active:
        print(f"no model announced on {topic} (keys under {MODEL_PREFIX!r})")
    for role, a in sorted(active.items()):
        print(f"{role:8} {a['name']}@{a['version']}  {a['path']}  published {a['published_at']}")
    if unreadable:
        print(f"  ({unreadable} status record(s) could not be read)")
    for s in workers:
        print(
            f"  worker {s.get('worker')} ({s.get('app_id')}) {s.get('role')}: {s.get('state')} "
            f"{s.get('name')}@{s.get('version')} at {s.get('at')}: {s.get('reason')}"
        )
    return 0


def _statuses_topic(args: argparse.Namespace, topics: Topics) -> dict[bytes, bytes | None]:
    """The control-status topic's records, or none (with a note) where it does not exist
    yet: a deployment older than it still shows its announcements."""
    from stream.control.records import read_control

    try:
        asyncio.run(require_topics(_client(args), topics, [topics.control_status], create=False))
    except ContractError as exc:
        print(f"tympan models active: no worker statuses: {exc}", file=sys.stderr)
        return {}
    return asyncio.run(read_control(_client(args), topics.control_status))


def _written_by_workers(args: argparse.Namespace, topics: Topics) -> dict[bytes, bytes | None]:
    """The control-status topic's records (statuses, ``last-good/``), or none where it
    does not exist yet (no worker has written one)."""
    from stream.control.records import read_control

    try:
        asyncio.run(require_topics(_client(args), topics, [topics.control_status], create=False))
    except ContractError:
        return {}
    return asyncio.run(read_control(_client(args), topics.control_status))


def _client(args: argparse.Namespace) -> KafkaClientConfig:
    return KafkaClientConfig.from_environ(
        os.environ, bootstrap_servers=args.broker, default_client_id="tympan-models"
    )


def _topics(args: argparse.Namespace) -> Topics:
    prefix = args.topic_prefix or os.environ.get(ENV_TOPIC_PREFIX)
    return Topics().with_prefix(prefix) if prefix else Topics()
