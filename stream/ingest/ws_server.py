"""``tympan ingest ws``: WebSocket media streams (``/twilio``, ``/pcm``) into the audio topic.

One aiohttp application; each connection is one :class:`~stream.ingest.ws_protocols`
session. Frames go to the :class:`~stream.ingest.sink.FrameSink` with ``await``, so
a full producer queue stops the socket from being read: backpressure reaches the
sender through TCP instead of memory growing here. Limits: ``max_message_bytes``
per message (aiohttp closes the socket beyond it), ``max_sessions`` connections,
``idle_timeout_s`` without a message ends the stream.

A bearer token (``Authorization: Bearer …``, or ``?token=`` for platforms that cannot
set headers, such as Twilio's ``<Stream>``) is checked in constant time when set;
:class:`WsSettings` refuses a non-loopback ``host`` without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from stream.errors import ConfigError
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
    idle_timeout_s: float = 30.0

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
        StreamIdTemplate.parse(self.stream_id_template, WS_FIELDS)


SETTINGS = web.AppKey("settings", WsSettings)
ACTIVE = web.AppKey("active", set[str])


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
    app[ACTIVE] = set()
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
        settings = request.app[SETTINGS]
        if not _authorized(request, settings.token):
            raise web.HTTPUnauthorized(text="a bearer token is required\n")
        active: set[str] = request.app[ACTIVE]
        if len(active) >= settings.max_sessions:
            raise web.HTTPServiceUnavailable(text=f"{len(active)} sessions open (the limit)\n")
        ws = web.WebSocketResponse(max_msg_size=settings.max_message_bytes, heartbeat=30.0)
        await ws.prepare(request)
        context = SessionContext(
            template=StreamIdTemplate.parse(settings.stream_id_template, WS_FIELDS),
            chunk_ms=settings.chunk_ms,
            remote_host=request.remote or "",
            now_us=now_us,
        )
        session = SESSIONS[name](context)
        await _run_session(request.app, ws, session, name)
        return ws

    return handler


async def _run_session(
    app: web.Application, ws: web.WebSocketResponse, session: MediaSession, name: str
) -> None:
    sink, metrics, settings = app[SINK], app[METRICS], app[SETTINGS]
    active: set[str] = app[ACTIVE]
    mine: set[str] = set()
    metrics.streams_started.labels(name).inc()
    why = "stop"
    try:
        while not session.stopped:
            try:
                msg = await ws.receive(timeout=settings.idle_timeout_s)
            except TimeoutError:
                why = "idle"
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
            for sid in session.stream_ids:
                if sid not in mine:
                    if sid in active:
                        session.close()  # another connection owns the id: send nothing
                        raise PacketError("stream_in_use", f"stream {sid!r} is already open")
                    active.add(sid)
                    mine.add(sid)
                    metrics.active_streams.set(len(active))
                    log.info("stream %r (%s) parameters %s", sid, name, session.parameters)
            for frame in frames:
                await sink.put(frame)  # backpressure: the socket is not read meanwhile
    except PacketError as exc:
        metrics.malformed.labels(exc.reason).inc()
        log.warning("%s session from %s: %s; closing it", name, ws, exc.detail)
        why = "refused"
        await ws.close(code=1008, message=exc.reason.encode()[:120])
    finally:
        for frame in session.close():
            await sink.put(frame)
        active.difference_update(mine)
        metrics.active_streams.set(len(active))
        metrics.streams_ended.labels(why).inc()
        if not ws.closed:
            await ws.close()


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "sessions": len(request.app[ACTIVE])})
