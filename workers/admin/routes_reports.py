"""The admin API's reports: the monthly Service Request variance report (SEC H3.24),
`GET /v1/reports/sr-variance?month=YYYY-MM`, as JSON or CSV (`?format=csv`, or
`Accept: text/csv`). An operator sees every User; a User token its own row only.
"""

from __future__ import annotations

import time

from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.report import report_csv, variance_report
from workers.admin.routes_forecasts import month_query
from workers.admin.routing import WHO_OWN_READ, ApiError, QueryParam, Route, json_answer
from workers.admin.tokens import Principal
from workers.config.forecasts import forecasts_of_month
from workers.config.model import MONTH_PATTERN
from workers.config.months import month_index, month_of_s

__all__ = ["REPORT_ROUTES"]

_FORMATS = ("json", "csv")


def _format(request: web.Request) -> str:
    raw = request.query.get("format")
    if raw is None:
        accept = request.headers.get("Accept", "")
        return "csv" if "text/csv" in accept and "application/json" not in accept else "json"
    if raw not in _FORMATS:
        raise ApiError(422, "query parameter format must be json or csv")
    return raw


async def _sr_variance(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    month = month_query(request, required=True) or ""
    fmt = _format(request)
    current = month_of_s(time.time())
    if month_index(month) > month_index(current):
        raise ApiError(422, f"month {month} has not started (it is now {current})")
    if not api.actuals.ready:
        raise ApiError(
            503,
            "the Service Request counts are still being restored or caught up (or this "
            "process does not count them); retry in a few seconds",
        )
    snapshot = api.reader.snapshot
    actuals = {u: c for u, c in api.actuals.month(month).items() if principal.may_act_for(u)}
    forecasts = {
        u: dict(f.counts)
        for u, f in forecasts_of_month(snapshot, month).items()
        if principal.may_act_for(u)
    }
    names = {u: user.name for u, user in snapshot.users.items() if principal.may_act_for(u)}
    report = variance_report(month, actuals, forecasts, complete=month != current, names=names)
    if fmt == "csv":
        return web.Response(
            text=report_csv(report),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="sr-variance-{month}.csv"'},
        )
    return json_answer(report)


REPORT_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/reports/sr-variance",
        _sr_variance,
        "The monthly Service Request variance report (SEC H3.24): per User, in total and per "
        "SRV, actual against forecast, variance and flags (a User token sees its own)",
        WHO_OWN_READ,
        query=(
            QueryParam(
                "month", {"type": "string", "pattern": MONTH_PATTERN}, "the month (required)"
            ),
            QueryParam(
                "format",
                {"type": "string", "enum": list(_FORMATS)},
                "json (default) or csv; `Accept: text/csv` also gives CSV",
            ),
        ),
        errors=(
            ("422", "month missing, not YYYY-MM, or not started; format not json or csv"),
            ("503", "the counts are not restored yet: retry"),
        ),
    ),
)
