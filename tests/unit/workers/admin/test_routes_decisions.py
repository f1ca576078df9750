"""`GET /v1/decisions/{request_id}`: what it answers, and to whom (another User: 404)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from broker.schemas import AuditRecord, UserResponse
from workers.admin.decisions import AnswerIndex, Remembered
from workers.admin.routes_decisions import DECISION_ROUTES
from workers.admin.routing import ApiError
from workers.admin.tokens import Principal

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"
RID = f"{A}:00-DB-00-00-00-00-00-01:7"
AT_S = 1_796_000_000.0
OPERATOR = Principal("operator", "op1")
USER_A = Principal("user", "ta", A)
USER_B = Principal("user", "tb", B)


def _answer(outcome: str, at_ms: int, user_id: str = A, **extra: Any) -> UserResponse:
    return UserResponse(
        request_id=RID,
        user_id=user_id,
        response_code={"quarantined": "Q1", "released": "Q4"}.get(outcome, "E102"),
        outcome=outcome,  # type: ignore[arg-type]
        reason=f"{outcome} because",
        rule=f"user:{A}:7.2:3600",
        at_ms=at_ms,
        **extra,
    )


class _Decisions:
    def __init__(self, answers: list[UserResponse]) -> None:
        self.index = AnswerIndex(max_answers=1000, max_age_s=3600)
        self.caught_up = True
        self._answers = answers

    def get(self, request_id: str) -> Remembered | None:
        return Remembered(answers=self._answers) if request_id == RID and self._answers else None


class _Quarantine:
    def __init__(self, entry: dict[str, Any] | None) -> None:
        self._entry = entry

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._entry if request_id == RID else None


class _Audit:
    def __init__(self, records: list[AuditRecord]) -> None:
        self.records = records
        self.asked: list[str] = []

    def query(self, *, key_prefix: str = "", limit: int = 100, **_: Any) -> list[AuditRecord]:
        self.asked.append(key_prefix)
        return [r for r in reversed(self.records) if r.key.startswith(key_prefix)][:limit]


class _Api:
    def __init__(
        self,
        answers: list[UserResponse],
        entry: dict[str, Any] | None = None,
        audits: list[AuditRecord] | None = None,
    ) -> None:
        self.decisions = _Decisions(answers)
        self.quarantine = _Quarantine(entry)
        self.audit = _Audit(audits or [])


ENTRY = {
    "id": RID, "user_id": A, "srv": "7.2", "kind": "user_adt", "rule": f"user:{A}:7.2:3600",
    "reason": "4 of 7.2 in 3600 s, above 3", "at_s": AT_S, "state": "released",
    "decided_at_s": AT_S + 60, "decided_by": "operator:op1", "note": "",
}  # fmt: skip


def _audit(key: str, at_s: float, new: dict[str, Any], action: str) -> AuditRecord:
    return AuditRecord(
        at_ms=int(at_s * 1000),
        by="operator:op1",
        action=action,
        key=key,
        new=msgspec.Raw(orjson.dumps(new)),
    )


async def _get(api: _Api, principal: Principal, request_id: str = RID) -> dict[str, Any]:
    [route] = DECISION_ROUTES
    request = make_mocked_request(
        "GET", f"/v1/decisions/{request_id}", match_info={"request_id": request_id}
    )
    response = await route.handler(api, request, principal)  # type: ignore[arg-type]
    assert response.status == 200
    assert response.body is not None
    doc: dict[str, Any] = orjson.loads(response.body)  # type: ignore[arg-type]
    return doc


def _quarantined_api() -> _Api:
    answers = [
        _answer("quarantined", int(AT_S * 1000), observed=4, limit=3),
        _answer("released", int((AT_S + 60) * 1000)),
    ]
    audits = [
        _audit(f"quarantine/{RID}", AT_S + 60, {"state": "released", "bulk": {"user_id": A}},
               "quarantine.release"),
        _audit(f"quarantine/{RID}0", AT_S + 61, {"state": "deleted"}, "quarantine.delete"),
    ]  # fmt: skip
    return _Api(answers, {**ENTRY}, audits)


async def test_the_operator_sees_answers_rule_numbers_and_quarantine_history() -> None:
    doc = await _get(_quarantined_api(), OPERATOR)
    assert doc["request_id"] == RID
    first, second = doc["answers"]
    assert (first["outcome"], first["response_code"], first["observed"], first["limit"]) == (
        "quarantined", "Q1", 4, 3,
    )  # fmt: skip
    assert first["at"] == "2026-11-30T00:53:20.000Z"
    assert second["outcome"] == "released"
    q = doc["quarantine"]
    assert (q["state"], q["observed"], q["limit"]) == ("released", 4, 3)  # from the answer
    assert q["quarantined_at"] == "2026-11-30T00:53:20.000Z"
    assert q["decided_at"] == "2026-11-30T00:54:20.000Z"
    # The audit record of another request whose ID merely starts the same is not shown.
    assert [(h["event"], h["by"], h["bulk"]) for h in q["history"]] == [
        ("quarantined", f"user:{A}:7.2:3600", None),
        ("released", "operator:op1", {"user_id": A}),
    ]
    assert doc["retention"]["max_answers"] == 1000
    assert doc["retention"]["caught_up"] is True


async def test_a_user_sees_its_own_request() -> None:
    doc = await _get(_quarantined_api(), USER_A)
    assert len(doc["answers"]) == 2
    assert doc["quarantine"]["state"] == "released"


async def test_another_users_request_is_404_exactly_as_an_unknown_one() -> None:
    api = _quarantined_api()
    with pytest.raises(ApiError) as other:
        await _get(api, USER_B)
    with pytest.raises(ApiError) as unknown:
        await _get(api, USER_B, f"{B}:00-DB-00-00-00-00-00-01:9")
    assert other.value.status == unknown.value.status == 404
    assert other.value.message.replace(RID, "ID") == unknown.value.message.replace(
        f"{B}:00-DB-00-00-00-00-00-01:9", "ID"
    )
    assert api.audit.asked == []  # nothing of A's was even looked up for B


async def test_a_user_sees_only_the_answers_sent_to_it() -> None:
    # B sent a record claiming A's RequestID: B's refusal is B's, not A's to see, and back.
    answers = [_answer("rejected", 1, user_id=B), _answer("rejected", 2, user_id=A)]
    doc = await _get(_Api(answers), USER_A)
    assert [a["user_id"] for a in doc["answers"]] == [A]
    assert doc["quarantine"] is None
    doc = await _get(_Api(answers), USER_B)
    assert [a["user_id"] for a in doc["answers"]] == [B]


async def test_a_decided_request_without_audit_records_shows_the_books_decision() -> None:
    entry = {**ENTRY, "state": "expired", "decided_by": None, "note": "pending over 14 days"}
    doc = await _get(_Api([], entry), OPERATOR)
    assert doc["answers"] == []
    assert [(h["event"], h["note"]) for h in doc["quarantine"]["history"]] == [
        ("quarantined", None),
        ("expired", "pending over 14 days"),
    ]


@pytest.mark.parametrize("request_id", ["nope", "x" * 81, RID + "0"])
async def test_unknown_or_overlong_ids_are_404(request_id: str) -> None:
    with pytest.raises(ApiError) as err:
        await _get(_quarantined_api(), OPERATOR, request_id)
    assert err.value.status == 404
    assert "no decision kept" in err.value.message
