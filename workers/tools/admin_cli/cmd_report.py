"""`dccgate admin report sr-variance`: the monthly Service Request variance report
(SEC H3.24) as a table, JSON (--json) or CSV (--csv)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from workers.tools.admin_cli.command import Ctx, uid
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.formatting import format_table
from workers.tools.admin_cli.tree import Tree

__all__ = ["register", "render_report"]

_OUTCOMES = ("accepted", "rejected", "throttled", "quarantined")
_HEADERS = (
    "USER ID", "SRV", "FORECAST", "ACTUAL", "ACCEPTED", "REJECTED", "THROTTLED",
    "QUARANTINED", "VARIANCE", "ACTUAL/FORECAST", "FLAGS",
)  # fmt: skip


def _ratio(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "-"


def _row(user_id: str, srv: str, row: Mapping[str, Any]) -> list[object]:
    by = row.get("by_outcome") or {}
    variance = row.get("variance")
    return [
        user_id,
        srv,
        row.get("forecast"),
        row.get("actual"),
        *(by.get(o, 0) for o in _OUTCOMES),
        f"{variance:+d}" if isinstance(variance, int) else None,
        _ratio(row.get("variance_ratio")),
        " ".join(row.get("flags") or []) or None,
    ]


def render_report(doc: Mapping[str, Any], *, users: Sequence[str] = ()) -> str:
    """The report as text: a header, one row per User and SRV then the User's total, and
    the Users flagged."""
    month = doc.get("month")
    state = "complete" if doc.get("complete") else "in progress (well below is not judged yet)"
    thresholds = doc.get("thresholds") or {}
    lines = [
        f"Service Request variance report (SEC H3.24), {month}: {state}",
        f"flags: exceptional_demand above {_ratio(thresholds.get('exceptional_demand_ratio'))}"
        f" of forecast, well_below_forecast under "
        f"{_ratio(thresholds.get('well_below_ratio'))}, no_forecast: sent with none",
        "",
    ]
    rows: list[list[object]] = []
    for user in doc.get("users", []):
        user_id = user.get("user_id", "?")
        if users and user_id not in users:
            continue
        for service in user.get("services", []):
            rows.append(_row(user_id, service.get("srv", "?"), service))
        rows.append(
            _row(
                user_id,
                "TOTAL",
                {
                    "forecast": user.get("forecast_total"),
                    "actual": user.get("actual_total"),
                    "by_outcome": user.get("by_outcome"),
                    "variance": user.get("variance"),
                    "variance_ratio": user.get("variance_ratio"),
                    "flags": user.get("flags"),
                },
            )
        )
    table = format_table(_HEADERS, rows, empty="no Service Requests and no forecasts")
    summary = doc.get("summary") or {}
    flagged = summary.get("users_flagged") or {}
    tail = [
        "",
        f"Users sending without a forecast: {', '.join(flagged.get('no_forecast') or []) or '-'}",
        f"Users above 150% of forecast: "
        f"{', '.join(flagged.get('exceptional_demand') or []) or '-'}",
        f"Users well below forecast: {', '.join(flagged.get('well_below_forecast') or []) or '-'}",
    ]
    return "\n".join(lines) + "\n" + table + "\n".join(tail) + "\n"


def _sr_variance(ctx: Ctx, args: argparse.Namespace) -> int:
    query = {"month": args.month}
    if args.csv:
        if ctx.as_json:
            raise AdminCliError("give --json or --csv, not both", exit_code=2)
        ctx.out.write(
            ctx.client.call_text(
                "/v1/reports/sr-variance", accept="text/csv", query={**query, "format": "csv"}
            )
        )
        return 0
    doc = ctx.client.call("GET", "/v1/reports/sr-variance", query=query)
    users = [args.user] if args.user else []
    return ctx.show(doc, lambda: render_report(doc, users=users))


def register(t: Tree) -> None:
    """Add `report sr-variance`."""
    res = t.resource("report", "reports: the monthly Service Request variance (SEC H3.24)")
    p = t.leaf(
        res,
        "sr-variance",
        _sr_variance,
        "each User's Service Requests of a month against its forecast, per SRV, with flags",
    )
    p.add_argument("--month", required=True, metavar="YYYY-MM", help="the month, e.g. 2027-01")
    p.add_argument("--csv", action="store_true", help="print the API's CSV instead of a table")
    p.add_argument("--user", type=uid, metavar="USER_ID", help="only this User's rows")
