"""Running an ingest process: the protocol's server, the frame sink and ``/metrics``.

:func:`run_rtp` and :func:`run_ws` run until ``stop`` is set (SIGINT/SIGTERM in the
CLI), then end every open stream with an EOS frame, deliver what is queued and
return. If the producer fails (broker gone) the server stops too and the
:class:`~stream.errors.BrokerError` propagates: an ingest that cannot deliver
should not keep accepting calls. If the server itself fails (a bug outside any one
call: each call's own failures are contained where it is handled), the queued frames
are still delivered and the error propagates, so the process exits non-zero. The
final delivery is bounded (``DRAIN_S``): a producer that cannot deliver within it is
cancelled and a :class:`~stream.errors.BrokerError` raised, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from stream.errors import BrokerError
from stream.ingest.metrics import IngestMetrics
from stream.ingest.rtp_endpoint import RtpIngest, RtpSettings, serve_rtp
from stream.ingest.sink import FrameSink
from stream.ingest.ws_server import WsSettings, build_app
from stream.kafka.admin import wait_for_broker
from stream.kafka.config import KafkaClientConfig
from stream.kafka.producer import ProducerTuning, ProduceStats

log = logging.getLogger(__name__)

_BROKER_WAIT_S = 15.0
DRAIN_S = 30.0
"""Seconds the queued frames get to reach the broker once the server has stopped."""

Ready = Callable[[str], object]


async def _metrics_site(
    metrics: IngestMetrics, host: str, port: int | None
) -> web.AppRunner | None:
    if port is None:
        return None

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


async def _until_stopped(
    server: Awaitable[object],
    sender: asyncio.Task[ProduceStats],
    stop: asyncio.Event,
    sink: FrameSink,
) -> ProduceStats:
    """Serve until ``stop``; then deliver what is queued (at most ``DRAIN_S``)."""
    serving = asyncio.ensure_future(server)
    done, _ = await asyncio.wait({serving, sender}, return_when=asyncio.FIRST_COMPLETED)
    if sender in done:  # the producer failed: stop taking calls, report why
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        sender.result()
        raise BrokerError("the Kafka producer stopped before the ingest did")
    try:
        await serving
    finally:  # stopped, or the server failed: either way deliver what is queued
        stats = await drained(sink, sender)
    return stats


async def drained(
    sink: FrameSink, sender: asyncio.Task[ProduceStats], *, timeout_s: float = DRAIN_S
) -> ProduceStats:
    """Close ``sink`` and wait for ``sender`` to deliver what it holds, at most ``timeout_s``.

    Raises
    ------
    BrokerError
        The frames were not delivered in time; ``sender`` is cancelled (never a hang).
    """

    async def close_and_wait() -> ProduceStats:
        await sink.close()  # waits for room in the queue, which only the sender makes
        return await asyncio.shield(sender)

    try:
        return await asyncio.wait_for(close_and_wait(), timeout_s)
    except TimeoutError:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        raise BrokerError(
            f"the queued frames were not delivered within {timeout_s:g} s of stopping"
        ) from None


async def run_rtp(
    settings: RtpSettings,
    client: KafkaClientConfig,
    topic: str,
    stop: asyncio.Event,
    *,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
    tuning: ProducerTuning | None = None,
    on_ready: Ready | None = None,
    metrics: IngestMetrics | None = None,
) -> ProduceStats:
    """Serve RTP on ``settings.ports`` until ``stop``; return what was produced."""
    await wait_for_broker(client, timeout_s=_BROKER_WAIT_S)  # before saying "listening"
    metrics = metrics or IngestMetrics()
    sink = FrameSink(metrics)
    ingest = RtpIngest(settings, metrics, sink.offer)
    bound = asyncio.Event()

    def ready(ports: list[int]) -> None:
        bound.set()
        if on_ready is not None:
            listed = ",".join(map(str, ports))
            on_ready(f"listening for RTP on udp {settings.host}:{listed} -> {topic}")

    serving = asyncio.ensure_future(serve_rtp(ingest, stop, on_ready=ready))
    waiting = asyncio.ensure_future(bound.wait())
    await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not bound.is_set():  # a port could not be bound: raise before any producer exists
        waiting.cancel()
        await serving
    sender = asyncio.create_task(sink.run(client, topic, tuning))  # frames queue meanwhile
    runner = await _metrics_site(metrics, metrics_host, metrics_port)
    try:
        return await _until_stopped(serving, sender, stop, sink)
    finally:
        if runner is not None:
            await runner.cleanup()


async def run_ws(
    settings: WsSettings,
    client: KafkaClientConfig,
    topic: str,
    stop: asyncio.Event,
    *,
    tuning: ProducerTuning | None = None,
    on_ready: Ready | None = None,
    metrics: IngestMetrics | None = None,
) -> ProduceStats:
    """Serve WebSocket media on ``settings.host:port`` until ``stop``."""
    await wait_for_broker(client, timeout_s=_BROKER_WAIT_S)
    metrics = metrics or IngestMetrics()
    sink = FrameSink(metrics)
    sender = asyncio.create_task(sink.run(client, topic, tuning))
    runner = web.AppRunner(
        build_app(settings, sink, metrics), access_log=None, shutdown_timeout=5.0
    )
    await runner.setup()

    async def serve() -> None:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        if on_ready is not None:
            on_ready(
                f"listening for WebSocket media on http://{settings.host}:{settings.port} "
                f"(/twilio, /pcm, /metrics) -> {topic}"
            )
        await stop.wait()

    async def serve_then_close() -> None:
        try:
            await serve()
        finally:
            await runner.cleanup()  # closes sockets: each session sends its EOS

    return await _until_stopped(serve_then_close(), sender, stop, sink)
