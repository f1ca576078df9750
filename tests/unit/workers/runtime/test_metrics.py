from __future__ import annotations

import bisect
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from adt import QuarantineBook
from workers.admin.quarantine_metrics import QuarantineMetrics
from workers.alerts.metrics import AlertMetrics
from workers.router.processor import RouterMetrics
from workers.router.traffic import TrafficControl, TrafficMetrics
from workers.runtime.metrics import LATENCY_BUCKETS_S, BatchHistogram, CommonMetrics


def test_batch_histogram_exposes_cumulative_buckets() -> None:
    registry = CollectorRegistry()
    h = BatchHistogram("t_latency_seconds", "doc", (0.1, 1.0), registry)
    h.observe_many([0.05, 0.1, 0.5, 2.0])
    text = generate_latest(registry).decode()
    assert 't_latency_seconds_bucket{le="0.1"} 2.0' in text
    assert 't_latency_seconds_bucket{le="1.0"} 3.0' in text
    assert 't_latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert "t_latency_seconds_count 4.0" in text
    assert "t_latency_seconds_sum 2.65" in text
    assert h.count == 4


def test_ages_in_ms_fall_in_the_same_buckets_as_seconds() -> None:
    registry = CollectorRegistry()
    h = BatchHistogram("t_age_seconds", "doc", (0.1, 1.0), registry)
    h.observe_ages_ms(10_000, [9_950, 9_900, 9_500, 8_000, 10_100])
    text = generate_latest(registry).decode()
    assert 't_age_seconds_bucket{le="0.1"} 3.0' in text  # 50 ms, 100 ms, and -100 ms as 0
    assert 't_age_seconds_bucket{le="1.0"} 4.0' in text
    assert "t_age_seconds_sum 2.65" in text


def _types(page: str) -> list[str]:
    return [line.split()[2] for line in page.splitlines() if line.startswith("# TYPE ")]


def test_common_metrics_export_process_and_gc_metrics_once() -> None:
    registry = CollectorRegistry()
    CommonMetrics(registry, version="t")
    types = _types(generate_latest(registry).decode())
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "python_gc_collections_total",
        "dccgate_consumer_lag_records",
    ):
        assert types.count(name) == 1, name


def test_services_sharing_one_registry_export_each_family_once() -> None:
    # `dccgate run`: the router, the alert worker and the admin process on one registry.
    registry = CollectorRegistry()
    common = CommonMetrics(registry, version="t")
    RouterMetrics(common, TrafficMetrics(registry, TrafficControl("p")))
    AlertMetrics(common)
    QuarantineMetrics(registry, QuarantineBook(), time.time)
    types = _types(generate_latest(registry).decode())
    assert len(types) == len(set(types)), sorted(t for t in types if types.count(t) > 1)
    # A second CommonMetrics on the same registry is refused before it adds a second copy
    # of the process collectors (which declare no names the registry could check).
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CommonMetrics(registry, version="t")
    again = _types(generate_latest(registry).decode())
    assert again.count("process_cpu_seconds_total") == 1


def _ages_one_by_one(h: BatchHistogram, now_ms: int, timestamps_ms: list[int]) -> None:
    """The straightforward way: each age clamped at 0 and put in its bucket on its own."""
    for ts in timestamps_ms:
        age = max(0, now_ms - ts)
        h._counts[bisect.bisect_left(h._bounds_ms, age)] += 1
        h._sum += age / 1000


@settings(max_examples=300, deadline=None)
@given(
    now_ms=st.integers(0, 10**13),
    offsets_ms=st.lists(st.integers(-5_000, 100_000), max_size=60),
    batches=st.integers(1, 3),
)
def test_ages_are_counted_as_one_by_one(now_ms: int, offsets_ms: list[int], batches: int) -> None:
    fast = BatchHistogram("t_fast_seconds", "doc", LATENCY_BUCKETS_S, CollectorRegistry())
    slow = BatchHistogram("t_slow_seconds", "doc", LATENCY_BUCKETS_S, CollectorRegistry())
    for _ in range(batches):
        timestamps = [now_ms - o for o in offsets_ms]
        fast.observe_ages_ms(now_ms, iter(timestamps))
        _ages_one_by_one(slow, now_ms, timestamps)
    assert fast._counts == slow._counts
    assert fast._sum == pytest.approx(slow._sum, rel=1e-12, abs=1e-9)
