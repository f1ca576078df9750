"""The configuration in force: each item as configured, or the built-in default.

The workers take an absent `dcc.control` item to mean its default (the alert worker's
storm policy, no exclusions, no regional limit, the MP102 rule off; no ADT values; the
router's traffic management off). The defaults are declared here, once: the alert worker
builds its policies from `DEFAULT_ITEMS` when an item is absent, and the admin API answers
them, so what the API shows as in force is what the workers do.

`effective()` gives one item as the admin API answers it: the body's fields, its
`version` (0: never set), its `source` (`default`, `file`: seeded from the configuration
file, `api`: set through the admin API) and, for a default, a `note` saying what it means.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec

from throttling import DEFAULT_STORM_PARAMS
from throttling.forecast_allocation import allocation_from_forecast
from workers.config.forecasts import forecasts_of_month
from workers.config.model import (
    KINDS,
    AdtValues,
    Exclusions,
    Kind,
    Mp102Rule,
    RegionalCapacity,
    StormParams,
    StormPolicy,
)
from workers.config.months import month_of_s
from workers.config.snapshot import ConfigSnapshot, Item

__all__ = [
    "CONFIG_FILE_AUTHOR",
    "DEFAULT_ITEMS",
    "DEFAULT_MP102",
    "DEFAULT_NOTES",
    "DEFAULT_REGIONAL_CAPACITY",
    "DEFAULT_STORM_POLICY",
    "ENVELOPE_KEYS",
    "Source",
    "as_json",
    "effective",
    "source_of",
]

Source = Literal["default", "file", "api"]

CONFIG_FILE_AUTHOR: Final = "config-file"
"""The `by` of the items the admin process seeds from the configuration file."""

ENVELOPE_KEYS: Final = frozenset({"version", "source", "note"})
"""Keys of an answer that are not the body's fields (a client strips them before a PUT)."""

DEFAULT_STORM_POLICY: Final = StormPolicy(
    default=StormParams(
        window_s=DEFAULT_STORM_PARAMS.window_s,
        max_alerts=DEFAULT_STORM_PARAMS.max_alerts,
        period_s=DEFAULT_STORM_PARAMS.period_s,
    )
)

DEFAULT_MP102: Final = Mp102Rule()
DEFAULT_REGIONAL_CAPACITY: Final = RegionalCapacity(regions={})

DEFAULT_ITEMS: Final[Mapping[str, msgspec.Struct | None]] = {
    "users": None,
    "allocations": None,  # the traffic item's default_allocation, if any: see effective()
    "adt.users": AdtValues(),
    "adt.dcc": AdtValues(),
    "alerts.exclusions": Exclusions(alert_codes=[]),
    "alerts.storm-policy": DEFAULT_STORM_POLICY,
    "alerts.regional-capacity": DEFAULT_REGIONAL_CAPACITY,
    "alerts.mp102": DEFAULT_MP102,
    "traffic": None,
    "forecasts": None,
    "certificates": None,
}
"""Each kind's value in force when its item was never set (None: nothing is in force)."""

DEFAULT_NOTES: Final[Mapping[str, str]] = {
    "users": "not registered",
    "allocations": "no allocation: this User is never throttled by traffic management "
    "(until a traffic item with a default_allocation, or an allocation, is set)",
    "adt.users": "no ADT values: no User threshold or value rule applies",
    "adt.dcc": "no DCC-wide ADT values: no DCC-wide threshold or value rule applies",
    "alerts.exclusions": "no alert code is excluded from storm protection",
    "alerts.storm-policy": "the built-in storm policy: a storm is more than "
    f"{DEFAULT_STORM_PARAMS.max_alerts} identical alerts in {DEFAULT_STORM_PARAMS.window_s} s, "
    f"then one copy per {DEFAULT_STORM_PARAMS.period_s} s",
    "alerts.regional-capacity": "no CSP region is limited",
    "alerts.mp102": "the MP102 rule is off",
    "traffic": "traffic management is off: nothing is throttled (PUT /v1/traffic turns it on)",
    "forecasts": "no forecast for this month",
    "certificates": "no certificate registered for this User",
}
"""What each kind's default means, in one sentence for an operator."""

_ALLOCATION_FROM_TRAFFIC = (
    "no allocation of its own: the traffic item's default_allocation applies "
    "(version and source are the traffic item's)"
)


def as_json(body: msgspec.Struct) -> dict[str, Any]:
    """`body` as the JSON object the API answers (lists, not tuples)."""
    doc: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(body))
    return doc


def source_of(item: Item) -> Source:
    """Where a configured item came from: the configuration file, or the admin API."""
    return "file" if item.by == CONFIG_FILE_AUTHOR else "api"


def _configured(item: Item) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.json.decode(item.raw)
    doc["version"] = item.version
    doc["source"] = source_of(item)
    return doc


def _default(body: msgspec.Struct | None, note: str) -> dict[str, Any]:
    doc: dict[str, Any] = {} if body is None else as_json(body)
    doc.update(version=0, source="default", note=note)
    return doc


def _from_forecast(
    snapshot: ConfigSnapshot, traffic: Item | None, user_id: str | None, now_s: float
) -> dict[str, Any] | None:
    """A registered User's allocation derived from its forecast for this month, when the
    traffic item's `allocations_from_forecasts` is set (as the router derives it,
    `workers.router.traffic`), else None."""
    rule = None if traffic is None else traffic.body.allocations_from_forecasts
    if rule is None or user_id is None or snapshot.get(f"users/{user_id}") is None:
        return None
    month = month_of_s(now_s)
    forecast = forecasts_of_month(snapshot, month).get(user_id)
    if forecast is None:
        return None
    allocation = allocation_from_forecast(
        sum(forecast.counts.values()),
        peak_hour_share=rule.peak_hour_share,
        headroom_ratio=rule.headroom_ratio,
        burst_s=rule.burst_s,
    )
    doc: dict[str, Any] = msgspec.to_builtins(allocation)
    item = snapshot.get(f"forecasts/{user_id}/{month}")
    doc.update(
        version=0,
        source="default" if item is None else source_of(item),
        note=f"no allocation of its own: derived from its forecast for {month} "
        "(traffic.allocations_from_forecasts; version and source are the forecast's)",
    )
    return doc


def effective(
    snapshot: ConfigSnapshot, kind: Kind, user_id: str | None, now_s: float | None = None
) -> dict[str, Any] | None:
    """The item of `kind` (for `user_id`) in force, as the admin API answers it; None for
    a User that is not registered (a User has no default). now_s (default: the clock)
    picks the month whose forecast may stand in for a User's allocation."""
    item = snapshot.get(kind.key(user_id))
    if item is not None:
        return _configured(item)
    if kind.name == "users":
        return None
    if kind.name == "allocations":
        traffic = snapshot.get(KINDS["traffic"].key())
        derived = _from_forecast(
            snapshot, traffic, user_id, time.time() if now_s is None else now_s
        )
        if derived is not None:
            return derived
        if traffic is not None and traffic.body.default_allocation is not None:
            doc = as_json(traffic.body.default_allocation)
            doc.update(version=0, source=source_of(traffic), note=_ALLOCATION_FROM_TRAFFIC)
            return doc
    return _default(DEFAULT_ITEMS.get(kind.name), DEFAULT_NOTES.get(kind.name, "not configured"))
