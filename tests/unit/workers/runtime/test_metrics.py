from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from workers.runtime.metrics import BatchHistogram


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
