"""The alert worker's Prometheus metrics (docs/alerts.md lists them).

Counters are counted per batch in plain dicts and added here once the batch is acknowledged;
gauges are read at scrape time. Labels are bounded: `region` is a CSP region (`north`,
`central`, `south`) or `unknown` (on the regional-capacity metrics, the lane: a configured
region or `unlimited`), `alert_code` a code of `KNOWN_ALERT_CODES`, of the exclusion list or
of the high-priority set, else `other`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from workers.runtime.metrics import CommonMetrics

__all__ = ["DELAY_BUCKETS_S", "AlertMetrics", "CounterChildren", "LaneGauges", "RegionHistogram"]

# Regional delay: none while a region is under its capacity; seconds to minutes when a
# storm of a whole region's alerts (a power cut) is worked off at the region's rate.
DELAY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

# Per lane: (name, alerts waiting, seconds the oldest has waited).
LaneReader = Callable[[], Iterable[tuple[str, int, float]]]


class RegionHistogram(Collector):
    """A histogram with one label, `region`, that takes a batch of observations per call
    (a `Histogram.labels().observe()` per alert would cost more than the gate itself)."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = list(buckets)
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        registry.register(self)

    def observe_many(self, region: str, values: Iterable[float]) -> None:
        """Add each of `values` (seconds) for `region`."""
        counts = self._counts_of(region)
        bounds, total = self._bounds, 0.0
        for v in values:
            counts[bisect.bisect_left(bounds, v)] += 1
            total += v
        self._sums[region] += total

    def observe_zeros(self, region: str, n: int) -> None:
        """Add `n` observations of 0 for `region` (alerts that did not wait)."""
        self._counts_of(region)[0] += n

    def _counts_of(self, region: str) -> list[int]:
        counts = self._counts.get(region)
        if counts is None:
            counts = self._counts[region] = [0] * (len(self._bounds) + 1)
            self._sums[region] = 0.0
        return counts

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._doc, labels=["region"])
        for region, counts in sorted(self._counts.items()):
            cumulative, buckets = 0, []
            for bound, n in zip([*self._bounds, float("inf")], counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([region], buckets, self._sums[region])
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._doc, labels=["region"])


class CounterChildren:
    """The `.labels(...)` children of one labelled Counter, kept once made: `add` flushes a
    batch's counts with a dict look-up per label set instead of a `.labels()` call (which
    checks and joins its labels each time, ~2 µs: as much as 20 alerts' decisions when
    batches are small). Bounded as the Counter's own children are: the caller's labels
    are (STYLE.md, metrics)."""

    __slots__ = ("_children", "_counter")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[tuple[str, ...], Counter] = {}

    def add(self, counts: Iterable[tuple[tuple[str, ...], int]]) -> None:
        """Increment the child of each label tuple by its count."""
        children = self._children
        for labels, n in counts:
            child = children.get(labels)
            if child is None:
                child = children[labels] = self._counter.labels(*labels)
            child.inc(n)


class LaneGauges(Collector):
    """Regional queue depth and the oldest alert's wait, per lane, read at scrape time
    (lanes come and go with the configuration)."""

    def __init__(self, read: LaneReader, registry: CollectorRegistry) -> None:
        self._read = read
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "dccgate_alerts_regional_queued",
            "Alerts waiting for their CSP region's capacity, by lane (region or unlimited).",
            labels=["region"],
        )
        oldest = GaugeMetricFamily(
            "dccgate_alerts_regional_oldest_delay_seconds",
            "How long the longest-waiting alert of the lane has waited so far.",
            labels=["region"],
        )
        for name, waiting, delay_s in self._read():
            depth.add_metric([name], waiting)
            oldest.add_metric([name], delay_s)
        yield depth
        yield oldest

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("dccgate_alerts_regional_queued", "", labels=["region"])
        yield GaugeMetricFamily(
            "dccgate_alerts_regional_oldest_delay_seconds", "", labels=["region"]
        )


class AlertMetrics:
    """The alert worker's own metrics, on the shared registry."""

    def __init__(self, common: CommonMetrics) -> None:
        registry = common.registry
        self.common = common
        self.registry = registry
        self.received = Counter(
            "dccgate_alerts_received",
            "Device alerts decoded from dcc.alerts.inbound, by CSP region and alert code.",
            ["region", "alert_code"],
            registry=registry,
        )
        self.forwarded = Counter(
            "dccgate_alerts_forwarded",
            "Alert records written to dcc.alerts.outbound (one per recipient, storm copies "
            "included), by CSP region and alert code.",
            ["region", "alert_code"],
            registry=registry,
        )
        self.suppressed = Counter(
            "dccgate_alerts_suppressed",
            "Alerts suppressed by storm protection (SECMP0062), by alert code: counted at "
            "the period boundary that forwards the storm's copy with their number.",
            ["alert_code"],
            registry=registry,
        )
        self.active_storms = Gauge(
            "dccgate_alerts_active_storms",
            "(device, alert code) keys in a storm now.",
            registry=registry,
        )
        self.tracked_keys = Gauge(
            "dccgate_alerts_tracked_keys",
            "(device, alert code) keys held by storm protection (open windows and storms).",
            registry=registry,
        )
        self.exclusions = Gauge(
            "dccgate_alerts_exclusions",
            "Alert codes on the exclusion list (never throttled).",
            registry=registry,
        )
        self.exclusions_version = Gauge(
            "dccgate_alerts_exclusions_version",
            "Version of the alerts.exclusions control item in force (0: none configured).",
            registry=registry,
        )
        self.regional_delay = RegionHistogram(
            "dccgate_alerts_regional_delay_seconds",
            "Seconds an alert waited before going out under regional capacity (MP102 hold "
            "included), by lane (region or unlimited).",
            DELAY_BUCKETS_S,
            registry,
        )
        self.held = Gauge(
            "dccgate_alerts_held",
            "Forwarded alerts not yet written (MP102 hold, regional queues): the loop "
            "commits no input offset past the oldest of them.",
            registry=registry,
        )
        self.input_paused = Gauge(
            "dccgate_alerts_input_paused",
            "1 while a full regional queue pauses the input (backpressure), else 0.",
            registry=registry,
        )
        self.mp102_held = Gauge(
            "dccgate_alerts_mp102_held",
            "Power-outage alerts held by the MP102 rule now.",
            registry=registry,
        )
        self.mp102_watched = Gauge(
            "dccgate_alerts_mp102_watched_devices",
            "Devices sent an 11.3 Activate Firmware within the MP102 rule's watch time.",
            registry=registry,
        )
        self.mp102_dropped = Counter(
            "dccgate_alerts_mp102_dropped",
            "Power-outage alerts dropped by the MP102 rule: their restore alert followed.",
            registry=registry,
        )
        self.mp102_released = Counter(
            "dccgate_alerts_mp102_released",
            "Power-outage alerts held by the MP102 rule and forwarded when the hold ended.",
            registry=registry,
        )
        self.firmware_activations = Counter(
            "dccgate_alerts_firmware_activations",
            "11.3 Activate Firmware requests seen on dcc.sr.outbound by the MP102 rule.",
            registry=registry,
        )
        self.state_records = Counter(
            "dccgate_alerts_state_records",
            "Storm snapshots and tombstones written to dcc.state.alerts.",
            registry=registry,
        )
        self.storms_restored = Counter(
            "dccgate_alerts_storms_restored",
            "Running storms restored from dcc.state.alerts on partition assignment.",
            registry=registry,
        )
