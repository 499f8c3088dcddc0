"""Prometheus metrics of one ``tympan ingest`` process (names start ``tympan_ingest_``).

The per-packet counts live in plain integers on each stream (:class:`StreamCounts`)
and are summed only when Prometheus scrapes, so the hot path pays an integer add
rather than a locked counter per packet. Served at ``/metrics`` on the ingest's web
port (127.0.0.1 by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.ingest.jitter import StreamCounts

_MS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000)

_HELP = {
    "packets": "RTP packets (or WebSocket media messages) received for a stream",
    "payload_bytes": "Media payload bytes received",
    "lost": "RTP packets given up as lost by the jitter buffer",
    "duplicates": "RTP packets received twice (dropped)",
    "late": "RTP packets that came after their frame had gone (dropped)",
    "reordered": "RTP packets that came before an earlier sequence number",
    "out_of_range": "RTP packets whose sequence number jumped too far (dropped)",
    "other_payload": "RTP packets of another payload type in a stream (DTMF, comfort noise)",
    "frames": "Audio frames produced",
    "frames_skipped": "Frames not sent because of loss or no packets (a gap the worker fills)",
}


@dataclass
class LiveStreams:
    """What the scrape reads: counts of closed streams plus those of the open ones."""

    closed: StreamCounts = field(default_factory=StreamCounts)
    open_counts: Callable[[], Iterable[StreamCounts]] = lambda: ()
    open_jitter_ms: Callable[[], Iterable[float]] = lambda: ()


class _StreamCollector(Collector):
    def __init__(self, live: LiveStreams) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        total = StreamCounts()
        total.add(self._live.closed)
        for counts in self._live.open_counts():
            total.add(counts)
        for f in fields(StreamCounts):
            family = CounterMetricFamily(f"tympan_ingest_{f.name}", _HELP[f.name])
            family.add_metric([], getattr(total, f.name))
            yield family
        jitter = list(self._live.open_jitter_ms())
        gauge = GaugeMetricFamily(
            "tympan_ingest_jitter_ms", "Largest RFC 3550 interarrival jitter of the open streams"
        )
        gauge.add_metric([], max(jitter, default=0.0))
        yield gauge


@dataclass
class IngestMetrics:
    """Every metric of the ingest process, in a registry of its own (tests run several)."""

    live: LiveStreams = field(default_factory=LiveStreams)
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry())

    def __post_init__(self) -> None:
        r = self.registry
        r.register(_StreamCollector(self.live))
        self.malformed = Counter(
            "tympan_ingest_malformed",
            "Datagrams or messages dropped as malformed, by reason",
            ["reason"],
            registry=r,
        )
        self.active_streams = Gauge("tympan_ingest_active_streams", "Open streams", registry=r)
        self.streams_started = Counter(
            "tympan_ingest_streams_started", "Streams opened", ["protocol"], registry=r
        )
        self.streams_ended = Counter(
            "tympan_ingest_streams_ended",
            "Streams closed, by why (bye, idle, stop, closed, shutdown, refused, evicted, error)",
            ["why"],
            registry=r,
        )
        self.errors = Counter(
            "tympan_ingest_errors",
            "Unexpected exceptions contained to one call, message or datagram (a bug or an "
            "input nobody foresaw; the log has the traceback), by protocol",
            ["protocol"],
            registry=r,
        )
        self.rtcp = Counter(
            "tympan_ingest_rtcp", "RTCP datagrams read (with or without a BYE)", registry=r
        )
        self.frames_dropped = Counter(
            "tympan_ingest_frames_dropped",
            "Frames dropped because the producer queue was full (RTP cannot wait)",
            registry=r,
        )
        self.frames_undelivered = Counter(
            "tympan_ingest_frames_undelivered",
            "Frames no broker acknowledged within the delivery timeout, or still queued "
            "when the producer gave up (each stream is named in the log)",
            registry=r,
        )
        self.added_latency_ms = Histogram(
            "tympan_ingest_added_latency_ms",
            "From the packet or message that completed a frame to the frame's hand-over "
            "to the Kafka producer (queueing, encoding; the jitter buffer's wait on loss)",
            buckets=_MS_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
