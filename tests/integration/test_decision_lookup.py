"""`GET /v1/decisions/{request_id}` end to end: the admin process keeps the answers read
from dcc.user.responses, and the quarantine history from its book and the audit trail."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient
from tests.integration.quarantine_helpers import A, B, quarantine_all, quarantine_gateway
from workers.cli import _parser
from workers.config.settings import Settings
from workers.tools.admin_cli import run_admin

pytestmark = pytest.mark.usefixtures("topics_ready")


@pytest.fixture
async def gateway(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[ApiClient]:
    async with quarantine_gateway(settings, kafka) as gw:
        yield gw


async def _explained(
    gw: ApiClient, who: str, request_id: str, outcomes: list[str]
) -> dict[str, Any]:
    """The explanation of `request_id` once its answers are `outcomes` (they arrive from
    dcc.user.responses a moment after the decision)."""
    doc: dict[str, Any] = {}
    for _ in range(400):
        status, doc = await gw.call(who, "GET", f"/v1/decisions/{request_id}")
        if status == 200 and [a["outcome"] for a in doc["answers"]] == outcomes:
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"answers of {request_id} not {outcomes} in 20 s: {doc}")


async def _explain_cli(gw: ApiClient, who: str, request_id: str) -> tuple[int, str, str]:
    """`dccgate admin explain request_id` with `who`'s token: (exit code, stdout, stderr)."""
    url = str(gw.client.make_url("/")).rstrip("/")
    args = _parser().parse_args(["admin", "explain", request_id, "--url", url])
    out, err = io.StringIO(), io.StringIO()
    token = gw.tokens[who]
    assert token is not None
    code = await asyncio.to_thread(
        run_admin, args, environ={"DCCGATE_TOKEN": token}, stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


async def test_answers_rule_numbers_and_quarantine_history_are_explained(
    gateway: ApiClient, settings: Settings, kafka: KafkaSettings
) -> None:
    gw = gateway
    ids = await quarantine_all(gw, settings, kafka, A, range(1, 4))
    doc = await _explained(gw, "operator", ids[0], ["quarantined"])
    [answer] = doc["answers"]
    assert (answer["response_code"], answer["rule"]) == ("Q1", f"user:{A}:7.2:3600")
    assert (answer["observed"], answer["limit"]) == (1, 0)  # 1 in the window, ADT max 0
    assert answer["at"].endswith("Z")
    q = doc["quarantine"]
    assert (q["state"], q["observed"], q["limit"]) == ("pending", 1, 0)
    assert [h["event"] for h in q["history"]] == ["quarantined"]

    # A releases one of its own; the operator deletes the rest in bulk.
    assert (await gw.call("A", "POST", f"/v1/quarantine/{ids[0]}/release"))[0] == 200
    status, bulk = await gw.call("operator", "POST", "/v1/quarantine/delete", {"user_id": A})
    assert status == 200
    assert len(bulk["decided"]) == 2

    doc = await _explained(gw, "A", ids[0], ["quarantined", "released"])
    q = doc["quarantine"]
    assert q["state"] == "released"
    assert q["decided_by"].startswith(f"user:{A}:")
    assert [(h["event"], h["by"][:5]) for h in q["history"]] == [
        ("quarantined", "user:"),
        ("released", "user:"),
    ]
    doc = await _explained(gw, "operator", ids[1], ["quarantined", "deleted"])
    deleted = doc["quarantine"]["history"][-1]
    assert (deleted["event"], deleted["bulk"]) == ("deleted", {"user_id": A})
    assert deleted["by"].startswith("operator:")
    assert doc["answers"][-1]["response_code"] == "Q5"

    # The same from a terminal: `dccgate admin explain` with A's token.
    code, out, err = await _explain_cli(gw, "A", ids[1])
    assert code == 0, err
    assert "QUARANTINE" in out
    assert any(line.split()[1:3] == ["deleted", "Q5"] for line in out.splitlines()), out
    code, _, err = await _explain_cli(gw, "B", ids[1])
    assert code != 0
    assert "no decision kept" in err

    # B learns nothing about A's requests: the same 404 as for a request never seen.
    status, other = await gw.call("B", "GET", f"/v1/decisions/{ids[0]}")
    never = f"{B}:00-DB-00-00-00-00-00-01:99"
    status_never, unknown = await gw.call("B", "GET", f"/v1/decisions/{never}")
    assert status == status_never == 404
    assert other["error"].replace(ids[0], "ID") == unknown["error"].replace(never, "ID")


async def test_whoami_names_the_token(gateway: ApiClient) -> None:
    status, doc = await gateway.call("A", "GET", "/v1/whoami")
    assert (status, doc["role"], doc["user_id"]) == (200, "user", A)
    status, doc = await gateway.call("operator", "GET", "/v1/whoami")
    assert (status, doc["role"], doc["user_id"]) == (200, "operator", None)
    status, _ = await gateway.call("none", "GET", "/v1/whoami")
    assert status == 401
