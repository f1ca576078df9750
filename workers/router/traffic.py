"""Traffic management (SECMP0067) in the router: the configuration and the metrics.

The decisions are `throttling.traffic.TrafficManager`'s (pure); this module feeds it the
policy and allocations from `dcc.control` and exports what operators watch. The system load
comes from the other routers through `workers.router.load_exchange`.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from throttling import (
    Allocation,
    TrafficManager,
    TrafficPolicy,
)
from throttling.forecast_allocation import allocation_from_forecast
from workers.config.forecasts import forecasts_of_month
from workers.config.model import Traffic
from workers.config.months import month_of_s
from workers.config.snapshot import ConfigSnapshot

__all__ = [
    "TrafficControl",
    "TrafficMetrics",
    "policy_from_config",
]

log = logging.getLogger(__name__)

# "No allocation and no default" means never throttled: an allocation no User reaches.
_UNLIMITED = Allocation(rate_per_s=1e12, burst=1_000_000)

# Episodes of traffic management: SECMP0067 expects "low numbers of seconds" (the TABASC);
# an episode lasts at least the hold time (1 s by default), and the sustained-management
# alert fires at 5 minutes.
EPISODE_BUCKETS_S: tuple[float, ...] = (
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip


def policy_from_config(traffic: Traffic) -> TrafficPolicy:
    """The pure policy for the `traffic` item of the configuration."""
    default = traffic.default_allocation
    return TrafficPolicy(
        capacity_per_s=traffic.capacity_per_s,
        operating_threshold_per_s=traffic.operating_threshold_per_s,
        default_allocation=(
            _UNLIMITED
            if default is None
            else Allocation(
                rate_per_s=default.rate_per_s, burst=default.burst, shadow=default.shadow
            )
        ),
        reserved_srvs=frozenset(traffic.reserved_srvs),
        reserved_share=traffic.reserved_share,
        shadow=traffic.shadow,
        exit_margin_ratio=traffic.exit_margin_ratio,
        exit_hold_s=traffic.exit_hold_s,
    )


class TrafficControl:
    """The router's traffic manager and whether traffic management is configured at all.

    `manager` is None while `dcc.control` has no `traffic` item: then nothing is throttled
    and no decision is computed.
    """

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.manager: TrafficManager | None = None
        self.registered_users: frozenset[str] = frozenset()
        self._snapshot: ConfigSnapshot | None = None
        self._month: str | None = None

    def roll_month(self, now_s: float) -> None:
        """At the turn of a (UTC) month, re-derive the allocations taken from forecasts
        (a no-op unless `allocations_from_forecasts` is configured)."""
        snapshot = self._snapshot
        if snapshot is None or self._month is None or month_of_s(now_s) == self._month:
            return
        config = snapshot.traffic
        if config is not None and config.allocations_from_forecasts is not None:
            self.apply(snapshot, now_s=now_s)

    def _allocations(self, snapshot: ConfigSnapshot, config: Traffic) -> dict[str, Allocation]:
        allocations = {
            user: Allocation(rate_per_s=a.rate_per_s, burst=a.burst, shadow=a.shadow)
            for user, a in snapshot.allocations.items()
        }
        rule = config.allocations_from_forecasts
        if rule is None or self._month is None:
            return allocations
        # An explicit allocation wins; a forecast stands in only where there is none.
        for user, forecast in forecasts_of_month(snapshot, self._month).items():
            if user not in allocations and user in self.registered_users:
                allocations[user] = allocation_from_forecast(
                    sum(forecast.counts.values()),
                    peak_hour_share=rule.peak_hour_share,
                    headroom_ratio=rule.headroom_ratio,
                    burst_s=rule.burst_s,
                )
        return allocations

    def apply(self, snapshot: ConfigSnapshot, *, now_s: float | None = None) -> None:
        """Take a new configuration (a control-reader listener); `now_s` (default: the
        clock) picks the month whose forecasts may stand in for allocations."""
        self._snapshot = snapshot
        self._month = month_of_s(time.time() if now_s is None else now_s)
        self.registered_users = frozenset(snapshot.users)
        config = snapshot.traffic
        if config is None:
            if self.manager is not None:
                log.info("traffic management switched off (no traffic configuration)")
            self.manager = None
            return
        policy = policy_from_config(config)
        allocations = self._allocations(snapshot, config)
        if self.manager is None:
            self.manager = TrafficManager(policy, allocations, peer_id=self.peer_id)
            log.info(
                "traffic management on: capacity %.0f/s, operating threshold %.0f/s",
                policy.capacity_per_s,
                policy.operating_threshold_per_s,
            )
        else:
            self.manager.set_policy(policy)
            self.manager.set_allocations(allocations)

    def user_label(self, user_id: str) -> str:
        """The `user` label of a metric: registered Users by ID, everyone else `other`."""
        return user_id if user_id in self.registered_users else "other"


class TrafficMetrics(Collector):
    """What operators watch, read from the traffic manager at scrape time (nothing on the
    hot path), plus the throttled and would-throttle counters the router flushes per batch.
    """

    def __init__(self, registry: CollectorRegistry, control: TrafficControl) -> None:
        self._control = control
        self.throttled = Counter(
            "dccgate_traffic_throttled",
            "Requests throttled by traffic management (T1), by User (registered Users; "
            "others as 'other') and rule (allocation, capacity).",
            ["user", "rule"],
            registry=registry,
        )
        self.would_throttle = Counter(
            "dccgate_traffic_shadow_would_throttle",
            "Requests traffic management would have throttled but admitted in shadow mode.",
            ["user"],
            registry=registry,
        )
        # Exported from the start (0), so a fresh gateway's throttling panels show 0, not
        # "No data": the series of Users not registered, labelled `other`.
        for rule in ("allocation", "capacity"):
            self.throttled.labels("other", rule)
        self.would_throttle.labels("other")
        # The episode-duration histogram, cumulative across traffic managers (one is made
        # again when the traffic item is removed and put back): counts per bucket, then +Inf.
        self._episode_counts = [0] * (len(EPISODE_BUCKETS_S) + 1)
        self._episode_sum_s = 0.0
        registry.register(self)

    def _episodes(self, manager: TrafficManager | None) -> HistogramMetricFamily:
        if manager is not None:
            counts = self._episode_counts
            for duration_s in manager.take_episode_durations():
                counts[bisect.bisect_left(EPISODE_BUCKETS_S, duration_s)] += 1
                self._episode_sum_s += duration_s
        cumulative, buckets = 0, []
        for bound, n in zip(EPISODE_BUCKETS_S, self._episode_counts, strict=False):
            cumulative += n
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", cumulative + self._episode_counts[-1]))
        family = HistogramMetricFamily(
            "dccgate_traffic_episode_duration_seconds",
            "Durations of the finished episodes of traffic management (activation to "
            "switching off, the exit hold time included).",
        )
        family.add_metric([], buckets, self._episode_sum_s)
        return family

    def collect(
        self,
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        manager = self._control.manager
        now_s = time.time()
        active = GaugeMetricFamily(
            "dccgate_traffic_active",
            "1 while traffic management is active (on at load >= T, off after the load "
            "stayed under T x (1 - exit_margin_ratio) for exit_hold_s).",
        )
        active.add_metric([], 1.0 if manager is not None and manager.active else 0.0)
        yield active
        age = GaugeMetricFamily(
            "dccgate_traffic_episode_age_seconds",
            "Seconds the current episode of traffic management has lasted; 0 while inactive.",
        )
        age.add_metric([], manager.episode_age_s(now_s) if manager is not None else 0.0)
        yield age
        yield self._episodes(manager)
        configured = GaugeMetricFamily(
            "dccgate_traffic_configured",
            "1 while a traffic item is configured (traffic management on), 0 while it is off "
            "(the default: nothing is throttled).",
        )
        configured.add_metric([], 0.0 if manager is None else 1.0)
        yield configured
        yield CounterMetricFamily(
            "dccgate_traffic_active_seconds",
            "Seconds traffic management has been active since this router started.",
            value=0.0 if manager is None else manager.active_seconds_total(now_s),
        )
        yield CounterMetricFamily(
            "dccgate_traffic_activations",
            "Times traffic management became active since this router started.",
            value=0 if manager is None else manager.activations_total,
        )
        if manager is None:
            return
        policy, view, plan = manager.policy, manager.view, manager.plan
        for name, doc, value in (
            ("admitted", "System admitted rate R, summed over routers.",
             view.admitted_per_s if view else 0.0),
            ("capacity", "Maximum system capacity C.", policy.capacity_per_s),
            ("threshold", "Operating threshold T.", policy.operating_threshold_per_s),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(f"dccgate_traffic_{name}_requests_per_second", doc)
            gauge.add_metric([], value)
            yield gauge
        over = GaugeMetricFamily(
            "dccgate_traffic_oversubscribed",
            "1 when Users within their allocations alone exceed the capacity.",
        )
        over.add_metric([], 1.0 if plan.oversubscribed else 0.0)
        yield over
        users = sorted(self._control.registered_users)
        allocation = GaugeMetricFamily(
            "dccgate_traffic_user_allocation_requests_per_second",
            "Allocation of each registered User.",
            labels=["user"],
        )
        rate = GaugeMetricFamily(
            "dccgate_traffic_user_rate_requests_per_second",
            "Recent admitted rate of each registered User, summed over routers.",
            labels=["user"],
        )
        limit = GaugeMetricFamily(
            "dccgate_traffic_user_limit_requests_per_second",
            "Current limit of each registered User over its allocation (absent: unlimited).",
            labels=["user"],
        )
        rates = view.user_rates if view else {}
        for user in users:
            allocation.add_metric([user], manager.allocation(user).rate_per_s)
            rate.add_metric([user], max(rates.get(user, 0.0), manager.user_rate(user, now_s)))
            if user in plan.limits_per_s:
                limit.add_metric([user], plan.limits_per_s[user])
        yield allocation
        yield rate
        yield limit

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
