"""``tympan dashboard``: a live web page over the worker's events.

Shows the active streams with their current label and speaker, a label timeline per
stream, the latest summaries, events per second, latency percentiles and dead letters
by reason. It reads the label, speaker, summary and rejected topics without a consumer
group (it never moves a worker's offsets; run as many as you like) and pushes updates
to the page over Server-Sent Events. The page is plain HTML/JS served by this
process: no internet access is needed.

It listens on 127.0.0.1 unless ``--host`` says otherwise: the page shows stream ids,
speaker names and dead-letter messages, so exposing it is a decision, and another
address needs a token (``--token`` or ``$TYMPAN_DASHBOARD_TOKEN``) that every request
must present (docs/security.md).

Examples::

    tympan dashboard                              # http://127.0.0.1:8080/
    tympan dashboard --from-beginning --port 9000 --topic-prefix staging
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from typing import Any

from stream.cli.exit_codes import ExitCode, for_error
from stream.dashboard.state import DashboardLimits
from stream.errors import ConfigError, TympanError

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
ENV_DASHBOARD_TOKEN = "TYMPAN_DASHBOARD_TOKEN"
DEFAULT_MAX_CLIENTS = 64


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a live web page of streams, labels, latency and dead letters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (%(default)s)")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="bind address (%(default)s; 0.0.0.0 exposes it)"
    )
    parser.add_argument("--broker", help="bootstrap servers host:port[,...] (TYMPAN_BROKER)")
    parser.add_argument("--topic-prefix", help="topic prefix (TYMPAN_TOPIC_PREFIX, tympan)")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="replay what the topics hold instead of starting with new events",
    )
    parser.add_argument(
        "--token",
        help="bearer token every request must present (TYMPAN_DASHBOARD_TOKEN); required "
        "to bind an address other than loopback",
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=DEFAULT_MAX_CLIENTS,
        help="pages following live updates at once (%(default)s)",
    )
    parser.add_argument(
        "--max-streams",
        type=int,
        default=DashboardLimits().max_streams,
        help="streams held at once; past it, ended then idle streams are dropped (%(default)s)",
    )
    parser.set_defaults(func=run)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from stream.dashboard.server import DashboardConfig, refused_by_broker, serve
    from stream.kafka.config import KafkaClientConfig
    from stream.kafka.topics import Topics
    from stream.settings import ENV_TOPIC_PREFIX

    try:
        if not 0 < args.port < 65536:
            raise ConfigError(f"--port {args.port} is outside 1..65535")
        client = KafkaClientConfig.from_environ(
            os.environ, bootstrap_servers=args.broker, default_client_id="tympan-dashboard"
        )
        prefix = args.topic_prefix or os.environ.get(ENV_TOPIC_PREFIX) or Topics().prefix
        token = args.token or os.environ.get(ENV_DASHBOARD_TOKEN) or None
        if token is None and not _loopback(args.host):
            raise ConfigError(
                f"--host {args.host} exposes stream ids and speaker names beyond this "
                f"machine: set a token (--token or {ENV_DASHBOARD_TOKEN})"
            )
        if args.max_clients < 1:
            raise ConfigError(f"--max-clients {args.max_clients} must be >= 1")
        config = DashboardConfig(
            client=client,
            topics=Topics().with_prefix(prefix),
            from_beginning=args.from_beginning,
            limits=DashboardLimits(max_streams=args.max_streams),
            token=token,
            max_clients=args.max_clients,
        )
        refused = asyncio.run(refused_by_broker(client))
        if refused is not None:
            print(f"tympan dashboard: {refused}", file=sys.stderr)
            return ExitCode.BROKER
    except TympanError as exc:
        print(f"tympan dashboard: {exc}", file=sys.stderr)
        return for_error(exc)
    try:
        serve(config, host=args.host, port=args.port)
    except OSError as exc:
        print(f"tympan dashboard: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
