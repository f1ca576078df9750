"""The admin API's quarantine routes (SEC G6 (c)): list, and decide one or in bulk.

Who may: an operator, any request; a User token, only its own (the USER part of a
RequestID, or the `user_id` filter), checked before anything is looked up so a User learns
nothing about another User's requests.

- `GET /v1/quarantine?user_id=&rule=&kind=&state=&from=&to=&limit=`: the requests that
  match every filter given, oldest first (default: pending; `state=any` for all).
- `POST /v1/quarantine/{request_id}/release|delete`: one decision; 409 if already decided
  or being decided right now; 503 if Kafka did not acknowledge it (still pending: retry).
- `POST /v1/quarantine/release|delete` with a `BulkDecision` body: every pending request
  that matches (at most `limit`), each decided exactly as one at a time; the matching ones
  already decided (or being decided) are answered as `skipped` with the reason, never
  decided twice; 503 with `failed` if some were not acknowledged (still pending: call again).

`from` and `to` are RFC 3339 times with a zone (`2026-01-31T09:00:00Z`) and bound when a
request was quarantined: from <= quarantined < to.
"""

from __future__ import annotations

import datetime
from typing import Annotated, get_args

import msgspec
from aiohttp import web

from adt import BreachKind, QuarantineState
from workers.admin.context import AdminContext
from workers.admin.quarantine import (
    BULK_LIMIT,
    DecisionKind,
    DecisionNotSentError,
    DecisionRefusedError,
    Selection,
)
from workers.admin.routing import (
    FORBIDDEN,
    WHO_OWN_READ,
    WHO_OWN_WRITE,
    ApiError,
    Handler,
    QueryParam,
    Route,
    int_param,
    json_answer,
    need_user_access,
    read_body,
)
from workers.admin.tokens import Principal
from workers.config.explain import describe
from workers.config.model import USER_ID_PATTERN

__all__ = ["LIST_LIMIT", "QUARANTINE_ROUTES", "BulkDecision"]

LIST_LIMIT = 10_000
"""Most requests one listing answers."""
_LIST_DEFAULT = 1000
_RULE_MAX = 200
_STATES: tuple[str, ...] = (*get_args(QuarantineState), "any")
_KINDS: tuple[str, ...] = get_args(BreachKind)

_Time = Annotated[datetime.datetime, msgspec.Meta(tz=True)]


class BulkDecision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which pending quarantined requests to release or delete: every filter given must
    match, and at least one must be given (a User deciding on all its own gives its
    `user_id`).

    user_id: whose requests (a User token: only its own). rule: the rule id that caught
    them, e.g. `user:90-B3-D5-1F-30-01-00-00:7.2:3600`. kind: `user_adt`, `dcc_adt` or
    `data_value`. from, to: RFC 3339 with a zone; from <= quarantined < to. limit: at most
    this many decided per call (1000); the answer's `more` says whether to call again.
    """

    user_id: Annotated[str, msgspec.Meta(pattern=USER_ID_PATTERN)] | None = None
    rule: Annotated[str, msgspec.Meta(min_length=1, max_length=_RULE_MAX)] | None = None
    kind: BreachKind | None = None
    from_: _Time | None = msgspec.field(default=None, name="from")
    to: _Time | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=BULK_LIMIT)] = BULK_LIMIT


def _epoch_s(when: datetime.datetime, name: str) -> float:
    try:
        return when.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ApiError(
            422, f"{name} is out of range: give a time like 2026-01-31T09:00:00Z"
        ) from None


def _query_time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        when = datetime.datetime.fromisoformat(raw)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ApiError(
            422,
            f"query parameter {name} must be an RFC 3339 time with a zone, e.g. "
            "2026-01-31T09:00:00Z",
        )
    return _epoch_s(when, name)


def _query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in choices:
        raise ApiError(422, f"query parameter {name} must be one of {', '.join(choices)}")
    return raw


def _check_range(from_s: float | None, until_s: float | None) -> None:
    if from_s is not None and until_s is not None and not from_s < until_s:
        raise ApiError(422, "`from` must be before `to` (from <= quarantined < to)")


def _own_user(principal: Principal, user_id: str | None) -> str | None:
    """The User filter a principal may use: a User token only its own (403 otherwise)."""
    if principal.is_operator:
        return user_id
    if user_id is not None and user_id != principal.user_id:
        raise ApiError(403, FORBIDDEN)
    return principal.user_id


async def _list(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    user_id = _own_user(principal, request.query.get("user_id"))
    rule = request.query.get("rule")
    if rule is not None and not 0 < len(rule) <= _RULE_MAX:
        raise ApiError(422, f"query parameter rule must be 1 to {_RULE_MAX} characters")
    state = _query_choice(request, "state", _STATES) or "pending"
    from_s, until_s = _query_time(request, "from"), _query_time(request, "to")
    _check_range(from_s, until_s)
    limit = int_param(request, "limit", _LIST_DEFAULT, 1, LIST_LIMIT)
    selection = Selection(
        rule=rule,
        kind=_query_choice(request, "kind", _KINDS),  # type: ignore[arg-type]
        state=None if state == "any" else state,  # type: ignore[arg-type]
        from_s=from_s,
        until_s=until_s,
    )
    items = api.quarantine.list(user_id, selection, limit=limit + 1)
    return json_answer({"items": items[:limit], "more": len(items) > limit})


def _decision(decision: DecisionKind) -> Handler:
    async def decide(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
        request_id = request.match_info["request_id"]
        # The owner is the USER part of the RequestID: checked before anything is looked up,
        # so a User learns nothing about another User's requests.
        need_user_access(principal, request_id.partition(":")[0])
        try:
            result = await api.quarantine.decide(request_id, decision, principal)
        except DecisionRefusedError as exc:
            raise ApiError(409, str(exc)) from None
        except DecisionNotSentError as exc:
            raise ApiError(503, str(exc)) from None
        if result is None:
            raise ApiError(404, f"no quarantined request {request_id}")
        return json_answer(result)

    return decide


def _bulk(decision: DecisionKind) -> Handler:
    async def decide_many(
        api: AdminContext, request: web.Request, principal: Principal
    ) -> web.Response:
        doc = await read_body(request)
        try:
            body = msgspec.convert(doc, BulkDecision)
        except msgspec.ValidationError as exc:
            raise ApiError(422, f"invalid bulk decision: {describe(exc, BulkDecision)}") from None
        user_id = _own_user(principal, body.user_id)
        if all(v is None for v in (body.user_id, body.rule, body.kind, body.from_, body.to)):
            raise ApiError(
                422,
                "give at least one filter: user_id, rule, kind, from or to (to decide on "
                "every pending request of a User, give its user_id)",
            )
        from_s = None if body.from_ is None else _epoch_s(body.from_, "from")
        until_s = None if body.to is None else _epoch_s(body.to, "to")
        _check_range(from_s, until_s)
        selection = Selection(
            user_id=user_id, rule=body.rule, kind=body.kind, from_s=from_s, until_s=until_s
        )
        result = await api.quarantine.decide_many(decision, principal, selection, limit=body.limit)
        # Some not acknowledged by Kafka (still pending): 503 with the whole answer, so the
        # caller sees what was decided and calls again for the rest.
        return json_answer(result, 503 if result.get("failed") else 200)

    return decide_many


_LIST_QUERY = (
    QueryParam("user_id", {"type": "string", "pattern": USER_ID_PATTERN},
               "only this User's (a User token: its own only)"),
    QueryParam("rule", {"type": "string", "minLength": 1, "maxLength": _RULE_MAX},
               "only those caught by this rule id"),
    QueryParam("kind", {"type": "string", "enum": list(_KINDS)}, "only this kind of rule"),
    QueryParam("state", {"type": "string", "enum": list(_STATES)},
               "pending (the default), released, deleted, expired, or any"),
    QueryParam("from", {"type": "string", "format": "date-time"},
               "quarantined at or after this RFC 3339 time"),
    QueryParam("to", {"type": "string", "format": "date-time"},
               "quarantined before this RFC 3339 time"),
    QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT},
               f"at most this many ({_LIST_DEFAULT}); `more` says whether there are others"),
)  # fmt: skip

_NOT_SENT = (("503", "not acknowledged by Kafka: still pending, try again"),)

QUARANTINE_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/quarantine", _list,
          "List quarantined requests, oldest first (default: pending)", WHO_OWN_READ,
          query=_LIST_QUERY),
    Route("POST", "/v1/quarantine/release", _bulk("release"),
          "Release every pending request matching the filters, forwarding each once",
          WHO_OWN_WRITE, body=BulkDecision, errors=_NOT_SENT),
    Route("POST", "/v1/quarantine/delete", _bulk("delete"),
          "Delete every pending request matching the filters", WHO_OWN_WRITE, body=BulkDecision,
          errors=_NOT_SENT),
    Route("POST", "/v1/quarantine/{request_id}/release", _decision("release"),
          "Release a quarantined request for processing", WHO_OWN_WRITE, errors=_NOT_SENT),
    Route("POST", "/v1/quarantine/{request_id}/delete", _decision("delete"),
          "Delete a quarantined request", WHO_OWN_WRITE, errors=_NOT_SENT),
)  # fmt: skip
