"""The worker's metrics: a batch observed at once reads as the same values observed one by one."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from stream.worker.metrics import WorkerMetrics, observe_many

_BUCKETS = (1, 2, 5, 10, 20, 50, 100)


def _samples(histogram: Histogram) -> dict[str, float]:
    [family] = histogram.collect()
    kept = [s for s in family.samples if not s.name.endswith("_created")]
    return {f"{s.name}{s.labels.get('le', '')}": s.value for s in kept}


def _histogram() -> Histogram:
    return Histogram("h_ms", "test", buckets=_BUCKETS, registry=CollectorRegistry())


values = st.lists(
    st.one_of(
        st.floats(min_value=-1e3, max_value=1e9),  # latencies (no overflow in the sum)
        st.sampled_from([0.0, 1.0, 2.0, 5.0, 100.0, 100.5, -1.0]),  # on and next to bounds
        st.sampled_from([math.nan, math.inf, -math.inf]),
    ),
    max_size=40,
)


@given(first=values, second=values)
def test_observe_many_gives_the_buckets_and_count_of_observe(
    first: list[float], second: list[float]
) -> None:
    one_by_one, batched = _histogram(), _histogram()
    for value in first + second:
        one_by_one.observe(value)
    observe_many(batched, first)
    observe_many(batched, second)
    expected, got = _samples(one_by_one), _samples(batched)
    total, got_total = expected.pop("h_ms_sum"), got.pop("h_ms_sum")
    assert got == expected
    if math.isnan(total):
        assert math.isnan(got_total)
    else:
        assert got_total == total or math.isclose(got_total, total, rel_tol=1e-9, abs_tol=1e-9)


def test_events_out_to_counts_under_the_topic_label() -> None:
    metrics = WorkerMetrics()
    metrics.events_out_to("labels").inc()
    metrics.events_out_to("labels").inc()
    metrics.events_out_to("summaries").inc()
    text = metrics.render()
    assert b'tympan_events_out_total{topic="labels"} 2.0' in text
    assert b'tympan_events_out_total{topic="summaries"} 1.0' in text


def test_uncommitted_of_sets_the_partitions_gauge() -> None:
    metrics = WorkerMetrics()
    metrics.uncommitted_of(3).set(7)
    metrics.uncommitted_of(3).set(5)
    metrics.uncommitted_of(0).set(1)
    text = metrics.render()
    assert b'tympan_uncommitted_records{partition="3"} 5.0' in text
    assert b'tympan_uncommitted_records{partition="0"} 1.0' in text
