"""The built-in defaults: one place, the same values the workers apply, and the API's view."""

from __future__ import annotations

from types import MappingProxyType

import msgspec

from throttling import DEFAULT_STORM_PARAMS, CorrelationPolicy, RegionalPolicy
from workers.alerts.processor import (
    correlation_policy_from_config,
    regional_policy_from_config,
    storm_policy_from_config,
)
from workers.config.defaults import DEFAULT_ITEMS, DEFAULT_NOTES, ENVELOPE_KEYS, effective
from workers.config.model import KINDS, Allocation, Traffic
from workers.config.snapshot import ConfigSnapshot, Item
from workers.tools.admin_cli.client import ENVELOPE_KEYS as CLIENT_ENVELOPE_KEYS

USER = "90-B3-D5-1F-30-01-00-00"


def _snapshot(*items: Item) -> ConfigSnapshot:
    return ConfigSnapshot(
        offset=len(items),
        items=MappingProxyType({i.key: i for i in items}),
        tokens=MappingProxyType({}),
    )


def _item(key: str, body: msgspec.Struct, by: str = "operator:bootstrap", version: int = 1) -> Item:
    return Item(key=key, version=version, body=body, raw=msgspec.json.encode(body), by=by, at_ms=5)


def test_every_kind_has_a_default_and_a_note() -> None:
    # A kind added to the model must say what is in force when it is not set.
    assert set(DEFAULT_NOTES) == set(KINDS)
    assert set(DEFAULT_ITEMS) == set(KINDS)


def test_the_alert_worker_applies_the_same_defaults() -> None:
    storm = storm_policy_from_config(None)
    assert storm.default == DEFAULT_STORM_PARAMS
    assert dict(storm.per_code) == {}
    assert correlation_policy_from_config(None) == CorrelationPolicy()
    assert regional_policy_from_config(None) == RegionalPolicy()


def test_effective_answers_the_default_the_file_or_the_api() -> None:
    empty = _snapshot()
    doc = effective(empty, KINDS["alerts.storm-policy"], None)
    assert doc is not None
    assert (doc["source"], doc["version"]) == ("default", 0)
    assert doc["default"] == msgspec.to_builtins(DEFAULT_STORM_PARAMS)
    assert effective(empty, KINDS["traffic"], None) == {
        "version": 0,
        "source": "default",
        "note": DEFAULT_NOTES["traffic"],
    }
    assert effective(empty, KINDS["users"], USER) is None
    traffic = Traffic(
        capacity_per_s=10,
        operating_threshold_per_s=5,
        default_allocation=Allocation(rate_per_s=2, burst=3),
    )
    seeded = _snapshot(_item("traffic", traffic, by="config-file"))
    doc = effective(seeded, KINDS["traffic"], None)
    assert doc is not None
    assert (doc["source"], doc["version"], doc["capacity_per_s"]) == ("file", 1, 10)
    # A User without an allocation: the traffic item's default_allocation, its source.
    doc = effective(seeded, KINDS["allocations"], USER)
    assert doc is not None
    assert (doc["source"], doc["version"], doc["rate_per_s"], doc["burst"]) == ("file", 0, 2, 3)
    own = _snapshot(_item(f"allocations/{USER}", Allocation(rate_per_s=7, burst=8), version=4))
    doc = effective(own, KINDS["allocations"], USER)
    assert doc is not None
    assert (doc["source"], doc["version"], doc["rate_per_s"]) == ("api", 4, 7)


def test_the_client_strips_the_same_envelope_keys() -> None:
    assert CLIENT_ENVELOPE_KEYS == ENVELOPE_KEYS


def test_a_forecast_stands_in_for_an_allocation_as_the_router_derives_it() -> None:
    from throttling.forecast_allocation import allocation_from_forecast
    from workers.config.model import Forecast, ForecastAllocations, User

    now_s = 1_800_000_000.0  # 2027-01
    rule = ForecastAllocations(peak_hour_share=0.01, headroom_ratio=2.0, burst_s=2.0)
    traffic = Traffic(capacity_per_s=1000, operating_threshold_per_s=800,
                      default_allocation=Allocation(rate_per_s=1, burst=1),
                      allocations_from_forecasts=rule)  # fmt: skip
    snapshot = _snapshot(
        _item("traffic", traffic),
        _item(f"users/{USER}", User(name="A", roles=["IS"])),
        _item(f"forecasts/{USER}/2027-01", Forecast(counts={"7.2": 360_000}), by="config-file"),
    )
    doc = effective(snapshot, KINDS["allocations"], USER, now_s=now_s)
    assert doc is not None
    expected = allocation_from_forecast(
        360_000, peak_hour_share=0.01, headroom_ratio=2.0, burst_s=2.0
    )
    assert (doc["rate_per_s"], doc["burst"]) == (expected.rate_per_s, expected.burst)
    assert (doc["source"], doc["version"]) == ("file", 0)
    assert "forecast for 2027-01" in doc["note"]
    # Another month has no forecast: the default allocation applies.
    doc = effective(snapshot, KINDS["allocations"], USER, now_s=now_s + 40 * 86_400)
    assert doc is not None
    assert (doc["rate_per_s"], doc["burst"]) == (1, 1)
