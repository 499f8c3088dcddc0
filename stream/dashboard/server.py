"""The dashboard's web server: one Kafka reader, a static page, snapshots over SSE.

Thin on purpose: the aggregation is :mod:`stream.dashboard.state`. This module reads
the four result topics with aiokafka (no consumer group, so any number of dashboards
see every event and never move a worker's offsets), folds each record into the one
:class:`~stream.dashboard.state.DashboardState`, and serves

``GET /``            the page (plain HTML/CSS/JS from ``static/``: no build, no CDN)
``GET /events``      Server-Sent Events: a ``snapshot`` event whenever the state changed
``GET /api/state``   the same snapshot as one JSON document (scripts, tests)
``GET /healthz``     200 while the Kafka reader is reading, 503 (with the reason) otherwise

Every response carries a Content-Security-Policy that allows only this origin's own
files (the page has no inline script or style) and the usual hardening headers. With
a ``token`` every route but ``/healthz`` needs it: ``Authorization: Bearer <token>``
(scripts), or once ``/?token=<token>``, which sets an HttpOnly, SameSite=Strict cookie
and redirects to ``/`` (browsers: EventSource cannot send headers). At most
``max_clients`` pages follow ``/events`` at once; more get 503 (docs/security.md).

The reader reconnects on its own when the broker goes away, so the dashboard can be
started before Kafka (``docker compose``) and survives a broker restart; it waits for
the topics to exist rather than asking for them by name (which would make a dev
broker auto-create them with the wrong partition count).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from stream.dashboard.state import DashboardLimits, DashboardState
from stream.errors import BrokerError
from stream.events.kinds import EVENT_KINDS
from stream.kafka.admin import list_topics, wait_for_broker
from stream.kafka.config import KafkaClientConfig, broker_refusals
from stream.kafka.fetch import FetchGuard
from stream.kafka.readers import BROKER_ERRORS, EventReader, event_reader
from stream.kafka.skipped import log_skipped
from stream.kafka.topics import Topics

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
    token: when set, required by every route but ``/healthz`` (see the module doc).
    max_clients: ``/events`` connections served at once.
    """

    client: KafkaClientConfig = field(default_factory=KafkaClientConfig)
    topics: Topics = field(default_factory=Topics)
    from_beginning: bool = False
    push_interval_s: float = 0.5
    limits: DashboardLimits = field(default_factory=DashboardLimits)
    token: str | None = field(default=None, repr=False)
    max_clients: int = 64

    def topic_kinds(self) -> dict[str, str]:
        """Topic name → the name of the event kind it holds."""
        return {self.topics.of(kind): kind.name for kind in EVENT_KINDS}


@dataclass(slots=True)
class ReaderStatus:
    """Whether the Kafka reader is connected, and the last error when it is not."""

    connected: bool = False
    error: str | None = None
    records: int = 0


class Snapshots:
    """The state's snapshot as JSON bytes, shared by every browser watching.

    Recomputed only when the state changed (or every ``_REFRESH_S``, so rates decay
    and ages advance on a quiet system), and at most once per ``min_interval_s``
    however many browsers ask: the cost of the page does not grow with traffic.
    """

    def __init__(self, state: DashboardState, min_interval_s: float) -> None:
        self.state = state
        self.min_interval_s = min_interval_s
        self.serial = 0
        self._seen: tuple[int, int] | None = None
        self._at_s = float("-inf")
        self._body = b""

    def current(self, now_s: float, status: ReaderStatus) -> tuple[int, bytes]:
        """``(serial, body)``; the serial grows each time the body changes."""
        seen = (self.state.version, int(now_s // _REFRESH_S))
        if seen != self._seen and now_s - self._at_s >= self.min_interval_s:
            snapshot = self.state.snapshot(now_s)
            snapshot["kafka"] = {"connected": status.connected, "error": status.error}
            self._body = json.dumps(snapshot, separators=(",", ":")).encode()
            self._seen, self._at_s = seen, now_s
            self.serial += 1
        return self.serial, self._body


STATE = web.AppKey("state", DashboardState)
CONFIG = web.AppKey("config", DashboardConfig)
STATUS = web.AppKey("status", ReaderStatus)
SNAPSHOTS = web.AppKey("snapshots", Snapshots)
STOPPING = web.AppKey("stopping", asyncio.Event)
CLIENTS = web.AppKey("clients", list)
TOKEN_COOKIE = "tympan_dashboard_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """The token check (when one is set) and the security headers, on every route."""
    token = request.app[CONFIG].token
    if token is not None and request.path != "/healthz":
        given = request.query.get("token")
        if given is not None and request.path == "/" and _same(given, token):
            response: web.StreamResponse = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
            response.headers.update(SECURITY_HEADERS)
            return response
        bearer = request.headers.get("Authorization", "")
        presented = (
            bearer[7:] if bearer.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE)
        )
        if presented is None or not _same(presented, token):
            raise web.HTTPUnauthorized(
                text="tympan dashboard: a token is required (Authorization: Bearer, or /?token=)",
                headers={"WWW-Authenticate": "Bearer", **SECURITY_HEADERS},
            )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def build_app(config: DashboardConfig) -> web.Application:
    """The aiohttp application; the Kafka reader runs for the app's lifetime."""
    app = web.Application(middlewares=[_guard])
    state = DashboardState(config.limits, started_s=time.time())
    app[CONFIG] = config
    app[STATE] = state
    app[STATUS] = ReaderStatus()
    app[SNAPSHOTS] = Snapshots(state, config.push_interval_s)
    app[STOPPING] = asyncio.Event()
    app[CLIENTS] = []
    app.router.add_get("/", _index)
    app.router.add_get("/events", _events)
    app.router.add_get("/api/state", _api_state)
    app.router.add_get("/healthz", _healthz)
    app.router.add_static("/static/", STATIC_DIR)
    app.cleanup_ctx.append(_reader_context)
    app.on_shutdown.append(_stop_streams)
    return app


async def refused_by_broker(client: KafkaClientConfig, *, timeout_s: float = 15.0) -> str | None:
    """Why the broker refuses these credentials or certificates, if it does.

    A dashboard started before Kafka waits for it (the reader retries), but a wrong
    password or an untrusted certificate never heals: the caller exits with this
    reason instead of serving a page that stays empty.
    """
    try:
        await wait_for_broker(client, timeout_s=timeout_s)
    except BrokerError:
        return broker_refusals().hint
    return None


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
    """Fold every record of the result topics into ``state``; reconnect on failure.

    It subscribes only once all four topics exist: a consumer asking for a missing
    topic by name makes a broker with ``auto.create.topics.enable`` (the dev broker)
    create it with default partitions, and the worker would then refuse to start
    (``ensure_topics`` finds the wrong partition count).
    """
    kinds = config.topic_kinds()
    while True:
        try:
            if await _topics_ready(config.client, list(kinds), status):
                await _read_once(config, kinds, state, status)
        except Exception as exc:  # the page must say the reader failed, not freeze
            log.exception("dashboard: the Kafka reader failed")
            _set_status(status, False, f"reader failed: {type(exc).__name__}: {exc}")
        await asyncio.sleep(_RETRY_S)


async def _topics_ready(client: KafkaClientConfig, names: list[str], status: ReaderStatus) -> bool:
    try:
        present = set(await list_topics(client))
    except BrokerError as exc:
        _set_status(status, False, str(exc))
        return False
    except BROKER_ERRORS as exc:
        _set_status(status, False, str(exc))
        return False
    missing = [name for name in names if name not in present]
    if missing:
        _set_status(
            status,
            False,
            f"waiting for topics {', '.join(missing)} (start a worker or `tympan topics create`)",
        )
    return not missing


async def _read_once(
    config: DashboardConfig, kinds: dict[str, str], state: DashboardState, status: ReaderStatus
) -> None:
    guard = FetchGuard()
    consumer = event_reader(
        config.client, list(kinds), from_beginning=config.from_beginning, guard=guard
    )
    try:
        await consumer.start()
        _set_status(status, True, None)
        await _drain(consumer, kinds, state, status, guard)
    except BROKER_ERRORS as exc:
        _set_status(status, False, f"{type(exc).__name__}: {exc}")
    finally:
        await consumer.stop()


def _set_status(status: ReaderStatus, connected: bool, error: str | None) -> None:
    """Update the reader's status; log only changes, not every retry."""
    if (connected, error) != (status.connected, status.error):
        if connected:
            log.info("dashboard: reading from Kafka")
        else:
            log.warning("dashboard: %s; retrying every %g s", error, _RETRY_S)
    status.connected, status.error = connected, error


async def _drain(
    consumer: EventReader,
    kinds: dict[str, str],
    state: DashboardState,
    status: ReaderStatus,
    guard: FetchGuard,
) -> None:
    while True:
        batch = await consumer.getmany(timeout_ms=500, max_records=2000)
        for skipped in await guard.take(consumer):
            state.unparsable[kinds.get(skipped.topic, skipped.topic)] += 1
            log_skipped([skipped], what="dashboard")
        now_s = time.time()
        for tp, records in batch.items():
            kind = kinds[tp.topic]
            for record in records:
                _fold(state, kind, record, now_s)
            status.records += len(records)


def _fold(state: DashboardState, kind: str, record: Any, now_s: float) -> None:
    """Fold one record; a record that still raises is counted as unparsable and
    skipped, so the reader never stops (nor, with ``--from-beginning``, loops) on it."""
    try:
        state.apply_record(kind, record.value, now_s)
    except Exception as exc:  # the boundary: one record must not stop the reader
        state.unparsable[kind] += 1
        log.warning(
            "dashboard: %s partition %s offset %s skipped: %r",
            record.topic,
            record.partition,
            record.offset,
            exc,
        )


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
    clients: list[web.Request] = app[CLIENTS]
    if len(clients) >= app[CONFIG].max_clients:
        raise web.HTTPServiceUnavailable(
            text=f"tympan dashboard: {len(clients)} pages follow it already (the limit)",
            headers={"Retry-After": "10"},
        )
    clients.append(request)
    try:
        return await _follow_events(request)
    finally:
        clients.remove(request)


async def _follow_events(request: web.Request) -> web.StreamResponse:
    app = request.app
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **SECURITY_HEADERS,
        }
    )
    await response.prepare(request)
    interval_s = app[CONFIG].push_interval_s
    sent = -1
    try:
        await response.write(b"retry: 2000\n\n")
        while not app[STOPPING].is_set():
            serial, body = app[SNAPSHOTS].current(time.time(), app[STATUS])
            if serial != sent:
                await response.write(b"event: snapshot\ndata: " + body + b"\n\n")
                sent = serial
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app[STOPPING].wait(), timeout=interval_s)
    except ConnectionResetError:
        pass  # the browser went away
    return response
