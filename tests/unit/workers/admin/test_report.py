"""The variance report against a month computed by hand, its flags and its CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from workers.admin.report import CSV_COLUMNS, report_csv, variance_report

A = "90-B3-D5-1F-30-01-00-00"  # forecast, over 150% on 4.1.1, below on 7.2
B = "90-B3-D5-1F-30-02-00-00"  # sends with no forecast at all
C = "90-B3-D5-1F-30-03-00-00"  # forecast, sends nothing
D = "90-B3-D5-1F-30-04-00-00"  # forecast, one SRV not forecast

ACTUALS = {
    A: {
        "4.1.1": {"accepted": 1400, "rejected": 20, "throttled": 80, "quarantined": 1},
        "7.2": {"accepted": 40},
    },
    B: {"4.1.1": {"accepted": 7}},
    D: {"4.1.1": {"accepted": 100}, "6.15.1": {"rejected": 3}},
}
FORECASTS = {
    A: {"4.1.1": 1000, "7.2": 100},
    C: {"4.1.1": 500},
    D: {"4.1.1": 100},
}


def _user(report: dict[str, Any], user_id: str) -> dict[str, Any]:
    return next(u for u in report["users"] if u["user_id"] == user_id)


def test_a_hand_computed_month() -> None:
    report = variance_report("2027-01", ACTUALS, FORECASTS, complete=True, names={A: "Alpha"})
    assert [u["user_id"] for u in report["users"]] == [A, B, C, D]
    a = _user(report, A)
    # 4.1.1: sent 1400 + 20 + 80 + 1 = 1501 against 1000: +501, 150.1% > 150%.
    s411, s72 = a["services"]
    assert (s411["srv"], s411["forecast"], s411["actual"]) == ("4.1.1", 1000, 1501)
    assert (s411["variance"], s411["variance_ratio"], s411["flags"]) == (
        501,
        1.501,
        ["exceptional_demand"],
    )
    # 7.2: 40 against 100 is under 50%.
    assert (s72["actual"], s72["variance"], s72["flags"]) == (40, -60, ["well_below_forecast"])
    # In total 1541 against 1100 = 140%: no flag on the total.
    assert (a["actual_total"], a["forecast_total"], a["variance"]) == (1541, 1100, 441)
    assert a["variance_ratio"] == round(1541 / 1100, 4)
    assert a["flags"] == []
    assert a["by_outcome"] == {"accepted": 1440, "rejected": 20, "throttled": 80, "quarantined": 1}
    assert a["name"] == "Alpha"
    b = _user(report, B)
    assert (b["has_forecast"], b["forecast_total"], b["variance"], b["flags"]) == (
        False,
        None,
        None,
        ["no_forecast"],
    )
    c = _user(report, C)
    assert (c["actual_total"], c["variance"], c["flags"]) == (0, -500, ["well_below_forecast"])
    d = _user(report, D)
    assert [(s["srv"], s["flags"]) for s in d["services"]] == [
        ("4.1.1", []),
        ("6.15.1", ["no_forecast"]),
    ]
    assert d["flags"] == ["no_forecast"]  # an SRV sent without a forecast flags the User
    summary = report["summary"]
    assert summary["users_without_forecast"] == [B]
    assert summary["users_flagged"] == {
        "no_forecast": [B, D],
        "exceptional_demand": [],
        "well_below_forecast": [C],
    }
    assert (summary["actual_total"], summary["forecast_total"]) == (1541 + 7 + 103, 1700)


def test_exactly_150_percent_is_not_exceptional_and_a_zero_forecast_is() -> None:
    report = variance_report(
        "2027-01",
        {A: {"4.1.1": {"accepted": 150}, "7.2": {"accepted": 1}}},
        {A: {"4.1.1": 100, "7.2": 0}},
        complete=True,
    )
    s411, s72 = _user(report, A)["services"]
    assert s411["flags"] == []
    assert (s72["flags"], s72["variance_ratio"]) == (["exceptional_demand"], None)


def test_a_month_in_progress_is_not_judged_well_below() -> None:
    report = variance_report("2027-01", {}, {C: {"4.1.1": 500}}, complete=False)
    assert report["complete"] is False
    assert _user(report, C)["flags"] == []


def test_csv_has_a_row_per_user_and_srv_and_a_total() -> None:
    report = variance_report("2027-01", ACTUALS, FORECASTS, complete=True)
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert tuple(rows[0]) == CSV_COLUMNS
    a_rows = [r for r in rows[1:] if r[1] == A]
    assert [r[2] for r in a_rows] == ["4.1.1", "7.2", "total"]
    assert a_rows[0] == [
        "2027-01", A, "4.1.1", "1000", "1501", "1400", "20", "80", "1", "501", "1.501",
        "exceptional_demand",
    ]  # fmt: skip
    b_total = next(r for r in rows if r[1] == B and r[2] == "total")
    assert (b_total[3], b_total[9], b_total[11]) == ("", "", "no_forecast")
