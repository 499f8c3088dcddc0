"""``tympan tail``: print the worker's events as they arrive.

A readable table by default (one line per event, columns chosen per topic; a kind
without a table of its own prints JSON lines) or the raw JSON lines with ``--json``.
It reads without a consumer
group, so tailing never moves anyone's committed offsets; ``--from-beginning`` replays
what the topic holds. When the topic does not exist yet it refuses and names the
command that creates it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from stream.cli.exit_codes import for_error
from stream.control.json_records import JsonRecordError
from stream.events import stream_name
from stream.events.kinds import (
    BY_NAME,
    LABELS,
    REJECTED,
    SPEAKERS,
    SUMMARIES,
    EventKind,
    kind_named,
)

EXAMPLES = """\
Examples:

    tympan tail                                   # label events as they arrive
    tympan tail --topic summaries --from-beginning --max 10
    tympan tail --topic rejected --json | jq .reason
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="print label/speaker/summary events or dead letters as they arrive",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--topic",
        choices=tuple(BY_NAME),
        default=LABELS.name,
        help="which events (default: %(default)s; rejected: the dead letters)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="stop after N events")
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop when no event arrived for SECONDS once the topic is read to its end",
    )
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    parser.add_argument("--broker", help="bootstrap servers host:port[,...] (TYMPAN_BROKER)")
    parser.add_argument(
        "--topic-prefix",
        help="first part of every topic name (default: $TYMPAN_TOPIC_PREFIX or tympan)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.errors import TympanError
    from stream.settings import WorkerSettings

    try:
        settings = WorkerSettings.from_environ(
            os.environ, {"broker": args.broker, "topic_prefix": args.topic_prefix}
        )
        return asyncio.run(_tail(settings, args, sys.stdout))
    except TympanError as exc:
        print(f"tympan tail: {exc}", file=sys.stderr)
        return for_error(exc)
    except KeyboardInterrupt:
        return 0


async def _tail(settings: Any, args: argparse.Namespace, out: TextIO) -> int:
    from stream.cli.hints import no_worker_warning
    from stream.errors import BrokerError
    from stream.kafka.admin import require_topics
    from stream.kafka.config import broker_failure
    from stream.kafka.fetch import FetchGuard
    from stream.kafka.readers import BROKER_ERRORS, event_reader
    from stream.kafka.skipped import log_skipped
    from stream.kafka.topics import Topics

    kind = kind_named(args.topic)
    topics = Topics().with_prefix(settings.topic_prefix)
    topic = topics.of(kind)
    await require_topics(settings.kafka, topics, [topic], create=False)
    idle = await no_worker_warning(settings.kafka, settings.topic_prefix, os.environ)
    if idle is not None:
        print(f"tympan tail: warning: {idle}", file=sys.stderr)
    guard = FetchGuard(settings.record_limits)
    consumer = event_reader(
        settings.kafka, [topic], from_beginning=args.from_beginning, guard=guard
    )
    try:
        await consumer.start()
    except BROKER_ERRORS as exc:
        await consumer.stop()
        raise BrokerError(
            f"cannot read {topic!r}: {broker_failure(exc, settings.kafka.bootstrap_servers)}"
        ) from exc
    table = not args.json and kind.name in ROWS
    render = ROWS[kind.name] if table else _json_line
    if table:
        print(HEADERS[kind.name], file=out, flush=True)
    seen = 0
    last = time.monotonic()
    try:
        while args.max is None or seen < args.max:
            batch = await consumer.getmany(timeout_ms=500)
            log_skipped(await guard.take(consumer), what=f"tympan tail {topic}")
            records = [r for part in batch.values() for r in part]
            if not records:
                # quiet only counts once what the topic held is read (a reader that starts
                # slowly would otherwise leave before its first record); past ten times
                # the limit it leaves anyway
                quiet_s = time.monotonic() - last
                if (
                    args.idle_exit is not None
                    and quiet_s > args.idle_exit
                    and (quiet_s > 10 * args.idle_exit or await _caught_up(consumer))
                ):
                    break
                continue
            last = time.monotonic()
            for record in records:
                print(render(_parse(kind, record.value)), file=out, flush=True)
                seen += 1
                if args.max is not None and seen >= args.max:
                    break
    finally:
        await consumer.stop()
    return 0


async def _caught_up(consumer: Any) -> bool:
    """Whether the reader's position is at the end of every partition it reads."""
    assigned = list(consumer.assignment())
    ends = await consumer.end_offsets(assigned)
    for tp in assigned:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


def _parse(kind: EventKind, value: bytes | None) -> dict[str, Any]:
    """The record as an object; one that is not (or too large, too deep) shows its start."""
    try:
        return kind.deserialize(value)
    except JsonRecordError:
        return {"unparsable": (value or b"")[:80].decode("utf-8", "replace")}


def _json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def _clock(capture_time_s: Any) -> str:
    if not isinstance(capture_time_s, int | float):
        return "-"
    return (
        time.strftime("%H:%M:%S", time.gmtime(capture_time_s))
        + f".{int(capture_time_s * 1000) % 1000:03d}"
    )


def _model(event: dict[str, Any]) -> str:
    m = event.get("model") or {}
    return f"{m.get('name', '?')}@{m.get('version', '?')}" if isinstance(m, dict) else str(m)


def _tag_names(tags: Any) -> str | None:
    """A multi-label event's tags as ``a,b,c`` (``-`` for none); ``None`` without tags."""
    if not isinstance(tags, list):
        return None
    names = [str(t.get("tag")) for t in tags if isinstance(t, dict)]
    return ",".join(names) or "-"


def _stream(e: dict[str, Any]) -> str:
    """The stream column: the id, with ``#`` and its instance when the event has one."""
    return stream_name(str(e.get("stream_id")), e.get("instance"), width=24)


def _label_row(e: dict[str, Any]) -> str:
    flags = ",".join(f for f in ("gap", "padded") if e.get(f)) or "-"
    shown = _tag_names(e.get("tags")) or str(e.get("label"))  # tags when multi-label
    return (
        f"{_stream(e):<24} {e.get('window_index', '-'):>6} "
        f"{e.get('start_s', 0):>8.2f} {e.get('end_s', 0):>8.2f} {shown[:16]:<16} "
        f"{e.get('score', 0):>6.3f} {_clock(e.get('capture_time_s')):<12} "
        f"{e.get('latency_ms', 0):>8.1f} {flags:<10} {_model(e)}"
    )


def _speaker_row(e: dict[str, Any]) -> str:
    return (
        f"{_stream(e):<24} {e.get('window_index', '-'):>6} "
        f"{e.get('start_s', 0):>8.2f} {e.get('end_s', 0):>8.2f} "
        f"{str(e.get('speaker'))[:20]:<20} {e.get('score', 0):>6.3f} {_model(e)}"
    )


def _summary_row(e: dict[str, Any]) -> str:
    counts = e.get("counts") or {}
    tags = e.get("tags")
    if e.get("task") == "multi" and isinstance(tags, list):  # the track's tags, best first
        timeline = "tags: " + (
            " ".join(
                f"{t.get('tag')}({t.get('score', 0):.2f},{t.get('active_share', 0):.0%})"
                for t in tags[:8]
                if isinstance(t, dict)
            )
            or "-"
        )
    else:
        timeline = " ".join(
            f"{s.get('label')}[{s.get('start_s', 0):.1f}-{s.get('end_s', 0):.1f}]"
            for s in (e.get("timeline") or [])[:6]
        )
    return (
        f"{_stream(e):<24} {e.get('closed_by', '-'):<8} "
        f"{e.get('duration_s', 0):>8.2f} {e.get('windows', 0):>6} "
        f"{str(e.get('dominant_label'))[:16]:<16} {str(e.get('speaker') or '-')[:16]:<16} "
        f"gaps={counts.get('gaps', 0)} dup={counts.get('duplicates', 0)} "
        f"rej={counts.get('rejected', 0)}  {timeline}"
    )


def _rejected_row(e: dict[str, Any]) -> str:
    where = f"{e.get('partition', '-')}:{e.get('offset', '-')}"
    return f"{_stream(e):<24} {str(e.get('reason'))[:22]:<22} {where:<10} {e.get('message', '')}"


ROWS: dict[str, Callable[[dict[str, Any]], str]] = {
    LABELS.name: _label_row,
    SPEAKERS.name: _speaker_row,
    SUMMARIES.name: _summary_row,
    REJECTED.name: _rejected_row,
}
HEADERS = {
    LABELS.name: f"{'stream':<24} {'window':>6} {'start_s':>8} {'end_s':>8} {'label/tags':<16} "
    f"{'score':>6} {'captured':<12} {'lat_ms':>8} {'flags':<10} model",
    SPEAKERS.name: f"{'stream':<24} {'window':>6} {'start_s':>8} {'end_s':>8} {'speaker':<20} "
    f"{'score':>6} model",
    SUMMARIES.name: f"{'stream':<24} {'closed':<8} {'dur_s':>8} {'wins':>6} {'dominant':<16} "
    f"{'speaker':<16} counts / timeline (or tags)",
    REJECTED.name: f"{'stream':<24} {'reason':<22} {'p:offset':<10} message",
}
