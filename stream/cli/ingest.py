"""``tympan ingest rtp|ws``: live calls over RTP or WebSocket into the audio topic.

Examples::

    tympan ingest rtp --listen 127.0.0.1:40000            # PCMU/PCMA, BYE on 40001
    tympan ingest rtp --listen 0.0.0.0:20000-20999 --l16 96:16000
    ffmpeg -re -i call.wav -ar 8000 -acodec pcm_mulaw -f rtp rtp://127.0.0.1:40000
    TYMPAN_INGEST_TOKEN=... tympan ingest ws --listen 0.0.0.0:8089   # /twilio, /pcm

Stream ids, limits and how to point an SBC or a Twilio ``<Stream>`` here are in
docs/ingest.md. The broker is ``--broker``, else ``$TYMPAN_BROKER``; the topic is the
audio topic of ``--topic-prefix`` (``$TYMPAN_TOPIC_PREFIX``) unless ``--topic``.

Exit status: 0 after a clean stop (SIGINT/SIGTERM); 2 for a bad flag or setting; 3
when the broker cannot be reached, the audio topic cannot be created, or queued
frames cannot be delivered; 70 when the ingest runtime itself fails (a bug outside
any one call: the traceback is logged). One call's failure never ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from stream.cli.exit_codes import ExitCode, for_error
from stream.cli.help import examples
from stream.cli.produce import audio_topic
from stream.errors import ConfigError, ContractError, TympanError
from stream.ingest import JitterPolicy, RtpSettings, WsSettings, parse_listen, payload_formats
from stream.ingest.service import run_rtp, run_ws
from stream.ingest.streamid import DEFAULT_RTP_TEMPLATE, DEFAULT_WS_TEMPLATE
from stream.kafka.admin import require_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.producer import ProducerTuning
from stream.kafka.topics import Topics
from stream.settings import ENV_TOPIC_PREFIX

ENV_TOKEN = "TYMPAN_INGEST_TOKEN"
EXIT_FATAL = ExitCode.FATAL  # EX_SOFTWARE, as the worker: the runtime failed

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="live calls over RTP or WebSocket (Twilio Media Streams) into the audio topic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    protocols = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    rtp = protocols.add_parser(
        "rtp",
        help="RTP over UDP: PCMU, PCMA, L16",
        **examples(
            "tympan ingest rtp --listen 127.0.0.1:40000           # PCMU/PCMA",
            "tympan ingest rtp --listen 0.0.0.0:20000-20999 --l16 96:16000",
        ),
    )
    rtp.add_argument(
        "--listen",
        default="127.0.0.1:40000",
        help="HOST:PORT (also binds PORT+1 for RTCP) or HOST:FIRST-LAST (%(default)s)",
    )
    rtp.add_argument(
        "--l16",
        action="append",
        default=[],
        metavar="PT:RATE[:CH]",
        help="accept L16 on dynamic payload type PT (e.g. 96:16000); repeatable",
    )
    rtp.add_argument("--jitter-ms", type=float, default=60.0, help="jitter buffer (%(default)s ms)")
    rtp.add_argument(
        "--idle-timeout-s",
        type=float,
        default=5.0,
        help="end a silent stream after (%(default)s s)",
    )
    rtp.add_argument("--max-streams", type=int, default=2000, help="open streams (%(default)s)")
    rtp.add_argument(
        "--max-streams-per-source",
        type=int,
        default=1000,
        help="open streams one remote host may hold (%(default)s)",
    )
    rtp.add_argument(
        "--stream-id-template",
        default=DEFAULT_RTP_TEMPLATE,
        help="fields {ssrc} {port} {remote_host} {remote_port} (%(default)s)",
    )
    rtp.add_argument(
        "--metrics-port", type=int, default=None, help="serve /metrics on 127.0.0.1:PORT"
    )
    rtp.set_defaults(func=_run_rtp)
    ws = protocols.add_parser(
        "ws",
        help="WebSocket: Twilio Media Streams (/twilio), plain PCM (/pcm)",
        **examples("tympan ingest ws --listen 0.0.0.0:8089 --token-file /run/secrets/ingest"),
    )
    ws.add_argument("--listen", default="127.0.0.1:8089", help="HOST:PORT (%(default)s)")
    ws.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"file holding the bearer token (else ${ENV_TOKEN}); required off loopback",
    )
    ws.add_argument(
        "--stream-id-template",
        default=DEFAULT_WS_TEMPLATE,
        help="fields {stream_sid} {call_sid} {track} {remote_host} (%(default)s)",
    )
    ws.add_argument("--max-sessions", type=int, default=1000, help="connections (%(default)s)")
    ws.add_argument(
        "--max-sessions-per-source",
        type=int,
        default=1000,
        help="connections one remote address may hold (%(default)s)",
    )
    ws.add_argument(
        "--max-message-kib", type=int, default=64, help="largest message (%(default)s KiB)"
    )
    ws.set_defaults(func=_run_ws)
    for sub in (rtp, ws):
        sub.add_argument(
            "--chunk-ms", type=float, default=100.0, help="frame length (%(default)s ms)"
        )
        sub.add_argument("--topic", default=None, help="audio topic (default: of --topic-prefix)")
        sub.add_argument(
            "--topic-prefix",
            default=os.environ.get(ENV_TOPIC_PREFIX) or Topics().prefix,
            help=f"topic prefix when --topic is not given (${ENV_TOPIC_PREFIX} or %(default)s)",
        )
        sub.add_argument("--broker", default=None, help="bootstrap servers ($TYMPAN_BROKER)")
        sub.add_argument(
            "--linger-ms", type=int, default=5, help="producer batching delay (%(default)s ms)"
        )
        sub.add_argument(
            "--delivery-timeout-s",
            type=float,
            default=ProducerTuning().delivery_timeout_s,
            help="the most a frame may stay unacknowledged (leader changes are retried within "
            "it); past it ingest stops, names each stream not delivered and exits 3 "
            "(%(default)s s)",
        )


def _client(args: argparse.Namespace) -> KafkaClientConfig:
    return KafkaClientConfig.from_environ(
        os.environ, bootstrap_servers=args.broker, default_client_id="tympan-ingest"
    )


def _run_rtp(args: argparse.Namespace) -> int:
    def build() -> tuple[Any, ...]:
        host, ports = parse_listen(args.listen)
        settings = RtpSettings(
            host=host,
            ports=ports,
            formats=payload_formats(args.l16),
            policy=JitterPolicy(chunk_ms=args.chunk_ms, jitter_ms=args.jitter_ms),
            stream_id_template=args.stream_id_template,
            idle_timeout_s=args.idle_timeout_s,
            max_streams=args.max_streams,
            max_streams_per_source=args.max_streams_per_source,
        )
        return (settings,)

    return _main(
        args,
        build,
        lambda s, c, t, stop, tune: run_rtp(
            s, c, t, stop, metrics_port=args.metrics_port, tuning=tune, on_ready=_say
        ),
    )


def _run_ws(args: argparse.Namespace) -> int:
    def build() -> tuple[Any, ...]:
        host, sep, port = args.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"--listen {args.listen!r} is not HOST:PORT")
        token = os.environ.get(ENV_TOKEN) or None
        if args.token_file is not None:
            token = args.token_file.read_text().strip()
        settings = WsSettings(
            host=host.strip("[]"),
            port=int(port),
            token=token,
            chunk_ms=args.chunk_ms,
            stream_id_template=args.stream_id_template,
            max_sessions=args.max_sessions,
            max_sessions_per_source=args.max_sessions_per_source,
            max_message_bytes=args.max_message_kib * 1024,
        )
        return (settings,)

    return _main(
        args, build, lambda s, c, t, stop, tune: run_ws(s, c, t, stop, tuning=tune, on_ready=_say)
    )


def _say(line: str) -> None:
    print(f"tympan ingest: {line}", file=sys.stderr, flush=True)


def _main(args: argparse.Namespace, build: Any, run: Any) -> int:
    try:
        (settings,) = build()
        client = _client(args)
        topic = audio_topic(args)
        tuning = ProducerTuning(
            linger_ms=args.linger_ms, delivery_timeout_s=args.delivery_timeout_s
        )
    except (ContractError, OSError) as exc:
        print(f"tympan ingest: {exc}", file=sys.stderr)
        return 2

    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        prefix = Topics().with_prefix(args.topic_prefix)
        await require_topics(client, prefix, [topic], create=True)  # never a silent wait
        return await run(settings, client, topic, stop, tuning)

    try:
        stats = asyncio.run(main())
    except TympanError as exc:
        print(f"tympan ingest: {exc}", file=sys.stderr)
        return for_error(exc)
    except Exception as exc:  # the runtime itself failed: say so and exit, never hang
        log.critical("tympan ingest failed: %r", exc, exc_info=exc)
        print(f"tympan ingest: internal error: {exc!r}", file=sys.stderr)
        return EXIT_FATAL
    print(f"tympan ingest: {stats.summary(topic)}", file=sys.stderr)
    return 0
