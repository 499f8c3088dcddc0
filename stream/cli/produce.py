"""``tympan produce``: publish audio files (or raw samples on stdin) as audio frames.

Examples::

    tympan produce call.wav                         # one stream 'call', real time
    tympan produce --fast music/                    # every audio file under music/
    tympan produce --encoding mulaw --rate 8000 --streams 1000 calls/   # telephony load
    arecord -f S16_LE -r 16000 | tympan produce - --rate 16000 --stream-id mic

The broker is ``--broker``, else ``$TYMPAN_BROKER``, else 127.0.0.1:9092. The topic is
``--topic``, else the audio topic of ``--topic-prefix`` (``$TYMPAN_TOPIC_PREFIX``, else
tympan), as the worker reads it. Missing topics of that prefix are created first, with
the partitions the worker expects; a ``--topic`` outside it must exist. When no worker
consumes the audio topic (its consumer group ``<prefix>-worker`` has no members) it
says so: the frames wait in the topic until one starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from stream.cli.exit_codes import ExitCode, for_error
from stream.cli.hints import no_worker_warning
from stream.errors import TympanError
from stream.kafka.admin import require_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.produce import ProduceRequest, ProducerTuning, produce
from stream.settings import ENV_TOPIC_PREFIX
from stream.wire.frame import (
    MAX_CHANNELS,
    MAX_INSTANCE_CHARS,
    MAX_RATE,
    MIN_RATE,
    Encoding,
    new_instance,
    valid_instance,
)


def register(subparsers: Any) -> None:
    """Add ``tympan produce`` to the ``tympan`` command line.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``tympan`` parser's subcommands.
    """
    parser = subparsers.add_parser(
        "produce",
        help="publish audio files or raw PCM as audio frames",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="WAV/FLAC/OGG files, folders (every audio file under them), or '-' for raw "
        "samples on stdin",
    )
    parser.add_argument(
        "--topic",
        default=None,
        help=f"audio topic (default: the audio topic of --topic-prefix, e.g. {Topics().audio})",
    )
    parser.add_argument(
        "--topic-prefix",
        default=os.environ.get(ENV_TOPIC_PREFIX) or Topics().prefix,
        help=f"topic prefix when --topic is not given (${ENV_TOPIC_PREFIX} or %(default)s)",
    )
    parser.add_argument(
        "--broker",
        default=None,
        help="bootstrap servers (default: $TYMPAN_BROKER or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--chunk-ms", type=_positive_float, default=100.0, help="frame length (%(default)s ms)"
    )
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=True,
        help="send each chunk when a live source would have it (default)",
    )
    pacing.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="send as fast as the broker takes it; capture-us is the send time",
    )
    parser.add_argument(
        "--encoding",
        type=Encoding,
        choices=list(Encoding),
        default=Encoding.PCM_S16LE,
        help="files: transcode to this; stdin: what the samples are (%(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=None,
        help="files: resample to this (soxr); stdin: the samples' rate (required)",
    )
    parser.add_argument(
        "--channels", type=_channels, default=1, help="stdin only: interleaved channels (1)"
    )
    parser.add_argument(
        "--streams",
        type=_positive_int,
        default=None,
        metavar="N",
        help="fan the inputs out into N concurrent streams (ids suffixed -0, -1, ...)",
    )
    ids = parser.add_mutually_exclusive_group()
    ids.add_argument("--stream-id", default=None, help="stream id of the single input")
    ids.add_argument("--stream-id-prefix", default="", help="prefix for stream ids (file stems)")
    parser.add_argument(
        "--instance",
        type=_instance,
        default=None,
        help="instance header of this run (default: a new one per run, so a stream id sent "
        "again is a new stream; give the old one to re-send a run as a repeat)",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=ProducerTuning().linger_ms,
        help="real time: frames due within this share one batch per partition, at the cost "
        "of at most that much send lag (%(default)s ms)",
    )
    parser.add_argument(
        "--delivery-timeout-s",
        type=_positive_float,
        default=ProducerTuning().delivery_timeout_s,
        help="the most a frame may stay unacknowledged (leader changes are retried within "
        "it); past it the run stops, names each stream not delivered and exits 3 "
        "(%(default)s s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the run's figures (frames, send-lag p50/p99/max ms) as one JSON line",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Create the missing topics, publish the inputs, print what was sent.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``tympan produce`` options.

    Returns
    -------
    int
        An exit status of ``stream.cli.exit_codes``: 0 all sent, 1 some input failed,
        2 bad options, 3 the broker failed.
    """
    try:
        topic = audio_topic(args)
        client = KafkaClientConfig.from_environ(
            os.environ, bootstrap_servers=args.broker, default_client_id="tympan-produce"
        )
        request = ProduceRequest(
            paths=tuple(args.paths),
            client=client,
            topic=topic,
            chunk_ms=args.chunk_ms,
            realtime=args.realtime,
            encoding=args.encoding,
            sr=args.rate,
            channels=args.channels,
            streams=args.streams,
            stream_id=args.stream_id,
            stream_id_prefix=args.stream_id_prefix,
            progress=not args.no_progress,
            tuning=ProducerTuning(
                linger_ms=args.linger_ms, delivery_timeout_s=args.delivery_timeout_s
            ),
            instance=args.instance or new_instance(),
        )
        prepared = asyncio.run(
            require_topics(client, Topics().with_prefix(args.topic_prefix), [topic], create=True)
        )
        if prepared.created:
            print(f"tympan produce: created {', '.join(prepared.created)}", file=sys.stderr)
        if not args.topic:
            idle = asyncio.run(no_worker_warning(client, args.topic_prefix, os.environ))
            if idle is not None:
                print(f"tympan produce: warning: {idle}", file=sys.stderr)
        report = asyncio.run(produce(request, stdin=sys.stdin.buffer, on_error=_complain))
    except TympanError as exc:
        print(f"tympan produce: {exc}", file=sys.stderr)
        return for_error(exc)
    except KeyboardInterrupt:
        print("tympan produce: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if args.json:
        print(json.dumps({"topic": topic, "instance": request.instance, **report.stats.to_dict()}))
    else:
        print(report.stats.summary(topic))
    if not report.ok:
        print(f"tympan produce: {len(report.failures)} input(s) failed", file=sys.stderr)
        return 1
    return 0


def audio_topic(args: argparse.Namespace) -> str:
    """``--topic`` if given, else the audio topic under ``--topic-prefix``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``tympan produce`` options.

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        The prefix gives illegal Kafka topic names; the message names it.
    """
    if args.topic:
        return str(args.topic)
    return Topics().with_prefix(args.topic_prefix).audio


def _complain(message: str) -> None:
    print(f"tympan produce: error: {message}", file=sys.stderr)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _rate(text: str) -> int:
    value = int(text)
    if not MIN_RATE <= value <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"rate {value} is outside {MIN_RATE}..{MAX_RATE} Hz")
    return value


def _channels(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_CHANNELS:
        raise argparse.ArgumentTypeError(f"channels {value} is outside 1..{MAX_CHANNELS}")
    return value


def _instance(text: str) -> str:
    if not valid_instance(text):
        raise argparse.ArgumentTypeError(
            f"instance {text!r} is not 1..{MAX_INSTANCE_CHARS} of A-Z a-z 0-9 _ . -"
        )
    return text
