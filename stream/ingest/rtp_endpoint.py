"""``tympan ingest rtp``: UDP datagrams in, one :class:`RtpStream` per call leg, frames out.

:class:`RtpIngest` is the synchronous core (datagram → packet → stream → frames),
driven by :class:`_RtpProtocol` (one asyncio datagram endpoint per port) and by a
ticker that releases held packets and ends idle streams. A stream is one SSRC from
one source (local port, remote host and port); its id comes from a
:class:`StreamIdTemplate`. An RTCP BYE (on any of the ports, RFC 5761 mux included)
ends every stream of that SSRC from that host: streams are indexed by (SSRC, host),
so a BYE costs a lookup per SSRC it names (at most ``rtp.MAX_BYE_SSRCS``), never a
scan of the open streams.

Every datagram is untrusted: a malformed one, an unknown payload type or a new
stream that :class:`~stream.ingest.admission.Admission` turns away is counted by
reason and logged (rate-limited), never raised. Any other exception raised while a
datagram is handled is contained: to its stream when it has one (the stream ends,
``streams_ended{why="error"}``), else to the datagram; both count
``tympan_ingest_errors_total{protocol="rtp"}`` and log the traceback. State is
bounded: ``max_streams`` streams (``max_streams_per_source`` per remote host),
``max_packets`` held per stream, one frame buffer per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.errors import ConfigError
from stream.ingest.admission import Admission, AdmissionPolicy
from stream.ingest.errors import PacketError
from stream.ingest.jitter import JitterPolicy, RtpStream
from stream.ingest.metrics import IngestMetrics
from stream.ingest.payloads import PCMA, PCMU, PT_PCMA, PT_PCMU, PayloadFormat
from stream.ingest.rtp import RtpPacket, is_rtcp, parse_rtp, rtcp_bye_ssrcs
from stream.ingest.streamid import (
    DEFAULT_RTP_TEMPLATE,
    RTP_FIELDS,
    StreamIdTemplate,
    checked_stream_id,
)
from stream.produce.frames import now_us
from stream.wire.frame import AudioFrame, new_instance

log = logging.getLogger(__name__)

StreamKey = tuple[int, int, str, int]  # ssrc, local port, remote host, remote port
MAX_PAYLOAD_BYTES = 4096  # 20 ms of 48 kHz stereo L16 is 3840
Emit = Callable[[AudioFrame], object]
_LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class RtpSettings:
    """Everything ``tympan ingest rtp`` was asked to do (built by ``stream/cli/ingest.py``).

    Attributes
    ----------
    host: address to bind (loopback by default).
    ports: UDP ports to bind; each takes RTP and RTCP.
    formats: payload type → format (0, 8 and each ``--l16``).
    policy: jitter buffer and frame length.
    stream_id_template: see ``docs/ingest.md`` (fields ``ssrc``, ``port``, ``remote_host``,
        ``remote_port``).
    idle_timeout_s: a stream without packets for this long ends (EOS).
    max_streams: open streams at most (see :mod:`~stream.ingest.admission`).
    max_streams_per_source: open streams one remote host may hold.
    tick_ms: how often held packets and idle streams are looked at.
    """

    host: str = "127.0.0.1"
    ports: tuple[int, ...] = (40000,)
    formats: Mapping[int, PayloadFormat] = field(
        default_factory=lambda: {PT_PCMU: PCMU, PT_PCMA: PCMA}
    )
    policy: JitterPolicy = field(default_factory=JitterPolicy)
    stream_id_template: str = DEFAULT_RTP_TEMPLATE
    idle_timeout_s: float = 5.0
    max_streams: int = 2000
    max_streams_per_source: int = 1000
    tick_ms: float = 20.0

    def __post_init__(self) -> None:
        if not self.ports or not all(0 <= p < 65536 for p in self.ports):
            raise ConfigError(f"ports {self.ports!r} must be 0..65535 (0: any free port)")
        if self.idle_timeout_s <= 0:
            raise ConfigError(f"idle_timeout_s {self.idle_timeout_s} must be positive")
        self.admission  # noqa: B018 - checks the limits
        StreamIdTemplate.parse(self.stream_id_template, RTP_FIELDS)

    @property
    def admission(self) -> AdmissionPolicy:
        """The stream table's limits."""
        return AdmissionPolicy(
            max_streams=self.max_streams, max_per_source=self.max_streams_per_source
        )


def parse_listen(spec: str) -> tuple[str, tuple[int, ...]]:
    """``HOST:PORT`` or ``HOST:FIRST-LAST`` → ``(host, ports)``.

    A single port also binds ``PORT+1``, where RFC 3550 senders (ffmpeg) send RTCP,
    so that their BYE is seen; a range binds exactly its ports.

    Raises
    ------
    ConfigError
        Not ``HOST:PORT[-PORT]``, a port outside 1..65535, or a range over 1024 ports.
    """
    host, sep, ports = spec.rpartition(":")
    first, dash, last = ports.partition("-")
    if not sep or not host or not first.isdigit() or (dash and not last.isdigit()):
        raise ConfigError(f"--listen {spec!r} is not HOST:PORT or HOST:FIRST-LAST")
    lo = int(first)
    hi = int(last) if dash else min(lo + 1, 65535)
    if not 0 < lo <= hi < 65536 or hi - lo >= 1024:
        raise ConfigError(f"--listen {spec!r}: ports must be 1..65535, at most 1024 of them")
    return host.strip("[]"), tuple(range(lo, hi + 1))


class RtpIngest:
    """Datagrams → streams → frames, synchronously (``emit`` takes each frame).

    ``emit`` may raise :class:`PacketError` for a frame that cannot go on the wire
    (:meth:`FrameSink.offer`): that stream ends (``refused``), the others go on.
    """

    def __init__(self, settings: RtpSettings, metrics: IngestMetrics, emit: Emit) -> None:
        self.settings = settings
        self.metrics = metrics
        self._emit = emit
        self._template = StreamIdTemplate.parse(settings.stream_id_template, RTP_FIELDS)
        self.streams: dict[StreamKey, RtpStream] = {}
        self.admission: Admission[StreamKey] = Admission(settings.admission)
        self._by_ssrc: dict[tuple[int, str], set[StreamKey]] = {}  # (ssrc, host) -> keys
        self._ids: set[str] = set()  # stream ids of the open streams
        self._last_log: dict[str, float] = {}
        self.bound_ports: list[int] = []
        self._ended: dict[StreamKey, tuple[int, int]] = {}  # key -> (ended at, times opened)
        self._opened: dict[StreamKey, int] = {}  # open key -> times opened
        metrics.live.open_counts = lambda: [s.counts for s in self.streams.values()]
        metrics.live.open_jitter_ms = lambda: [s.jitter_ms for s in self.streams.values()]

    def datagram(
        self, data: bytes, remote: tuple[str, int], local_port: int, arrival_us: int
    ) -> None:
        """Take one datagram; a bad one is counted and logged, never raised."""
        try:
            if is_rtcp(data):
                self._rtcp(data, remote)
            else:
                self._rtp(data, remote, local_port, arrival_us)
        except PacketError as exc:
            self._refuse(exc.reason, f"datagram from {remote[0]}:{remote[1]}: {exc.detail}")
        except Exception as exc:  # a case nobody foresaw: this datagram only
            self._contained(exc, f"datagram of {len(data)} bytes from {remote[0]}:{remote[1]}")

    def _rtp(self, data: bytes, remote: tuple[str, int], local_port: int, arrival: int) -> None:
        packet = parse_rtp(data)
        if len(packet.payload) > MAX_PAYLOAD_BYTES:
            raise PacketError(
                "too_large", f"RTP payload of {len(packet.payload)} bytes > {MAX_PAYLOAD_BYTES}"
            )
        key = (packet.ssrc, local_port, remote[0], remote[1])
        stream = self.streams.get(key)
        if stream is None:
            self._open(packet, key, arrival)
            return
        if self.admission.heard(key, arrival):
            log.info("stream %r established (%s:%d on port %d)", stream.stream_id, *key[2:], key[1])
        self._drive(key, lambda: stream.push(packet, arrival))

    def _open(self, packet: RtpPacket, key: StreamKey, arrival: int) -> None:
        ssrc, local_port, host, port = key
        ended_at, opened = self._ended.get(key, (0, 0))
        if opened and arrival - ended_at < self.settings.idle_timeout_s * 1e6:
            raise PacketError("after_end", f"SSRC {ssrc:08x}: packet after its stream ended")
        fmt = self.settings.formats.get(packet.payload_type)
        if fmt is None:
            raise PacketError(
                "unknown_payload_type",
                f"payload type {packet.payload_type} is not 0 (PCMU), 8 (PCMA) or an --l16 one",
            )
        what = f"SSRC {ssrc:08x} from {host}:{port} on port {local_port}"
        values = {"ssrc": ssrc, "port": local_port, "remote_host": host, "remote_port": port}
        stream_id = self._template.render(values) if opened else self._template.name(values, what)
        if opened:  # the same leg again after its end: a new key, the old one has its EOS
            stream_id = checked_stream_id(f"{stream_id}-{opened + 1}", what)
        if stream_id in self._ids:  # another source's stream has this id (the template
            raise PacketError(  # names neither host nor port): never mix two on one key
                "stream_in_use", f"{what}: stream id {stream_id!r} is already open"
            )
        try:
            victim = self.admission.victim(host, what)
        except PacketError:
            self.metrics.streams_ended.labels("refused").inc()
            raise
        if victim is not None:
            self._end(victim, "evicted")
        stream, frames = RtpStream.start(
            packet,
            stream_id=stream_id,
            fmt=fmt,
            policy=self.settings.policy,
            arrival_us=arrival,
            instance=new_instance(),  # a stream id used again is a new stream
        )
        self._ended.pop(key, None)
        self._opened[key] = opened + 1
        self.streams[key] = stream
        self._ids.add(stream_id)
        self._by_ssrc.setdefault((ssrc, host), set()).add(key)
        self.admission.opened(key, host, arrival)
        self.metrics.streams_started.labels("rtp").inc()
        self.metrics.active_streams.set(len(self.streams))
        log.debug(
            "stream %r: %s from %s:%d on port %d", stream_id, fmt.name, host, port, local_port
        )
        self._drive(key, lambda: frames)

    def _rtcp(self, data: bytes, remote: tuple[str, int]) -> None:
        byes = rtcp_bye_ssrcs(data)
        self.metrics.rtcp.inc()
        for ssrc in byes:  # at most rtp.MAX_BYE_SSRCS
            for key in list(self._by_ssrc.get((ssrc, remote[0]), ())):
                self._end(key, "bye")

    def tick(self, now: int) -> None:
        """Release packets held too long; end streams idle for ``idle_timeout_s``."""
        idle_us = self.settings.idle_timeout_s * 1e6
        for key, stream in list(self.streams.items()):
            if now - stream.last_arrival_us >= idle_us:
                self._end(key, "idle")
            elif stream.held:
                self._drive(key, lambda s=stream: s.tick(now))  # type: ignore[misc]

    def close_all(self, why: str = "shutdown") -> None:
        """End every open stream (EOS frames), e.g. at shutdown."""
        for key in list(self.streams):
            self._end(key, why)

    def _drive(self, key: StreamKey, step: Callable[[], Sequence[AudioFrame]]) -> None:
        """Run one step of stream ``key`` and send its frames; a failure ends that stream."""
        try:
            for frame in step():
                self._emit(frame)
        except PacketError as exc:  # a frame the wire format refuses
            self._refuse(exc.reason, f"{self._name(key)}: {exc.detail}")
            self._end(key, "refused")
        except Exception as exc:
            self._contained(exc, self._name(key))
            self._end(key, "error")

    def _name(self, key: StreamKey) -> str:
        stream = self.streams.get(key)
        return f"stream {stream.stream_id!r}" if stream is not None else f"stream {key!r}"

    def _end(self, key: StreamKey, why: str) -> None:
        stream = self.streams.pop(key, None)
        if stream is None:
            return
        ssrc, _, host, _ = key
        keys = self._by_ssrc.get((ssrc, host))
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_ssrc[(ssrc, host)]
        self.admission.closed(key)
        self._ids.discard(stream.stream_id)
        self._ended[key] = (stream.last_arrival_us, self._opened.pop(key, 1))
        if len(self._ended) > 4 * self.settings.max_streams:  # bounded: forget the oldest
            del self._ended[next(iter(self._ended))]
        try:
            # A call evicted before it sent a frame is unknown downstream: nothing to end
            # (and a flood that churns the table costs the audio topic nothing).
            silent = why == "evicted" and not stream.counts.frames
            for frame in () if silent else stream.close():
                self._emit(frame)
        except Exception as exc:  # its EOS is lost; the worker ends it by its idle timeout
            self._contained(exc, f"stream {stream.stream_id!r} while ending ({why})")
        self.metrics.live.closed.add(stream.counts)
        self.metrics.streams_ended.labels(why).inc()
        self.metrics.active_streams.set(len(self.streams))
        c = stream.counts
        log.log(
            logging.DEBUG if why == "evicted" else logging.INFO,
            "stream %r ended (%s): %d packets, %d lost, %d frames, jitter %.1f ms",
            stream.stream_id,
            why,
            c.packets,
            c.lost,
            c.frames,
            stream.jitter_ms,
        )

    def _refuse(self, reason: str, message: str) -> None:
        self.metrics.malformed.labels(reason).inc()
        now = time.monotonic()
        if now - self._last_log.get(reason, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._last_log[reason] = now
            log.warning("dropped (%s): %s (logged once per %.0f s)", reason, message, _LOG_EVERY_S)

    def _contained(self, exc: Exception, what: str) -> None:
        self.metrics.errors.labels("rtp").inc()
        now = time.monotonic()
        if now - self._last_log.get("error", -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._last_log["error"] = now
            log.error(
                "unexpected %s in %s, contained to it (logged once per %.0f s)",
                type(exc).__name__,
                what,
                _LOG_EVERY_S,
                exc_info=exc,
            )


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, ingest: RtpIngest, port: int) -> None:
        self._ingest = ingest
        self._port = port

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        remote = (str(addr[0]), int(addr[1]))
        self._ingest.datagram(data, remote, self._port, now_us())

    def error_received(self, exc: Exception) -> None:
        log.warning("UDP port %d: %r", self._port, exc)


_RCVBUF_BYTES = 4 << 20


def _widen_receive_buffer(transport: asyncio.DatagramTransport) -> None:
    """Ask for a 4 MiB receive buffer (the kernel caps it at ``net.core.rmem_max``), so a
    short stall of the event loop does not drop the datagrams of many calls on one port."""
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)


async def serve_rtp(
    ingest: RtpIngest,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[list[int]], object] | None = None,
) -> list[int]:
    """Bind every port, run until ``stop`` is set, then end every stream.

    Returns the bound ports (port 0 asks the system for a free one: tests), which
    ``on_ready`` also gets once all are bound.

    Raises
    ------
    ConfigError
        A port cannot be bound (in use, not permitted); the message names it.
    """
    loop = asyncio.get_running_loop()
    transports: list[asyncio.DatagramTransport] = []
    bound: list[int] = []
    try:
        for port in ingest.settings.ports:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda p=port: _RtpProtocol(ingest, p),  # type: ignore[misc]
                    local_addr=(ingest.settings.host, port),
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot bind UDP {ingest.settings.host}:{port}: {exc.strerror or exc}"
                ) from exc
            transports.append(transport)
            _widen_receive_buffer(transport)
            actual = transport.get_extra_info("sockname")[1]
            bound.append(actual)
            if actual != port:  # port 0: the protocol must know the real one
                transport.set_protocol(_RtpProtocol(ingest, actual))
        ingest.bound_ports = bound
        if on_ready is not None:
            on_ready(bound)
        tick_s = ingest.settings.tick_ms / 1000
        while not stop.is_set():
            await asyncio.sleep(tick_s)
            ingest.tick(now_us())
    finally:
        for transport in transports:
            transport.close()
        ingest.close_all()
    return bound
