"""``tympan ingest ws``: WebSocket media streams (``/twilio``, ``/pcm``) into the audio topic.

One aiohttp application; each connection is one :class:`~stream.ingest.ws_protocols`
session. Frames go to the :class:`~stream.ingest.sink.FrameSink` with ``await``, so
a full producer queue stops the socket from being read: backpressure reaches the
sender through TCP instead of memory growing here. Limits: ``max_message_bytes``
per message (aiohttp closes the socket beyond it), ``max_sessions`` connections and
``max_sessions_per_source`` per remote address, admitted by
:class:`~stream.ingest.admission.Admission` (a connection that has not sent its
``start``/header yet is on probation: a new one may evict it, and it is closed after
``start_timeout_s``), ``idle_timeout_s`` without a message ends the stream.

Each connection is contained: a message its protocol refuses closes it with 1008
(``malformed{reason}``), any other exception raised while one of its messages is
handled closes it with 1011 (``tympan_ingest_errors_total{protocol}``, the traceback
logged); either way its stream gets its end-of-stream frame and every other
connection carries on. Nothing a connection sends reaches the shared producer
unchecked (:func:`~stream.ingest.sink.check_frame`).

A bearer token (``Authorization: Bearer …``, or ``?token=`` for platforms that cannot
set headers, such as Twilio's ``<Stream>``) is checked in constant time when set;
:class:`WsSettings` refuses a non-loopback ``host`` without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import logging
from dataclasses import dataclass, field

from aiohttp import WSMessage, WSMsgType, web

from stream.errors import ConfigError
from stream.ingest.admission import Admission, AdmissionPolicy
from stream.ingest.errors import PacketError
from stream.ingest.metrics import IngestMetrics
from stream.ingest.sink import FrameSink
from stream.ingest.streamid import DEFAULT_WS_TEMPLATE, WS_FIELDS, StreamIdTemplate
from stream.ingest.ws_protocols import SESSIONS, MediaSession, SessionContext
from stream.produce.frames import now_us

log = logging.getLogger(__name__)

METRICS = web.AppKey("metrics", IngestMetrics)
SINK = web.AppKey("sink", FrameSink)


@dataclass(frozen=True, slots=True)
class WsSettings:
    """Everything ``tympan ingest ws`` was asked to do (built by ``stream/cli/ingest.py``)."""

    host: str = "127.0.0.1"
    port: int = 8089
    token: str | None = None
    chunk_ms: float = 100.0
    stream_id_template: str = DEFAULT_WS_TEMPLATE
    max_message_bytes: int = 64 * 1024
    max_sessions: int = 1000
    max_sessions_per_source: int = 1000
    idle_timeout_s: float = 30.0
    start_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(
                f"--listen host {self.host!r} is not loopback: set a bearer token "
                f"(--token-file or $TYMPAN_INGEST_TOKEN) so that strangers cannot publish calls"
            )
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the bearer token is shorter than 16 characters")
        if not 1024 <= self.max_message_bytes <= 16 * 1024 * 1024:
            raise ConfigError(
                f"max_message_bytes {self.max_message_bytes} is outside 1 KiB..16 MiB"
            )
        if not 0 < self.start_timeout_s <= self.idle_timeout_s:
            raise ConfigError(
                f"start_timeout_s {self.start_timeout_s} must be in (0, idle_timeout_s "
                f"{self.idle_timeout_s}]"
            )
        self.admission  # noqa: B018 - checks the limits
        StreamIdTemplate.parse(self.stream_id_template, WS_FIELDS)

    @property
    def admission(self) -> AdmissionPolicy:
        """The connection table's limits."""
        return AdmissionPolicy(
            max_streams=self.max_sessions, max_per_source=self.max_sessions_per_source
        )


@dataclass(eq=False)
class _Connection:
    """One open WebSocket, as the admission sees it."""

    ws: web.WebSocketResponse
    source: str
    evicted: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Connections:
    """The open connections of a server and who may open the next one."""

    admission: Admission[int]
    open: dict[int, _Connection] = field(default_factory=dict)
    streams: set[str] = field(default_factory=set)  # stream ids in use
    ids: itertools.count[int] = field(default_factory=itertools.count)


SETTINGS = web.AppKey("settings", WsSettings)
CONNECTIONS = web.AppKey("connections", _Connections)


def is_loopback(host: str) -> bool:
    """``host`` binds only the loopback interface (``localhost`` counts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(settings: WsSettings, sink: FrameSink, metrics: IngestMetrics) -> web.Application:
    """The aiohttp application: ``/twilio``, ``/pcm``, ``/metrics``, ``/healthz``."""
    app = web.Application(client_max_size=settings.max_message_bytes)
    app[SETTINGS] = settings
    app[SINK] = sink
    app[METRICS] = metrics
    app[CONNECTIONS] = _Connections(Admission(settings.admission))
    for name in SESSIONS:
        app.router.add_get(f"/{name}", _media_handler(name))
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


def _authorized(request: web.Request, token: str | None) -> bool:
    if token is None:
        return True
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def _media_handler(name: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        settings, metrics = request.app[SETTINGS], request.app[METRICS]
        if not _authorized(request, settings.token):
            raise web.HTTPUnauthorized(text="a bearer token is required\n")
        connections = request.app[CONNECTIONS]
        source = request.remote or ""
        try:
            victim = connections.admission.victim(source, f"{name} connection from {source}")
        except PacketError as exc:
            metrics.malformed.labels(exc.reason).inc()  # no session started: none ends
            log.warning("refused a %s connection: %s", name, exc.detail)
            raise web.HTTPServiceUnavailable(text=f"{exc.detail}\n") from None
        if victim is not None:
            _evict(connections, victim)
        ws = web.WebSocketResponse(max_msg_size=settings.max_message_bytes, heartbeat=30.0)
        await ws.prepare(request)
        key = next(connections.ids)
        connection = _Connection(ws, source)
        connections.open[key] = connection
        connections.admission.opened(key, source, now_us())
        context = SessionContext(
            template=StreamIdTemplate.parse(settings.stream_id_template, WS_FIELDS),
            chunk_ms=settings.chunk_ms,
            remote_host=source,
            now_us=now_us,
        )
        try:
            await _run_session(request.app, connection, SESSIONS[name](context), name, key)
        finally:
            del connections.open[key]
            connections.admission.closed(key)
        return ws

    return handler


def _evict(connections: _Connections, victim: int) -> None:
    """Give the slot of a connection on probation away; it closes itself (1013).

    The victim closes from its own task: aiohttp's ``close()`` called from another
    task while the owner waits in ``receive()`` drops the transport without waiting
    for the peer's close reply, so the peer could see 1006 instead of 1013.
    """
    connection = connections.open[victim]
    log.warning("evicting a connection from %s that has not started a stream", connection.source)
    connections.admission.closed(victim)  # its slot is free now, whenever it closes
    connection.evicted.set()


async def _receive(
    connection: _Connection, timeout: float, *, on_probation: bool
) -> WSMessage | None:
    """The next message; ``None`` once the connection is evicted (only on probation).

    Only a connection that has not started its stream pays for the extra task.
    """
    if not on_probation:
        return await connection.ws.receive(timeout=timeout)
    if connection.evicted.is_set():
        return None
    receive = asyncio.ensure_future(connection.ws.receive(timeout=timeout))
    evicted = asyncio.ensure_future(connection.evicted.wait())
    try:
        await asyncio.wait({receive, evicted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        evicted.cancel()
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
    if connection.evicted.is_set():  # even if a message came in the same instant
        return None
    return receive.result()


async def _run_session(
    app: web.Application, connection: _Connection, session: MediaSession, name: str, key: int
) -> None:
    """Drive one connection until its stream stops; whatever happens, end its stream."""
    sink, metrics, settings = app[SINK], app[METRICS], app[SETTINGS]
    connections = app[CONNECTIONS]
    ws = connection.ws
    mine: set[str] = set()
    metrics.streams_started.labels(name).inc()
    why, close_code, close_reason = "stop", None, b""
    try:
        while not session.stopped:
            started = session.started
            timeout = settings.idle_timeout_s if started else settings.start_timeout_s
            try:
                msg = await _receive(connection, timeout, on_probation=not started)
            except TimeoutError:
                why = "idle"
                break
            if msg is None:  # the admission gave its slot to a newer connection
                why, close_code, close_reason = "evicted", 1013, b"evicted: no stream started"
                break
            if msg.type == WSMsgType.TEXT:
                frames = session.text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                frames = session.binary(msg.data)
            else:  # close, error, or a message over the size limit
                if msg.type == WSMsgType.ERROR:
                    metrics.malformed.labels("ws_error").inc()
                why = "closed"
                break
            if not started and session.started:
                connections.admission.established(key)
            _claim(connections, session, mine, metrics, name)
            for frame in frames:
                await sink.put(frame)  # backpressure: the socket is not read meanwhile
    except PacketError as exc:
        metrics.malformed.labels(exc.reason).inc()
        log.warning("%s session from %s: %s; closing it", name, connection.source, exc.detail)
        why, close_code, close_reason = "refused", 1008, exc.reason.encode()[:120]
    except Exception as exc:  # a case nobody foresaw: this connection only
        metrics.errors.labels(name).inc()
        log.error(
            "%s session from %s: unexpected %s, contained to it; closing it",
            name,
            connection.source,
            type(exc).__name__,
            exc_info=exc,
        )
        why, close_code, close_reason = "error", 1011, b"internal error"
    finally:
        await _finish(app, session, name, mine)
        connections.streams.difference_update(mine)
        metrics.active_streams.set(len(connections.streams))
        metrics.streams_ended.labels(why).inc()
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=close_code or 1000, message=close_reason)


def _claim(
    connections: _Connections,
    session: MediaSession,
    mine: set[str],
    metrics: IngestMetrics,
    name: str,
) -> None:
    """Take the session's new stream ids; one that another connection holds is refused."""
    for sid in session.stream_ids:
        if sid not in mine:
            if sid in connections.streams:
                session.close()  # another connection owns the id: send nothing
                raise PacketError("stream_in_use", f"stream {sid!r} is already open")
            connections.streams.add(sid)
            mine.add(sid)
            metrics.active_streams.set(len(connections.streams))
            log.info("stream %r (%s) parameters %r", sid, name, session.parameters)


async def _finish(app: web.Application, session: MediaSession, name: str, mine: set[str]) -> None:
    """Send the end-of-stream frame(s) of a session that ends, whatever ended it."""
    try:
        for frame in session.close():
            if frame.stream_id in mine:
                await app[SINK].put(frame)
    except Exception as exc:  # its EOS is lost; the worker ends the stream by idle timeout
        app[METRICS].errors.labels(name).inc()
        log.error("%s session: could not end its stream: %r", name, exc, exc_info=exc)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "sessions": len(request.app[CONNECTIONS].admission)})
