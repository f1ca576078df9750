"""The "gateway under test" of a report: the gateway's own metrics at the end of the run,
curated into a few tables people read (no raw series).

`report.gateway` holds what `gateway.scrape_metrics` kept, `{name{labels}: value}`. From it:
traffic management (state, threshold, capacity, admitted rate, episodes), each User's
allocation, rate at the end and decisions by outcome, decisions by outcome and response code,
quarantines (ADT) by kind and SRV, storm protection, and consumer lag per service and topic.
A run against a gateway whose metrics were not read has none of them (`curate` says so).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable

import msgspec

__all__ = ["Curated", "Fact", "UserFacts", "curate", "human", "parse_series"]

_SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


class Fact(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a curated table: what it is, its value for people, and a note."""

    name: str
    value: str
    note: str = ""


class UserFacts(msgspec.Struct, frozen=True, kw_only=True):
    """One registered User as the gateway saw it at the end of the run."""

    user: str
    allocation: str = "—"
    rate: str = "—"
    decisions: dict[str, int] = msgspec.field(default_factory=dict)


class Curated(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's metrics in the report's tables; empty lists when there was nothing."""

    traffic: list[Fact] = msgspec.field(default_factory=list)
    users: list[UserFacts] = msgspec.field(default_factory=list)
    decisions: list[Fact] = msgspec.field(default_factory=list)
    quarantine: list[Fact] = msgspec.field(default_factory=list)
    alerts: list[Fact] = msgspec.field(default_factory=list)
    lag: list[Fact] = msgspec.field(default_factory=list)
    series: int = 0
    """How many series the gateway reported (all kept in report.json)."""

    def empty(self) -> bool:
        """Nothing to show: the gateway's metrics were not read."""
        return (
            not (self.traffic or self.users or self.decisions or self.quarantine or self.alerts)
            and not self.lag
        )


def parse_series(key: str) -> tuple[str, dict[str, str]] | None:
    """`name{a="1",b="2"}` as (name, labels); None for a key of another shape."""
    match = _SERIES.match(key)
    if match is None:
        return None
    labels = {
        m.group("key"): m.group("value").replace('\\"', '"')
        for m in _LABEL.finditer(match.group("labels") or "")
    }
    return match.group("name"), labels


def human(value: float, unit: str = "") -> str:
    """A number for people: integers with separators, others to 3 significant figures (at
    most one decimal from 100 on), seconds as a duration."""
    if not math.isfinite(value):
        return str(value)
    if unit == "s":
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 60:
            return f"{value / 60:.1f} min"
        return f"{value:.1f} s"
    suffix = f" {unit}" if unit else ""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}{suffix}"
    if abs(value) >= 100:
        return f"{value:,.1f}{suffix}"
    return f"{value:.3g}{suffix}"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def curate(gateway: dict[str, object]) -> Curated:
    """The curated tables of `report.gateway` (the gateway's metrics at the end)."""
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for key, raw in gateway.items():
        parsed, value = parse_series(key), _number(raw)
        if parsed is None or value is None:
            continue
        series[parsed[0]].append((parsed[1], value))

    def one(name: str) -> float | None:
        values = series.get(name)
        return sum(v for _, v in values) if values else None

    return Curated(
        traffic=_traffic(one),
        users=_users(series),
        decisions=_decisions(series),
        quarantine=_quarantine(series),
        alerts=_alerts(one),
        lag=_lag(series),
        series=len(gateway),
    )


def _traffic(get: Callable[[str], float | None]) -> list[Fact]:
    facts: list[Fact] = []
    active = get("dccgate_traffic_active")
    if active is not None:
        facts.append(
            Fact(
                name="traffic management",
                value="throttling active" if active else "not throttling",
                note="at the end of the run",
            )
        )
    for name, metric, unit, note in (
        (
            "operating threshold",
            "dccgate_traffic_threshold_requests_per_second",
            "req/s",
            "throttling starts above it",
        ),
        (
            "capacity",
            "dccgate_traffic_capacity_requests_per_second",
            "req/s",
            "shared out as allocations",
        ),
        (
            "admitted rate",
            "dccgate_traffic_admitted_requests_per_second",
            "req/s",
            "measured at the end of the run",
        ),
        ("throttling episodes", "dccgate_traffic_activations_total", "", "times it started"),
        ("time throttling", "dccgate_traffic_active_seconds_total", "s", ""),
    ):
        value = get(metric)
        if value is not None:
            facts.append(Fact(name=name, value=human(value, unit), note=note))
    over = get("dccgate_traffic_oversubscribed")
    if over:
        facts.append(Fact(name="allocations", value="oversubscribed", note="sum above capacity"))
    return facts


def _users(series: dict[str, list[tuple[dict[str, str], float]]]) -> list[UserFacts]:
    allocation = {
        labels.get("user", ""): v
        for labels, v in series.get("dccgate_traffic_user_allocation_requests_per_second", [])
    }
    rate = {
        labels.get("user", ""): v
        for labels, v in series.get("dccgate_traffic_user_rate_requests_per_second", [])
    }
    decisions: dict[str, dict[str, int]] = defaultdict(dict)
    for labels, v in series.get("dccgate_router_user_decisions_total", []):
        outcome = labels.get("outcome", "?")
        counts = decisions[labels.get("user", "")]
        counts[outcome] = counts.get(outcome, 0) + int(v)
    users = sorted(set(allocation) | set(rate) | set(decisions))
    return [
        UserFacts(
            user=user,
            allocation=human(allocation[user], "req/s") if user in allocation else "—",
            rate=human(rate[user], "req/s") if user in rate else "—",
            decisions=dict(decisions.get(user, {})),
        )
        for user in users
    ]


def _decisions(series: dict[str, list[tuple[dict[str, str], float]]]) -> list[Fact]:
    rows = sorted(series.get("dccgate_router_decisions_total", []), key=lambda item: -item[1])
    return [
        Fact(
            name=labels.get("outcome", "?"),
            value=human(v),
            note=f"response code {labels['code']}" if labels.get("code") else "",
        )
        for labels, v in rows
        if v
    ]


def _quarantine(series: dict[str, list[tuple[dict[str, str], float]]]) -> list[Fact]:
    facts = [
        Fact(
            name=f"quarantined ({labels.get('kind', '?').replace('_', ' ')})",
            value=human(v),
            note=f"SRV {labels['srv']}" if labels.get("srv") else "",
        )
        for labels, v in series.get("dccgate_adt_quarantined_total", [])
        if v
    ]
    for labels, v in series.get("dccgate_adt_user_nearest_threshold_ratio", []):
        facts.append(
            Fact(
                name=f"nearest ADT of {labels.get('user', '?')}",
                value=f"{100 * v:.0f}% of its limit",
                note=f"rule {labels['rule']}" if labels.get("rule") else "",
            )
        )
    return facts


def _alerts(get: Callable[[str], float | None]) -> list[Fact]:
    facts = []
    for name, metric, note in (
        ("storms active at the end", "dccgate_alerts_active_storms", ""),
        ("alerts held", "dccgate_alerts_held", "waiting for regional capacity or MP102"),
        (
            "MP102 outage alerts dropped",
            "dccgate_alerts_mp102_dropped_total",
            "false outages after a firmware activation",
        ),
        ("MP102 outage alerts released", "dccgate_alerts_mp102_released_total", ""),
        ("alert input paused", "dccgate_alerts_input_paused", "back-pressure"),
        ("alert exclusions", "dccgate_alerts_exclusions", "codes never storm-limited"),
    ):
        value = get(metric)
        if value:
            facts.append(Fact(name=name, value=human(value), note=note))
    return facts


def _lag(series: dict[str, list[tuple[dict[str, str], float]]]) -> list[Fact]:
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    for labels, v in series.get("dccgate_consumer_lag_records", []):
        per[(labels.get("service", "?"), labels.get("topic", "?"))].append(v)
    return [
        Fact(
            name=f"{service} on {topic}",
            value=f"{human(sum(values))} records",
            note=f"{len(values)} partitions, at most {human(max(values))} behind",
        )
        for (service, topic), values in sorted(per.items())
    ]
