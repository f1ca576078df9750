"""Prometheus metrics shared by the services, declared on an injectable registry.

The hot path never calls `.labels(...).inc()` per record: services count into plain ints
during a batch and add them here once per batch. `BatchHistogram` takes many observations
per call for the same reason, and `ConsumerLag` is computed when Prometheus scrapes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from workers.runtime.supervise import SideTasks

__all__ = ["BatchHistogram", "CommonMetrics", "ConsumerLag", "LagSource"]

# End-to-end forward latency: sub-millisecond on Apache Kafka, tens of ms on the embedded
# broker (its fetch is not woken by new data), seconds when a backlog is being worked off.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
BATCH_DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class BatchHistogram(Collector):
    """A label-less histogram that takes a whole batch of observations in one call.

    prometheus_client's Histogram costs about a microsecond per `observe()`; this one
    costs a `bisect` per value and nothing per scrape beyond a copy.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = list(buckets)
        # The bounds in ms, for observe_ages_ms: age <= bound s  <=>  age_ms <= bound*1000.
        self._bounds_ms = [b * 1000 for b in self._bounds]
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        """Add each of `values` (in base units)."""
        counts, bounds, total = self._counts, self._bounds, 0.0
        for v in values:
            counts[bisect.bisect_left(bounds, v)] += 1
            total += v
        self._sum += total

    def observe_ages_ms(self, now_ms: int, timestamps_ms: Iterable[int]) -> None:
        """Add `now_ms - t` in seconds for each t of `timestamps_ms` (a clock running
        backwards counts as 0). This runs once per forwarded request: the ages are sorted
        (in C, and a partition's timestamps come in runs timsort takes whole) and each
        bucket is counted with one bisect, about 3x cheaper than a bisect per age
        (docs/benchmarks.md); integer arithmetic, so the sum is exact."""
        ages = [now_ms - ts for ts in timestamps_ms]
        if not ages:
            return
        ages.sort()
        counts = self._counts
        below = 0
        for i, bound_ms in enumerate(self._bounds_ms):  # age <= bound, as Prometheus' "le"
            upto = bisect.bisect_right(ages, bound_ms)
            counts[i] += upto - below
            below = upto
        counts[-1] += len(ages) - below
        negative = bisect.bisect_left(ages, 0)  # counted as 0: in the first bucket, no sum
        self._sum += (sum(ages) - sum(ages[:negative])) / 1000

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self._counts)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, n in zip([*self._bounds, float("inf")], self._counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family = HistogramMetricFamily(self._name, self._doc)
        family.add_metric([], buckets, self._sum)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._doc)


LagSource = Callable[[], Iterable[tuple[str, int, int]]]
"""A service's lag at this moment: (topic, partition, records behind) per partition."""


class ConsumerLag(Collector):
    """`dccgate_consumer_lag_records{service,topic,partition}`, computed at scrape time.

    Each service loop registers a `LagSource` (`track`); a scrape asks each for its
    partitions' lag, so nothing is done per batch or per record. One collector per registry
    serves every service that shares it (`dccgate run`), so the family is exported once.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._sources: dict[str, LagSource] = {}
        registry.register(self)

    def track(self, service: str, source: LagSource) -> None:
        """Report `source`'s partitions under `service` (replaces an earlier source)."""
        self._sources[service] = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for service, source in self._sources.items():
            for topic, partition, lag in source():
                family.add_metric([service, topic, str(partition)], lag)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "dccgate_consumer_lag_records",
            "Records in an input partition after the latest batch this worker decided, by "
            "the high watermark of its latest fetch; by service, topic and partition.",
            labels=["service", "topic", "partition"],
        )


class CommonMetrics:
    """Metrics every consume-process-produce service reports."""

    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        self.registry = registry
        self.side_tasks = SideTasks(registry)
        """The process's side tasks and their problems (`/healthz` shows them)."""
        Info("dccgate_build", "dccgate version", registry=registry).info({"version": version})
        self.consumed = Counter(
            "dccgate_records_consumed",
            "Records consumed, by service and topic.",
            ["service", "topic"],
            registry=registry,
        )
        self.produced = Counter(
            "dccgate_records_produced",
            "Records produced and acknowledged, by service and topic.",
            ["service", "topic"],
            registry=registry,
        )
        self.deadlettered = Counter(
            "dccgate_deadletter_records",
            "Records sent to the dead-letter topic, by service and reason.",
            ["service", "reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "dccgate_batch_size_records",
            "Input records per processed batch.",
            ["service"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            "dccgate_batch_duration_seconds",
            "Time from a batch's arrival to the commit of its offsets.",
            ["service"],
            buckets=BATCH_DURATION_BUCKETS_S,
            registry=registry,
        )
        self.assigned = Gauge(
            "dccgate_assigned_partitions",
            "Input partitions assigned to this worker.",
            ["service"],
            registry=registry,
        )
        self.lag = ConsumerLag(registry)
        """Consumer lag per input partition; each `ServiceLoop` registers its source."""
        # Process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
        # process_open_fds, ...) and the garbage collector's (python_gc_*): the standard
        # names, once per registry. They declare no names to the registry, so it would not
        # refuse a second copy; registering them after `dccgate_build` (which it would
        # refuse) keeps a second CommonMetrics on one registry from adding one.
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
