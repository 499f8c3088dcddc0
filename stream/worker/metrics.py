"""Prometheus metrics of one worker, in a registry of its own.

Served as text at ``/metrics`` on the worker's web port (127.0.0.1 by default). A
registry per :class:`WorkerMetrics` rather than prometheus_client's global one, so
two workers in one process (tests) do not collide.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class WorkerMetrics:
    """Every metric the worker exports; names start with ``tympan_``."""

    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.frames_in = Counter("tympan_frames_in", "Audio records consumed", registry=r)
        self.windows = Counter("tympan_windows", "Model windows inferred", registry=r)
        self.events_out = Counter("tympan_events_out", "Events produced", ["topic"], registry=r)
        self.dead_letters = Counter(
            "tympan_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "tympan_batch_size", "Windows per onnxruntime call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.inference_ms = Histogram(
            "tympan_inference_ms",
            "Milliseconds per onnxruntime call",
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.latency_ms = Histogram(
            "tympan_processing_latency_ms",
            "Window complete (last frame received) to label event produced",
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.e2e_latency_ms = Histogram(
            "tympan_end_to_end_latency_ms",
            "Capture time of a window's end to its label event produced (producer clocks)",
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge("tympan_active_streams", "Open streams", registry=r)
        self.queued_windows = Gauge(
            "tympan_queued_windows", "Windows waiting for inference", registry=r
        )
        self.uncommitted = Gauge(
            "tympan_uncommitted_records",
            "Consumed records not yet acked (held by open streams), per partition",
            ["partition"],
            registry=r,
        )
        self.lag = Gauge(
            "tympan_consumer_lag", "Records behind the partition end", ["partition"], registry=r
        )
        self.muted = Counter(
            "tympan_muted_outputs",
            "Exactly-once: replayed outputs not sent because a committed transaction held them",
            registry=r,
        )
        self._events_out: dict[str, Counter] = {}
        self._uncommitted: dict[int, Gauge] = {}

    # ``labels()`` validates and joins its arguments at every call (2.6 µs); these are
    # called per event sent and per partition per fetched batch, and the child a label
    # value gets is the same each time, so it is looked up once.
    def events_out_to(self, topic: str) -> Counter:
        """``events_out`` of ``topic``."""
        child = self._events_out.get(topic)
        if child is None:
            child = self._events_out[topic] = self.events_out.labels(topic)
        return child

    def uncommitted_of(self, partition: int) -> Gauge:
        """``uncommitted`` of ``partition``."""
        child = self._uncommitted.get(partition)
        if child is None:
            child = self._uncommitted[partition] = self.uncommitted.labels(str(partition))
        return child

    def observe_batch(self, size: int, inference_ms: float) -> None:
        self.batch_size.observe(size)
        self.inference_ms.observe(inference_ms)
        self.windows.inc(size)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe each of ``values``: the buckets and count ``histogram.observe`` would
    give one by one, the sum up to float rounding.

    Why: ``observe`` takes a lock for the sum and one for a bucket, and scans the
    bucket bounds, per value (3.3 µs; the runtime observes two latencies per label
    event); here a batch's values cost one bisect each and a lock per bucket hit.
    It reads prometheus_client's ``_upper_bounds``, ``_buckets`` and ``_sum`` (the
    fields ``observe`` itself uses); ``tests/unit/stream/worker/test_worker_metrics.py``
    checks the result against ``observe``.
    """
    if not values:
        return
    bounds = histogram._upper_bounds  # ends with +inf
    hits: dict[int, int] = {}
    for value in values:
        if value <= bounds[-1]:  # observe() counts NaN in the sum only
            i = bisect_left(bounds, value)
            hits[i] = hits.get(i, 0) + 1
    for i, n in hits.items():
        histogram._buckets[i].inc(n)
    histogram._sum.inc(sum(values))
