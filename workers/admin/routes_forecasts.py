"""The admin API's Service Request forecasts (SEC H3.24): each User's count per SRV for a
month, submitted by the User (or an operator), versioned on `dcc.control` at
`forecasts/<user_id>/<YYYY-MM>` and audited like every other item.

A forecast may be written for the current month and up to FORECAST_HORIZON_MONTHS ahead,
never for a month that is over: the variance report compares a month's actuals with the
forecast in force when the month ended.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.routes_config import convert_body
from workers.admin.routing import (
    FORBIDDEN,
    WHO_OWN_READ,
    WHO_OWN_WRITE,
    ApiError,
    QueryParam,
    Route,
    etag,
    expected_version,
    json_answer,
    need_user_access,
    read_body,
    user_id_param,
    with_version,
)
from workers.admin.tokens import Principal
from workers.config.forecasts import FORECASTS
from workers.config.model import KINDS, MONTH_PATTERN, USER_ID_PATTERN
from workers.config.months import month_index, month_of_s, parse_month

__all__ = ["FORECAST_HORIZON_MONTHS", "FORECAST_ROUTES", "month_param", "month_query"]

FORECAST_HORIZON_MONTHS = 24
"""How far ahead a forecast may be written: the current month and the next 24."""
_PREFIX = FORECASTS.name + "/"


def month_param(request: web.Request) -> str:
    """The `{month}` of the path, checked (422 naming the form when it is not YYYY-MM)."""
    return _checked_month(request.match_info["month"], "the month in the path")


def month_query(request: web.Request, *, required: bool) -> str | None:
    """Query parameter `month` (YYYY-MM), checked; None when absent and not required."""
    raw = request.query.get("month")
    if raw is None:
        if required:
            raise ApiError(422, "query parameter month is required: ?month=YYYY-MM")
        return None
    return _checked_month(raw, "query parameter month")


def _checked_month(raw: str, what: str) -> str:
    try:
        parse_month(raw)
    except ValueError as exc:
        raise ApiError(422, f"{what}: {exc}") from None
    return raw


def _writable_month(month: str, now_s: float) -> None:
    """422 unless `month` is the current month or one of the next FORECAST_HORIZON_MONTHS."""
    current = month_of_s(now_s)
    ahead = month_index(month) - month_index(current)
    if ahead < 0:
        raise ApiError(
            422,
            f"month {month} is over (it is now {current}): forecasts are for the current "
            "month or later; the variance report keeps the forecast that was in force",
        )
    if ahead > FORECAST_HORIZON_MONTHS:
        raise ApiError(
            422,
            f"month {month} is more than {FORECAST_HORIZON_MONTHS} months ahead of {current}; "
            "forecast nearer months first",
        )


def _need_user(api: AdminContext, user_id: str) -> None:
    if api.reader.snapshot.get(KINDS["users"].key(user_id)) is None:
        raise ApiError(404, f"no User {user_id}: PUT /v1/users/{user_id} first")


async def _get(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = user_id_param(request)
    need_user_access(principal, user_id)
    month = month_param(request)
    key = FORECASTS.key(user_id, month)
    item = api.reader.snapshot.get(key)
    if item is None:
        raise ApiError(404, f"no forecast of User {user_id} for {month}")
    return json_answer(_entry(key, with_version(item)), headers=etag(item))


async def _put(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = user_id_param(request)
    need_user_access(principal, user_id)
    month = month_param(request)
    _writable_month(month, time.time())
    _need_user(api, user_id)
    doc = await read_body(request)
    expected = expected_version(request, doc)
    body = convert_body(FORECASTS, user_id, doc)
    key = FORECASTS.key(user_id, month)
    item = await api.writer.put(key, body, by=principal.label(), expected_version=expected)
    return json_answer(_entry(key, with_version(item)), headers=etag(item))


async def _delete(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = user_id_param(request)
    need_user_access(principal, user_id)
    month = month_param(request)
    _writable_month(month, time.time())
    expected = expected_version(request, {})
    key = FORECASTS.key(user_id, month)
    if not await api.writer.delete(key, by=principal.label(), expected_version=expected):
        raise ApiError(404, f"no forecast of User {user_id} for {month}")
    return json_answer({"deleted": key})


def _entry(key: str, doc: dict[str, Any]) -> dict[str, Any]:
    user_id, _, month = key[len(_PREFIX) :].partition("/")
    counts = doc.get("counts", {})
    return {"user_id": user_id, "month": month, "total": sum(counts.values()), **doc}


async def _list(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    month = month_query(request, required=False)
    wanted = request.query.get("user_id")
    if wanted is not None:
        wanted = wanted.strip().upper()
        if not principal.may_act_for(wanted):
            raise ApiError(403, FORBIDDEN)
    items = []
    for key, item in sorted(api.reader.snapshot.items.items()):
        if not key.startswith(_PREFIX):
            continue
        user_id, _, item_month = key[len(_PREFIX) :].partition("/")
        if not principal.may_act_for(user_id):
            continue
        if (wanted is not None and user_id != wanted) or (
            month is not None and item_month != month
        ):
            continue
        items.append(_entry(key, with_version(item)))
    return json_answer({"items": items})


_PATH = "/v1/forecasts/{user_id}/{month}"
_MONTH_ERRORS = (("422", "the month is not YYYY-MM, is over, or is too far ahead"),)

FORECAST_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/forecasts",
        _list,
        "List forecasts, filtered by month and/or User (a User token sees its own)",
        WHO_OWN_READ,
        query=(
            QueryParam("month", {"type": "string", "pattern": MONTH_PATTERN}, "only this month"),
            QueryParam("user_id", {"type": "string", "pattern": USER_ID_PATTERN}, "only this User"),
        ),
    ),
    Route(
        "GET",
        _PATH,
        _get,
        "Get a User's Service Request forecast for a month (SEC H3.24)",
        WHO_OWN_READ,
        answer=FORECASTS.body,
    ),
    Route(
        "PUT",
        _PATH,
        _put,
        "Set a User's Service Request forecast for a month, per SRV (SEC H3.24)",
        WHO_OWN_WRITE,
        body=FORECASTS.body,
        answer=FORECASTS.body,
        errors=_MONTH_ERRORS,
    ),
    Route(
        "DELETE",
        _PATH,
        _delete,
        "Withdraw a User's forecast for the current or a coming month",
        WHO_OWN_WRITE,
        errors=_MONTH_ERRORS,
    ),
)
