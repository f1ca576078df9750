"""The monthly Service Request variance report (SEC H3.24): per User, in total and per
SRV, the requests it sent against its forecast for the month, the variance, and flags.

Flags (docs/forecasts.md):

- `no_forecast`: requests were sent for an SRV (or, on the User's total, at all) with no
  forecast for that month and SRV. This is what the DCC reported to its Operations Group
  ("16 Users are submitting Service Requests without having submitted the relevant
  forecasts").
- `exceptional_demand`: actual above EXCEPTIONAL_DEMAND_RATIO (150%) of the forecast, the
  threshold the SEC used for "exceptional demand" of CSRs in MP160 (DOMAIN.md section 8).
  A forecast of 0 with requests sent is exceptional too.
- `well_below_forecast`: actual under WELL_BELOW_RATIO (50%) of a forecast above 0: the
  mirror of 150%, capacity planned for and not used. Not judged while the month is still
  running (`complete: false`), when every User is still below its forecast.

"Actual" is every request the User sent that got a first decision (accepted, rejected,
throttled or quarantined; workers/admin/actuals.py): H3.24 counts what a User *sent*; the
breakdown by outcome is in each row. Pure: the caller passes the counts, the forecasts and
whether the month is over.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Final

from workers.admin.actuals import COUNTED_OUTCOMES, MonthCounts

__all__ = [
    "CSV_COLUMNS",
    "EXCEPTIONAL_DEMAND_RATIO",
    "WELL_BELOW_RATIO",
    "report_csv",
    "variance_report",
]

EXCEPTIONAL_DEMAND_RATIO: Final = 1.5
WELL_BELOW_RATIO: Final = 0.5
CSV_COLUMNS: Final = (
    "month",
    "user_id",
    "srv",
    "forecast",
    "actual",
    *COUNTED_OUTCOMES,
    "variance",
    "variance_ratio",
    "flags",
)


def _flags(forecast: int | None, actual: int, *, complete: bool) -> list[str]:
    if forecast is None:
        return ["no_forecast"] if actual > 0 else []
    if actual > EXCEPTIONAL_DEMAND_RATIO * forecast:
        return ["exceptional_demand"]
    if complete and forecast > 0 and actual < WELL_BELOW_RATIO * forecast:
        return ["well_below_forecast"]
    return []


def _row(
    srv: str, forecast: int | None, by_outcome: Mapping[str, int], *, complete: bool
) -> dict[str, Any]:
    outcomes = {o: by_outcome.get(o, 0) for o in COUNTED_OUTCOMES}
    actual = sum(outcomes.values())
    return {
        "srv": srv,
        "forecast": forecast,
        "actual": actual,
        "by_outcome": outcomes,
        "variance": None if forecast is None else actual - forecast,
        "variance_ratio": None if not forecast else round(actual / forecast, 4),
        "flags": _flags(forecast, actual, complete=complete),
    }


def _user_report(
    user_id: str,
    name: str | None,
    actuals: MonthCounts,
    forecast: Mapping[str, int] | None,
    *,
    complete: bool,
) -> dict[str, Any]:
    srvs = sorted(set(actuals) | set(forecast or {}), key=_srv_order)
    services = [
        _row(
            srv,
            None if forecast is None or srv not in forecast else forecast[srv],
            actuals.get(srv, {}),
            complete=complete,
        )
        for srv in srvs
    ]
    by_outcome = {o: sum(s["by_outcome"][o] for s in services) for o in COUNTED_OUTCOMES}
    total = _row("total", None if forecast is None else sum(forecast.values()), by_outcome,
                 complete=complete)  # fmt: skip
    flags = list(total["flags"])
    if any("no_forecast" in s["flags"] for s in services) and "no_forecast" not in flags:
        flags.append("no_forecast")
    return {
        "user_id": user_id,
        "name": name,
        "has_forecast": forecast is not None,
        "forecast_total": total["forecast"],
        "actual_total": total["actual"],
        "by_outcome": by_outcome,
        "variance": total["variance"],
        "variance_ratio": total["variance_ratio"],
        "flags": flags,
        "services": services,
    }


def _srv_order(srv: str) -> tuple[int, tuple[int, ...], str]:
    parts = srv.split(".")
    if all(p.isdigit() for p in parts):
        return (0, tuple(int(p) for p in parts), srv)
    return (1, (), srv)


def variance_report(
    month: str,
    actuals: Mapping[str, MonthCounts],
    forecasts: Mapping[str, Mapping[str, int]],
    *,
    complete: bool,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report for `month` (YYYY-MM).

    actuals: User ID -> SRV -> outcome -> requests (workers/admin/actuals.py).
    forecasts: User ID -> SRV -> forecast requests (the forecast in force for the month).
    complete: the month is over (else `well_below_forecast` is not judged).
    names: User ID -> name, for the Users registered now.
    """
    names = names or {}
    users = sorted(set(actuals) | set(forecasts))
    rows = [
        _user_report(u, names.get(u), actuals.get(u, {}), forecasts.get(u), complete=complete)
        for u in users
    ]
    return {
        "month": month,
        "complete": complete,
        "thresholds": {
            "exceptional_demand_ratio": EXCEPTIONAL_DEMAND_RATIO,
            "well_below_ratio": WELL_BELOW_RATIO,
        },
        "summary": {
            "users": len(rows),
            "actual_total": sum(r["actual_total"] for r in rows),
            "forecast_total": sum(r["forecast_total"] or 0 for r in rows),
            "users_without_forecast": [
                r["user_id"] for r in rows if r["actual_total"] > 0 and not r["has_forecast"]
            ],
            "users_flagged": {
                flag: [r["user_id"] for r in rows if flag in r["flags"]]
                for flag in ("no_forecast", "exceptional_demand", "well_below_forecast")
            },
        },
        "users": rows,
    }


def report_csv(report: Mapping[str, Any]) -> str:
    """The report as CSV: one row per User and SRV, then the User's `total` row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    month = report["month"]
    for user in report["users"]:
        total = {
            "srv": "total",
            "forecast": user["forecast_total"],
            "actual": user["actual_total"],
            "by_outcome": user["by_outcome"],
            "variance": user["variance"],
            "variance_ratio": user["variance_ratio"],
            "flags": user["flags"],
        }
        for row in (*user["services"], total):
            writer.writerow(
                (
                    month,
                    user["user_id"],
                    row["srv"],
                    "" if row["forecast"] is None else row["forecast"],
                    row["actual"],
                    *(row["by_outcome"][o] for o in COUNTED_OUTCOMES),
                    "" if row["variance"] is None else row["variance"],
                    "" if row["variance_ratio"] is None else row["variance_ratio"],
                    " ".join(row["flags"]),
                )
            )
    return out.getvalue()
