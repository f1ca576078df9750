"""The deliverer's Prometheus metrics, per User (only Users registered with a
response_url get a series, so the label stays bounded: STYLE, "Prometheus metrics").

Counters are updated once per attempt or per finished answer (deliveries are network
round trips, not the hot path); the queue depth and the delivery lag are computed at scrape
time from the queues themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workers.runtime.metrics import CommonMetrics

__all__ = ["DELIVERY_LATENCY_BUCKETS_S", "DeliverMetrics", "QueueView"]

DELIVERY_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
)  # fmt: skip
"""From the decision (`at_ms`) to the endpoint's 2xx: milliseconds on a healthy endpoint,
up to the dead-letter deadline (an hour by default) behind a failing one."""

QueueView = Callable[[], Iterable[tuple[str, int, int | None]]]
"""Per User: (user id, answers queued, at_ms of the oldest queued answer or None)."""


class _QueueCollector(Collector):
    def __init__(self, view: QueueView, clock_ms: Callable[[], int]) -> None:
        self._view = view
        self._clock_ms = clock_ms

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, lag = self._families()
        now_ms = self._clock_ms()
        for user, queued, oldest_at_ms in self._view():
            depth.add_metric([user], queued)
            age_s = 0.0 if oldest_at_ms is None else max(0, now_ms - oldest_at_ms) / 1000
            lag.add_metric([user], age_s)
        yield depth
        yield lag

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "dccgate_delivery_queue_records",
                "Answers waiting to be delivered to the User's response_url, by user.",
                labels=["user"],
            ),
            GaugeMetricFamily(
                "dccgate_delivery_lag_seconds",
                "Age of the oldest answer not yet delivered to the User (now minus its "
                "decision time), by user; 0 when none waits.",
                labels=["user"],
            ),
        )


class DeliverMetrics:
    """Per-User delivery metrics on the shared registry."""

    def __init__(self, common: CommonMetrics) -> None:
        registry = common.registry
        self.common = common
        self._registry = registry
        self._attempts = Counter(
            "dccgate_delivery_attempts",
            "POSTs of an answer to the User's response_url, by user.",
            ["user"],
            registry=registry,
        )
        self._failures = Counter(
            "dccgate_delivery_failures",
            "Failed delivery attempts, by user and reason (http_status, redirect, timeout, "
            "tls, connection, invalid_url).",
            ["user", "reason"],
            registry=registry,
        )
        self._finished = Counter(
            "dccgate_delivery_responses",
            "Answers finished, by user and outcome: delivered (a 2xx), or deadlettered "
            "(undeliverable within DCCGATE_DELIVER_DEADLINE_S).",
            ["user", "outcome"],
            registry=registry,
        )
        self._skipped = Counter(
            "dccgate_delivery_skipped",
            "Answers not pushed, by reason: no_response_url (the User registered none) or "
            "unknown_user (not registered).",
            ["reason"],
            registry=registry,
        )
        self._latency = Histogram(
            "dccgate_delivery_latency_seconds",
            "From an answer's decision to its delivery (the endpoint's 2xx).",
            buckets=DELIVERY_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._children: dict[tuple[object, ...], Counter] = {}

    def watch_queues(self, view: QueueView) -> None:
        """Report queue depth and delivery lag from `view` at each scrape."""
        self._registry.register(_QueueCollector(view, lambda: time.time_ns() // 1_000_000))

    def _child(self, counter: Counter, *labels: str) -> Counter:
        key = (id(counter), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def attempted(self, user: str) -> None:
        """One POST made."""
        self._child(self._attempts, user).inc()

    def failed(self, user: str, reason: str) -> None:
        """One POST failed, for `reason` (a `sender.FailureKind`)."""
        self._child(self._failures, user, reason).inc()

    def delivered(self, user: str, latency_s: float) -> None:
        """One answer delivered, `latency_s` after its decision."""
        self._child(self._finished, user, "delivered").inc()
        self._latency.observe(max(0.0, latency_s))

    def deadlettered(self, user: str) -> None:
        """One answer given up on and dead-lettered."""
        self._child(self._finished, user, "deadlettered").inc()

    def skipped(self, reason: str, count: int = 1) -> None:
        """`count` answers not pushed, for `reason`."""
        self._child(self._skipped, reason).inc(count)
