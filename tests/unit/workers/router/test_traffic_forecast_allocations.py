"""The router's traffic control with `allocations_from_forecasts`: a forecast stands in for
a missing allocation, an explicit one wins, and the month's turn re-derives them."""

from __future__ import annotations

import msgspec
import pytest

from broker.schemas import ControlRecord
from workers.config.snapshot import ConfigSnapshot, ConfigState
from workers.router.traffic import TrafficControl

A = "90-B3-D5-1F-30-01-00-00"  # forecast, no allocation
B = "90-B3-D5-1F-30-02-00-00"  # forecast and an explicit allocation
C = "90-B3-D5-1F-30-03-00-00"  # nothing: the default allocation
D = "90-B3-D5-1F-30-04-00-00"  # forecast, but not a registered User
JAN_S = 1_798_761_600.0 + 3600  # 2027-01-01T01:00Z
FEB_S = 1_801_440_000.0 + 3600  # 2027-02-01T01:00Z
RULE = {"peak_hour_share": 0.004, "headroom_ratio": 1.5, "burst_s": 2.0}


def _snapshot(traffic: dict[str, object], *extra: tuple[str, object]) -> ConfigSnapshot:
    state = ConfigState()
    items: list[tuple[str, object]] = [
        *((f"users/{u}", {"name": u[-5:], "roles": ["IS"]}) for u in (A, B, C)),
        ("traffic", traffic),
        (f"allocations/{B}", {"rate_per_s": 7, "burst": 3}),
        (f"forecasts/{A}/2027-01", {"counts": {"4.1.1": 6_000_000, "7.2": 3_000_000}}),
        (f"forecasts/{A}/2027-02", {"counts": {"4.1.1": 900_000}}),
        (f"forecasts/{B}/2027-01", {"counts": {"4.1.1": 90_000_000}}),
        (f"forecasts/{D}/2027-01", {"counts": {"4.1.1": 90_000_000}}),
        *extra,
    ]
    for offset, (key, body) in enumerate(items):
        value = ControlRecord(
            key=key, version=1, value=msgspec.Raw(msgspec.json.encode(body)), by="t", at_ms=1
        )
        state.apply(key.encode(), msgspec.json.encode(value), offset)
    assert state.skipped == 0
    return state.snapshot()


TRAFFIC = {
    "capacity_per_s": 1000,
    "operating_threshold_per_s": 800,
    "default_allocation": {"rate_per_s": 1, "burst": 1},
}


def test_a_forecast_stands_in_for_a_missing_allocation() -> None:
    control = TrafficControl("me")
    control.apply(_snapshot({**TRAFFIC, "allocations_from_forecasts": RULE}), now_s=JAN_S)
    manager = control.manager
    assert manager is not None
    # 9,000,000 x 0.004 / 3600 x 1.5 = 15/s; burst 15 x 2 s = 30.
    a = manager.allocation(A)
    assert a.rate_per_s == pytest.approx(15.0)
    assert a.burst == 30
    assert (manager.allocation(B).rate_per_s, manager.allocation(B).burst) == (7, 3)
    assert manager.allocation(C).rate_per_s == 1
    assert manager.allocation(D).rate_per_s == 1  # not registered: no derived allocation


def test_without_the_setting_forecasts_change_nothing() -> None:
    control = TrafficControl("me")
    control.apply(_snapshot(TRAFFIC), now_s=JAN_S)
    assert control.manager is not None
    assert control.manager.allocation(A).rate_per_s == 1


def test_the_turn_of_the_month_takes_the_new_months_forecast() -> None:
    control = TrafficControl("me")
    control.apply(_snapshot({**TRAFFIC, "allocations_from_forecasts": RULE}), now_s=JAN_S)
    control.roll_month(JAN_S + 86_400)  # same month: nothing changes
    assert control.manager is not None
    assert control.manager.allocation(A).rate_per_s == pytest.approx(15.0)
    control.roll_month(FEB_S)
    # 900,000 x 0.004 / 3600 x 1.5 = 1.5/s.
    assert control.manager.allocation(A).rate_per_s == pytest.approx(1.5)
    assert control.manager.allocation(B).rate_per_s == 7
