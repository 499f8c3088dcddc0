"""The dashboard's web server: one Kafka reader, a static page, snapshots over SSE.

Thin on purpose: the aggregation is :mod:`stream.dashboard.state`. This module reads
the four result topics with aiokafka (no consumer group, so any number of dashboards
see every event and never move a worker's offsets), folds each record into the one
:class:`~stream.dashboard.state.DashboardState`, and serves

``GET /``            the page (plain HTML/CSS/JS from ``static/``: no build, no CDN)
``GET /events``      Server-Sent Events: a ``snapshot`` event whenever the state changed
``GET /api/state``   the same snapshot as one JSON document (scripts, tests)
``GET /healthz``     200 while the Kafka reader is connected, 503 otherwise

The reader reconnects on its own when the broker goes away, so the dashboard can be
started before Kafka (``docker compose``) and survives a broker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from stream.dashboard.state import KINDS, DashboardLimits, DashboardState, Kind
from stream.kafka_client import KafkaClientConfig
from stream.topics import Topics

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_RETRY_S = 2.0
_REFRESH_S = 2.0  # push even without new events, so rates decay and ages advance


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """What one dashboard reads and how it pushes.

    Attributes
    ----------
    client: the Kafka connection (bootstrap, TLS/SASL).
    topics: whose label/speaker/summary/rejected topics to read (their prefix).
    from_beginning: replay what the topics hold instead of starting at their end.
    push_interval_s: the page gets at most one snapshot per this interval.
    limits: memory bounds of the aggregation.
    """

    client: KafkaClientConfig = field(default_factory=KafkaClientConfig)
    topics: Topics = field(default_factory=Topics)
    from_beginning: bool = False
    push_interval_s: float = 0.5
    limits: DashboardLimits = field(default_factory=DashboardLimits)

    def topic_kinds(self) -> dict[str, Kind]:
        """Topic name → the kind of event it holds."""
        return {getattr(self.topics, kind): kind for kind in KINDS}


@dataclass(slots=True)
class ReaderStatus:
    """Whether the Kafka reader is connected, and the last error when it is not."""

    connected: bool = False
    error: str | None = None
    records: int = 0


class Snapshots:
    """The state's snapshot as JSON bytes, computed once per change (or per refresh)
    however many browsers are watching."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state
        self._key: tuple[int, int] | None = None
        self._body = b""

    def current(self, now_s: float, status: ReaderStatus) -> tuple[tuple[int, int], bytes]:
        key = (self.state.version, int(now_s // _REFRESH_S))
        if key != self._key:
            snapshot = self.state.snapshot(now_s)
            snapshot["kafka"] = {"connected": status.connected, "error": status.error}
            self._key, self._body = key, json.dumps(snapshot, separators=(",", ":")).encode()
        return key, self._body


STATE = web.AppKey("state", DashboardState)
CONFIG = web.AppKey("config", DashboardConfig)
STATUS = web.AppKey("status", ReaderStatus)
SNAPSHOTS = web.AppKey("snapshots", Snapshots)
STOPPING = web.AppKey("stopping", asyncio.Event)


def build_app(config: DashboardConfig) -> web.Application:
    """The aiohttp application; the Kafka reader runs for the app's lifetime."""
    app = web.Application()
    state = DashboardState(config.limits, started_s=time.time())
    app[CONFIG] = config
    app[STATE] = state
    app[STATUS] = ReaderStatus()
    app[SNAPSHOTS] = Snapshots(state)
    app[STOPPING] = asyncio.Event()
    app.router.add_get("/", _index)
    app.router.add_get("/events", _events)
    app.router.add_get("/api/state", _api_state)
    app.router.add_get("/healthz", _healthz)
    app.router.add_static("/static/", STATIC_DIR)
    app.cleanup_ctx.append(_reader_context)
    app.on_shutdown.append(_stop_streams)
    return app


def serve(config: DashboardConfig, *, host: str, port: int) -> None:
    """Run the dashboard until SIGINT/SIGTERM."""
    print(
        f"tympan dashboard: http://{host}:{port}/ | reading "
        f"{', '.join(config.topic_kinds())} on {config.client.bootstrap_servers}",
        flush=True,
    )
    web.run_app(build_app(config), host=host, port=port, print=None, shutdown_timeout=5.0)


async def _reader_context(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(read_forever(app[CONFIG], app[STATE], app[STATUS]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()


async def read_forever(
    config: DashboardConfig, state: DashboardState, status: ReaderStatus
) -> None:
    """Fold every record of the result topics into ``state``; reconnect on failure."""
    kinds = config.topic_kinds()
    while True:
        consumer = AIOKafkaConsumer(
            *kinds,
            **config.client.aiokafka_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if config.from_beginning else "latest",
        )
        try:
            await consumer.start()
            status.connected, status.error = True, None
            log.info("dashboard reading %s", ", ".join(kinds))
            await _drain(consumer, kinds, state, status)
        except (KafkaError, OSError) as exc:
            status.connected, status.error = False, f"{type(exc).__name__}: {exc}"
            log.warning(
                "dashboard: Kafka at %s failed (%s); retrying in %g s",
                config.client.bootstrap_servers,
                status.error,
                _RETRY_S,
            )
        finally:
            await consumer.stop()
        await asyncio.sleep(_RETRY_S)


async def _drain(
    consumer: AIOKafkaConsumer, kinds: dict[str, Kind], state: DashboardState, status: ReaderStatus
) -> None:
    while True:
        batch = await consumer.getmany(timeout_ms=500, max_records=2000)
        now_s = time.time()
        for tp, records in batch.items():
            kind = kinds[tp.topic]
            for record in records:
                state.apply_record(kind, record.value, now_s)
            status.records += len(records)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _api_state(request: web.Request) -> web.Response:
    _, body = request.app[SNAPSHOTS].current(time.time(), request.app[STATUS])
    return web.Response(body=body, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    body = {"kafka_connected": status.connected, "error": status.error, "records": status.records}
    return web.json_response(body, status=200 if status.connected else 503)


async def _events(request: web.Request) -> web.StreamResponse:
    app = request.app
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    interval_s = app[CONFIG].push_interval_s
    sent: tuple[int, int] | None = None
    try:
        await response.write(b"retry: 2000\n\n")
        while not app[STOPPING].is_set():
            key, body = app[SNAPSHOTS].current(time.time(), app[STATUS])
            if key != sent:
                await response.write(b"event: snapshot\ndata: " + body + b"\n\n")
                sent = key
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app[STOPPING].wait(), timeout=interval_s)
    except ConnectionResetError:
        pass  # the browser went away
    return response
