"""Forecasts as configuration: the body's limits, the per-month key, reading them back,
and the months they are keyed by."""

from __future__ import annotations

import msgspec
import pytest

from broker.schemas import ControlRecord
from workers.config.forecasts import FORECASTS, forecast_of, forecasts_of_month
from workers.config.model import KINDS, Forecast, kind_of_key, validate_item
from workers.config.months import month_index, month_of_ms, month_of_s, month_seconds, parse_month
from workers.config.snapshot import ConfigState

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"


def _decode(doc: object) -> Forecast:
    forecast = msgspec.json.decode(msgspec.json.encode(doc), type=Forecast)
    validate_item(FORECASTS, A, forecast)
    return forecast


def test_a_forecast_counts_per_srv() -> None:
    f = _decode({"counts": {"4.1.1": 120_000, "7.2": 0}, "note": "winter"})
    assert f.counts == {"4.1.1": 120_000, "7.2": 0}
    assert f.note == "winter"


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"counts": {"4.1.1": -1}}, ">= 0"),
        ({"counts": {"4.1.1": 1_000_000_001}}, "<= 1000000000"),
        ({"counts": {"4.1.1": 1.5}}, "Expected `int`"),
        ({"counts": {"4.1.1": 10**30}}, "<= 1000000000"),
        ({"counts": {"4.1": 1, "not-an-srv": 2}}, "length <= 8"),
        ({"counts": {"4.x": 1}}, "matching regex"),
        ({"counts": {"99.99": 1}}, "unknown SRVs \\['99.99'\\]"),
        ({"counts": {}, "extra": 1}, "unknown field"),
        ({}, "missing required field `counts`"),
        ({"counts": {"4.1.1": 1}, "note": "x" * 501}, "length <= 500"),
        ({"counts": {f"{i}.{j}": 1 for i in range(40) for j in range(30)}}, "length <= 1000"),
    ],
)
def test_bad_forecasts_are_refused_with_the_reason(doc: object, says: str) -> None:
    with pytest.raises((msgspec.ValidationError, ValueError), match=says):
        _decode(doc)


def test_absurd_totals_are_refused() -> None:
    counts = {srv: 1_000_000_000 for srv in ("4.1.1", "4.2", "4.3", "4.4.2", "4.6.1",
                                              "4.8.1", "4.8.2", "4.10", "4.11.1", "4.11.2",
                                              "4.12.1")}  # fmt: skip
    with pytest.raises(msgspec.ValidationError, match="not per year"):
        msgspec.convert({"counts": counts}, type=Forecast)


def test_forecast_keys_are_per_user_and_month() -> None:
    kind = KINDS["forecasts"]
    assert kind.key(A, "2027-01") == f"forecasts/{A}/2027-01"
    assert kind_of_key(f"forecasts/{A}/2027-01") == (kind, A)
    for bad in (f"forecasts/{A}", f"forecasts/{A}/2027-13", f"forecasts/{A}/27-01",
                "forecasts/x/2027-01", f"allocations/{A}/2027-01"):  # fmt: skip
        assert kind_of_key(bad) is None, bad
    with pytest.raises(ValueError, match="per month"):
        kind.key(A)


def _record(key: str, body: object) -> bytes:
    return msgspec.json.encode(
        ControlRecord(
            key=key, version=1, value=msgspec.Raw(msgspec.json.encode(body)), by="t", at_ms=1
        )
    )


def test_forecasts_are_read_back_per_month() -> None:
    state = ConfigState()
    for offset, (user, month, n) in enumerate(
        [(A, "2027-01", 10), (B, "2027-01", 20), (A, "2027-02", 30)]
    ):
        key = FORECASTS.key(user, month)
        state.apply(key.encode(), _record(key, {"counts": {"4.1.1": n}}), offset)
    bad = FORECASTS.key(A, "2027-03")
    state.apply(bad.encode(), _record(bad, {"counts": {"99.9": 1}}), 9)  # skipped, not fatal
    snap = state.snapshot()
    assert {u: f.counts for u, f in forecasts_of_month(snap, "2027-01").items()} == {
        A: {"4.1.1": 10},
        B: {"4.1.1": 20},
    }
    found = forecast_of(snap, A, "2027-02")
    assert found is not None
    assert found.counts == {"4.1.1": 30}
    assert forecast_of(snap, A, "2027-03") is None
    assert state.skipped == 1


def test_months_are_utc_calendar_months() -> None:
    assert month_of_ms(1_798_761_599_999) == "2026-12"  # a millisecond before 2027
    assert month_of_ms(1_798_761_600_000) == "2027-01"
    assert month_of_s(1_798_761_600.0) == "2027-01"
    assert parse_month("2027-01") == (2027, 1)
    assert month_index("2027-01") - month_index("2026-12") == 1
    assert month_seconds("2027-02") == 28 * 86_400
    assert month_seconds("2028-02") == 29 * 86_400
    wide = "\uff12\uff10\uff12\uff17-01"  # full-width digits
    for bad in ("2027-1", "2027-00", "2027-13", "27-01", wide, "2027-01 ", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_month(bad)
