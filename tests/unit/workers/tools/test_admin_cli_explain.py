"""`dccgate admin explain`: the API's explanation as text, and as JSON."""

from __future__ import annotations

import json

from tests.unit.workers.tools.test_admin_cli import USER, FakeApi, run

RID = f"{USER}:00-DB-00-00-00-00-00-01:7"
DOC = {
    "request_id": RID,
    "answers": [
        {"at": "2026-11-30T00:53:20.000Z", "at_ms": 1796000000000, "user_id": USER,
         "outcome": "quarantined", "response_code": "Q1", "rule": f"user:{USER}:7.2:3600",
         "observed": 4, "limit": 3, "retry_after_ms": None,
         "reason": "quarantined by anomaly detection (SEC G6): 4 of 7.2 \x1b[31m in 3600 s"},
        {"at": "2026-11-30T00:54:20.000Z", "at_ms": 1796000060000, "user_id": USER,
         "outcome": "released", "response_code": "Q4", "rule": f"user:{USER}:7.2:3600",
         "observed": None, "limit": None, "retry_after_ms": None,
         "reason": "released from quarantine by operator:op1; forwarded"},
    ],
    "answers_omitted": 3,
    "quarantine": {
        "state": "released", "kind": "user_adt", "srv": "7.2", "rule": f"user:{USER}:7.2:3600",
        "reason": "4 of 7.2 in 3600 s", "observed": 4, "limit": 3,
        "quarantined_at": "2026-11-30T00:53:20.000Z", "decided_at": "2026-11-30T00:54:20.000Z",
        "decided_by": "operator:op1", "note": "",
        "history": [
            {"at": "2026-11-30T00:53:20.000Z", "event": "quarantined",
             "by": f"user:{USER}:7.2:3600", "note": None, "bulk": None},
            {"at": "2026-11-30T00:54:20.000Z", "event": "released", "by": "operator:op1",
             "note": None, "bulk": {"user_id": USER}},
        ],
    },
    "retention": {"max_answers": 100000, "max_age_s": 86400, "answers_kept": 9,
                  "oldest_at": None, "caught_up": False},
}  # fmt: skip


def test_explain_prints_answers_numbers_reasons_and_history() -> None:
    api = FakeApi({("GET", f"/v1/decisions/{RID}"): (200, DOC)})
    ran = run(["explain", RID], api)
    assert ran.code == 0
    assert api.sent[0].url.endswith(f"/v1/decisions/{RID}")  # colons kept in the path
    lines = ran.out.splitlines()
    assert lines[0] == f"REQUEST  {RID}"
    row = next(line for line in lines if line.startswith("2026-11-30T00:53:20.000Z  quarantined"))
    assert row.split() == [
        "2026-11-30T00:53:20.000Z", "quarantined", "Q1", f"user:{USER}:7.2:3600", "4", "3", "-",
    ]  # fmt: skip
    assert "(3 more answers between the first and the latest are not kept)" in ran.out
    assert "\x1b" not in ran.out  # a terminal escape in a reason is shown, not obeyed
    assert "  2. released from quarantine by operator:op1; forwarded" in lines
    assert "QUARANTINE" in lines
    assert any(line.split()[:4] == ["2026-11-30T00:54:20.000Z", "released", "operator:op1",
                                    "bulk"] for line in lines)  # fmt: skip
    assert "still reading dcc.user.responses" in ran.err


def test_explain_json_prints_the_answer() -> None:
    api = FakeApi({("GET", f"/v1/decisions/{RID}"): (200, DOC)})
    ran = run(["explain", RID, "--json"], api)
    assert json.loads(ran.out) == DOC


def test_explain_of_an_unknown_request_says_so() -> None:
    api = FakeApi(
        {("GET", f"/v1/decisions/{RID}"): (404, {"error": f"no decision kept for request {RID}"})}
    )
    ran = run(["explain", RID], api)
    assert ran.code != 0
    assert f"no decision kept for request {RID}" in ran.err
