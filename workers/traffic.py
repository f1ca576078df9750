"""Traffic management (SECMP0067) in the router: configuration, the global view, metrics.

The decisions are `throttling.traffic.TrafficManager`'s (pure); this module feeds it:
the policy and allocations from `dcc.control`, the system load from `dcc.load` (every
router publishes its admitted rates every `REPORT_INTERVAL_S` and sums the latest report
of each peer), and exports what operators watch.

`dcc.load` also carries each router's DCC-wide ADT counts (SEC G6 (b)(i), `adt.reports`):
records with the header `dccgate-load: adt` are `adt.AdtCountReport`s; records without it
are traffic `LoadReport`s (the format of the first release, so older routers still read
the topic; they log the ADT reports as not being load reports and go on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import TypeVar

import msgspec
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adt import AdtCountReport
from adt import merge_reports as merge_adt_reports
from broker.consumer import Record
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from throttling import (
    Allocation,
    LoadReport,
    TrafficManager,
    TrafficPolicy,
    merge_reports,
)
from workers.anomaly import AdtControl
from workers.control.model import Traffic
from workers.control.state import ConfigSnapshot

__all__ = [
    "REPORT_INTERVAL_S",
    "VIEW_INTERVAL_S",
    "LoadExchange",
    "TrafficControl",
    "TrafficMetrics",
    "new_peer_id",
    "policy_from_config",
]

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.25
"""How often each router publishes its load report (I in the overshoot bound)."""
VIEW_INTERVAL_S = 0.1
"""How often each router recomputes its limits from the latest reports (V)."""
MAX_REPORT_AGE_S = 3 * REPORT_INTERVAL_S
"""A peer whose latest report is older is taken to be gone."""
ADT_MAX_REPORT_AGE_S = 5.0
"""A peer's DCC-wide ADT counts are summed until its report is this old: long against the
report interval, so a router that pauses (a long batch, a GC) is not dropped from the count
(an under-count would let requests past a DCC-wide threshold); a crashed router's share
leaves the sum after this long."""
LOAD_KIND_HEADER = "dccgate-load"
_ADT_HEADERS = ((LOAD_KIND_HEADER, b"adt"),)

# "No allocation and no default" means never throttled: an allocation no User reaches.
_UNLIMITED = Allocation(rate_per_s=1e12, burst=1_000_000)
R = TypeVar("R", LoadReport, AdtCountReport)
_decode_report = msgspec.json.Decoder(LoadReport).decode
_decode_adt_report = msgspec.json.Decoder(AdtCountReport).decode
_encode = msgspec.json.Encoder().encode


def new_peer_id() -> str:
    """A router's id in load reports: host, process and a random part (unique per start)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


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

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Take a new configuration (a control-reader listener)."""
        self.registered_users = frozenset(snapshot.users)
        config = snapshot.traffic
        if config is None:
            if self.manager is not None:
                log.info("traffic management switched off (no traffic configuration)")
            self.manager = None
            return
        policy = policy_from_config(config)
        allocations = {
            user: Allocation(rate_per_s=a.rate_per_s, burst=a.burst, shadow=a.shadow)
            for user, a in snapshot.allocations.items()
        }
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


def _keep_newest(reports: dict[str, R], peer: str, report: R, at_s: float) -> None:
    """Keep `report` as `peer`'s latest unless a newer one (by the sender's clock) is kept."""
    known = reports.get(peer)
    if known is None or at_s >= known.at_s:
        reports[peer] = report


class LoadExchange:
    """Publishes this router's load report and DCC-wide ADT counts to `dcc.load` and folds
    in the peers' reports.

    Runs until `stop` is set: reports every REPORT_INTERVAL_S, the traffic limits and the
    peers' ADT counts recomputed every VIEW_INTERVAL_S from the latest report of each peer.
    `adt` is optional (the benchmark runs traffic management alone).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        control: TrafficControl,
        producer: BatchProducer,
        adt: AdtControl | None = None,
    ) -> None:
        self._topic = topic
        self._control = control
        self._producer = producer
        self._adt = adt
        self.reports: dict[str, LoadReport] = {}
        self.adt_reports: dict[str, AdtCountReport] = {}
        self.bad_reports = 0
        # Only recent reports matter; start a little before now.
        since_ms = time.time_ns() // 1_000_000 - 10_000
        self._follower = TopicFollower(
            settings, topic, self._on_reports, name="load", from_ms=since_ms
        )

    def _on_reports(self, records: list[Record]) -> None:
        for rec in records:
            is_adt = bool(rec.headers) and (LOAD_KIND_HEADER, b"adt") in rec.headers
            try:
                if is_adt:
                    adt = _decode_adt_report(rec.value or b"")
                    _keep_newest(self.adt_reports, adt.router_id, adt, adt.at_s)
                else:
                    load = _decode_report(rec.value or b"")
                    _keep_newest(self.reports, load.peer_id, load, load.at_s)
            except msgspec.DecodeError as exc:
                self.bad_reports += 1
                what = "an ADT count report" if is_adt else "a load report"
                log.warning("dcc.load offset %d is not %s: %s", rec.offset, what, exc)

    def _dcc_adt(self) -> AdtControl | None:
        """The ADT control while DCC-wide count thresholds exist, else None."""
        adt = self._adt
        if adt is None or not adt.engine.dcc_table.count_rules:
            return None
        return adt

    async def _publish(self, now_s: float) -> None:
        key = self._control.peer_id.encode()
        manager = self._control.manager
        if manager is not None:
            report = manager.local_report(now_s)
            self.reports[report.peer_id] = report
            await self._producer.send_one(self._topic, key, _encode(report))
        adt = self._dcc_adt()
        if adt is not None:
            counts = adt.engine.count_report(self._control.peer_id, now_s)
            await self._producer.send_one(self._topic, key, _encode(counts), headers=_ADT_HEADERS)

    def _fold(self, now_s: float) -> None:
        # Reports of peers that left are dropped here, and by the merges.
        manager = self._control.manager
        if manager is not None:
            self.reports = {p: r for p, r in self.reports.items() if now_s - r.at_s <= 60.0}
            manager.update_view(merge_reports(self.reports, now_s, MAX_REPORT_AGE_S))
        adt = self._dcc_adt()
        if adt is not None:
            self.adt_reports = {p: r for p, r in self.adt_reports.items() if now_s - r.at_s <= 60.0}
            adt.engine.set_peer_counts(
                merge_adt_reports(
                    self.adt_reports.values(),
                    now_s,
                    ADT_MAX_REPORT_AGE_S,
                    exclude_router=self._control.peer_id,
                )
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Exchange reports until `stop` is set."""
        await self._follower.start()
        try:
            next_report = 0.0
            while not stop.is_set():
                now_s = time.time()
                if now_s >= next_report:
                    await self._publish(now_s)
                    next_report = now_s + REPORT_INTERVAL_S
                self._fold(now_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), VIEW_INTERVAL_S)
        finally:
            await self._follower.stop()


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
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        manager = self._control.manager
        now_s = time.time()
        active = GaugeMetricFamily(
            "dccgate_traffic_active", "1 while traffic management is active (load >= T)."
        )
        active.add_metric([], 1.0 if manager is not None and manager.active else 0.0)
        yield active
        if manager is None:
            return
        yield CounterMetricFamily(
            "dccgate_traffic_active_seconds",
            "Seconds traffic management has been active since this router started.",
            value=manager.active_seconds_total(now_s),
        )
        yield CounterMetricFamily(
            "dccgate_traffic_activations",
            "Times traffic management became active since this router started.",
            value=manager.activations_total,
        )
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
