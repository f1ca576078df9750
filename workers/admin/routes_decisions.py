"""`GET /v1/decisions/{request_id}`: why a request was decided as it was.

The answer gathers what the admin process keeps about one request: every answer it got on
`dcc.user.responses`, oldest first (outcome, code, rule, observed value and limit, reason,
time in ISO 8601 UTC), from the decision log (`decisions`, bounded: its `retention` is in
the answer); and, if it was quarantined, its quarantine state and history (quarantined by
which rule, then released, deleted or expired, when and by whom) from the quarantine book
and the audit trail.

Who may: an operator, any request; a User token, only what concerns its own User. Another
User's request answers 404 exactly as one never seen, so request IDs cannot be probed.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
import orjson
from aiohttp import web

from broker.schemas import AuditRecord, UserResponse
from workers.admin.context import AdminContext
from workers.admin.decisions import MAX_REQUEST_ID_CHARS
from workers.admin.routing import WHO_OWN_READ, ApiError, Route
from workers.admin.tokens import Principal

__all__ = [
    "DECISION_ROUTES",
    "Answer",
    "Explanation",
    "QuarantineEvent",
    "QuarantineState",
    "Retention",
    "explain",
]

_AUDIT_SCAN = 10_000
"""Most audit records whose key starts with the request's key read for its history (the
key of `...:1` also starts `...:10`, `...:100`: the exact key is kept of those)."""
_HISTORY_MAX = 100
"""Most decisions shown in one request's quarantine history (a decision retried after a
failed send is audited once per attempt)."""
_encode = msgspec.json.Encoder().encode


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One answer the request got on `dcc.user.responses` (docs/contract.md)."""

    at: str
    """When it was decided, ISO 8601 UTC (also `at_ms`, epoch milliseconds)."""
    at_ms: int
    user_id: str
    outcome: str
    response_code: str
    rule: str | None
    observed: int | float | str | None
    limit: int | float | None
    retry_after_ms: int | None
    reason: str


class QuarantineEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a quarantined request's life: `quarantined`, then `released`,
    `deleted` or `expired`; `by` who (a rule for `quarantined`); `bulk` the filters of the
    bulk decision it was part of, if any."""

    at: str
    event: str
    by: str | None
    note: str | None = None
    bulk: dict[str, Any] | None = None


class QuarantineState(msgspec.Struct, frozen=True, kw_only=True):
    """The request's quarantine entry as the quarantine book holds it, and its history."""

    state: str
    kind: str
    srv: str
    rule: str
    reason: str
    observed: int | float | str | None
    limit: int | float | None
    quarantined_at: str
    decided_at: str | None
    decided_by: str | None
    note: str
    history: list[QuarantineEvent]


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    """How long answers are kept: `max_answers` in all, `max_age_s` after a request's
    latest answer; `answers_kept` now; `oldest_at` the least recently answered request
    kept; `caught_up` false while the admin process is still reading the topic."""

    max_answers: int
    max_age_s: float
    answers_kept: int
    oldest_at: str | None
    caught_up: bool


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """Why a request was decided as it was: every answer kept, oldest first
    (`answers_omitted` left out between the first and the latest when it got very many),
    and its quarantine state and history (null if it was never quarantined, or decided
    more than 30 days ago)."""

    request_id: str
    answers: list[Answer]
    answers_omitted: int
    quarantine: QuarantineState | None
    retention: Retention


def _iso_s(at_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. 2026-01-31T09:00:00.250Z."""
    return _iso_ms(round(at_s * 1000))


def _iso_ms(at_ms: int) -> str:
    try:
        when = datetime.datetime.fromtimestamp(at_ms // 1000, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"@{at_ms}ms"  # outside what datetime can show: never refuse the answer
    return f"{when:%Y-%m-%dT%H:%M:%S}.{at_ms % 1000:03d}Z"


def _answer(a: UserResponse) -> Answer:
    return Answer(
        at=_iso_ms(a.at_ms),
        at_ms=a.at_ms,
        user_id=a.user_id,
        outcome=a.outcome,
        response_code=a.response_code,
        rule=a.rule,
        observed=a.observed,
        limit=a.limit,
        retry_after_ms=a.retry_after_ms,
        reason=a.reason,
    )


def _history(entry: dict[str, Any], audits: list[AuditRecord]) -> list[QuarantineEvent]:
    """Quarantined, then each decision the audit trail recorded (oldest first); the book's
    own decision when the audit trail no longer has it."""
    events = [QuarantineEvent(at=_iso_s(entry["at_s"]), event="quarantined", by=entry["rule"])]
    for record in audits:
        try:
            new = orjson.loads(bytes(record.new))
        except orjson.JSONDecodeError:
            new = None
        new = new if isinstance(new, dict) else {}
        bulk = new.get("bulk")
        note = new.get("note")
        events.append(
            QuarantineEvent(
                at=_iso_ms(record.at_ms),
                event=str(new.get("state") or record.action.removeprefix("quarantine.")),
                by=record.by,
                note=note if isinstance(note, str) else None,
                # The filters given (the audit record also names those not given, as null).
                bulk={k: v for k, v in bulk.items() if v is not None}
                if isinstance(bulk, dict)
                else None,
            )
        )
    if len(events) == 1 and entry.get("decided_at_s") is not None:
        events.append(
            QuarantineEvent(
                at=_iso_s(entry["decided_at_s"]),
                event=entry["state"],
                by=entry.get("decided_by"),
                note=entry.get("note") or None,
            )
        )
    return events


def explain(
    request_id: str,
    answers: list[UserResponse],
    omitted: int,
    entry: dict[str, Any] | None,
    audits: list[AuditRecord],
    retention: Retention,
) -> Explanation:
    """The explanation of `request_id` from what is kept about it (already filtered to
    what the caller may see). `entry`: the quarantine service's entry; `audits`: the
    audit records of its key `quarantine/<request_id>`, newest first as the log answers."""
    quarantine = None
    if entry is not None:
        observed, limit = entry.get("observed"), entry.get("limit")
        if observed is None:  # decided: the book no longer holds the numbers, the answer does
            caught = [a for a in answers if a.outcome == "quarantined" and a.observed is not None]
            if caught:
                observed, limit = caught[0].observed, caught[0].limit
        decided_at = entry.get("decided_at_s")
        quarantine = QuarantineState(
            state=entry["state"],
            kind=entry["kind"],
            srv=entry["srv"],
            rule=entry["rule"],
            reason=entry["reason"],
            observed=observed,
            limit=limit,
            quarantined_at=_iso_s(entry["at_s"]),
            decided_at=None if decided_at is None else _iso_s(decided_at),
            decided_by=entry.get("decided_by"),
            note=entry.get("note", ""),
            history=_history(entry, sorted(audits, key=lambda r: r.at_ms)),
        )
    return Explanation(
        request_id=request_id,
        answers=[_answer(a) for a in answers],
        answers_omitted=omitted,
        quarantine=quarantine,
        retention=retention,
    )


def _not_found(request_id: str, max_age_s: float) -> ApiError:
    # The same words whether the request is unknown or another User's: nothing to probe.
    return ApiError(
        404,
        f"no decision kept for request {request_id[:MAX_REQUEST_ID_CHARS]}: answers are kept "
        f"{max_age_s / 3600:g} h at most (quarantine decisions 30 days); check the ID",
    )


async def _decision(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    request_id = request.match_info["request_id"]
    log = api.decisions
    index = log.index
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise _not_found(request_id, index.max_age_s)
    remembered = log.get(request_id)
    answers = [] if remembered is None else remembered.answers
    omitted = 0 if remembered is None else remembered.omitted
    entry = api.quarantine.get(request_id)
    if not principal.is_operator:
        answers = [a for a in answers if a.user_id == principal.user_id]
        if entry is not None and entry.get("user_id") != principal.user_id:
            entry = None
        if not answers:
            omitted = 0
    if not answers and entry is None:
        raise _not_found(request_id, index.max_age_s)
    audits: list[AuditRecord] = []
    if entry is not None:
        key = f"quarantine/{request_id}"
        matches = api.audit.query(key_prefix=key, limit=_AUDIT_SCAN)
        audits = [r for r in matches if r.key == key][:_HISTORY_MAX]
    oldest = index.oldest_s
    retention = Retention(
        max_answers=index.max_answers,
        max_age_s=index.max_age_s,
        answers_kept=len(index),
        oldest_at=None if oldest is None else _iso_s(oldest),
        caught_up=log.caught_up,
    )
    body = explain(request_id, answers, omitted, entry, audits, retention)
    return web.Response(body=_encode(body), content_type="application/json")


DECISION_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/decisions/{request_id}",
        _decision,
        "Why a request was decided: its answers, rules, observed values and limits, and its "
        "quarantine history (a User token: its own requests only; another's answer 404)",
        WHO_OWN_READ,
        answer=Explanation,
    ),
)
