"""Forecasts, actuals and the variance report (SEC H3.24) against the session's real broker:
the forecast API and its validation, the actuals across a restart of the admin process that
counts them, and the report end to end from the router's own answers."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from broker.producer import BatchProducer
from broker.schemas import UserResponse
from broker.settings import KafkaSettings
from tests.conftest import USER_A, USER_B, RequestFactory
from tests.integration.helpers import (
    ApiClient,
    admin_api,
    await_until,
    read_topic,
    running_router,
    wait_until_async,
)
from workers.config.months import month_index, month_of_s
from workers.config.settings import Settings
from workers.runtime.headers import SRV_HEADER
from workers.tools.send import send_requests

pytestmark = pytest.mark.usefixtures("topics_ready")

C = "90-B3-D5-1F-30-03-00-00"
OPERATOR = "op-secret-for-forecast-tests-0123456789"
MONTH = month_of_s(time.time())


def _month_after(month: str, n: int) -> str:
    index = month_index(month) + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@pytest.fixture
async def api(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[ApiClient]:
    async with admin_api(settings, kafka, OPERATOR) as api:
        await _users(api)
        yield api


async def _users(api: ApiClient) -> None:
    for user in (USER_A, USER_B, C):
        body = {"name": f"User {user[-5:]}", "roles": ["IS", "ES"]}
        status, _ = await api.call("operator", "PUT", f"/v1/users/{user}", body)
        assert status == 200
    for name, user in (("A", USER_A), ("B", USER_B)):
        status, doc = await api.call("operator", "POST", f"/v1/users/{user}/tokens")
        assert status == 201
        api.tokens[name] = doc["token"]


FORECAST = {"counts": {"4.1.1": 1000, "7.2": 10}}


async def test_who_may_read_and_write_forecasts(api: ApiClient) -> None:
    path = f"/v1/forecasts/{USER_A}/{MONTH}"
    assert (await api.call("none", "PUT", path, FORECAST))[0] == 401
    assert (await api.call("B", "PUT", path, FORECAST))[0] == 403
    assert (await api.call("B", "GET", path))[0] == 403
    status, doc = await api.call("A", "PUT", path, FORECAST)  # a User submits its own
    assert status == 200, doc
    assert (doc["user_id"], doc["month"], doc["total"], doc["version"]) == (
        USER_A,
        MONTH,
        1010,
        1,
    )
    status, doc = await api.call("operator", "PUT", path, {**FORECAST, "version": 1})
    assert (status, doc["version"]) == (200, 2)  # an operator amends it
    status, doc = await api.call("A", "PUT", path, {**FORECAST, "version": 1})
    assert status == 409
    assert "version" in doc["error"]
    status, doc = await api.call("A", "GET", path)
    assert (status, doc["counts"], doc["version"]) == (200, FORECAST["counts"], 2)
    b_path = f"/v1/forecasts/{USER_B}/{MONTH}"
    assert (await api.call("B", "PUT", b_path, {"counts": {"4.1.1": 5}}))[0] == 200
    # The list: an operator sees both, a User its own; filters by month and User.
    status, doc = await api.call("operator", "GET", f"/v1/forecasts?month={MONTH}")
    assert [i["user_id"] for i in doc["items"]] == [USER_A, USER_B]
    status, doc = await api.call("A", "GET", "/v1/forecasts")
    assert [i["user_id"] for i in doc["items"]] == [USER_A]
    assert (await api.call("A", "GET", f"/v1/forecasts?user_id={USER_B}"))[0] == 403
    status, doc = await api.call("operator", "GET", f"/v1/forecasts?user_id={USER_B}")
    assert [i["total"] for i in doc["items"]] == [5]
    # Audited like every other item.
    status, doc = await api.call("operator", "GET", "/v1/audit?key_prefix=forecasts/")
    assert status == 200
    key = f"forecasts/{USER_A}/{MONTH}"
    assert sorted(r["version"] for r in doc["records"] if r["key"] == key) == [1, 2]
    # Withdrawn.
    status, _ = await api.call("A", "DELETE", path)
    assert status == 200
    assert (await api.call("A", "GET", path))[0] == 404


@pytest.mark.parametrize(
    ("month", "body", "status", "says"),
    [
        (MONTH, {"counts": {"99.99": 5}}, 422, "unknown SRVs"),
        (MONTH, {"counts": {"4.1.1": -5}}, 422, ">= 0"),
        (MONTH, {"counts": {"4.1.1": 10**12}}, 422, "<= 1000000000"),
        (MONTH, {"counts": {"4.1.1": 10**400}}, 400, "JSON"),
        (MONTH, {"counts": {"4.1.1": "5"}}, 422, "Expected `int`"),
        (MONTH, {"counts": {"4.1.1": 5}, "typo": 1}, 422, "unknown field"),
        (MONTH, '{"counts": {"4.1.1": 1}, "counts": {"4.1.1": 2}}', 400, "twice"),
        (MONTH, '{"counts": {"4.1.1": 1, "4.1.1": 2}}', 400, "twice"),
        (MONTH, b'{"counts": {"4.1.1": 1}, "note": "\xff"}', 400, "invalid_utf8"),
        (MONTH, "[" * 100 + "]" * 100, 400, "deep"),
        (_month_after(MONTH, -1), FORECAST, 422, "is over"),
        (_month_after(MONTH, 25), FORECAST, 422, "more than 24 months ahead"),
        ("2027-13", FORECAST, 422, "YYYY-MM"),
        ("2027-1", FORECAST, 422, "YYYY-MM"),
        ("202\uff17-01", FORECAST, 422, "YYYY-MM"),
    ],
)
async def test_bad_forecasts_get_a_clear_answer(
    api: ApiClient, month: str, body: Any, status: int, says: str
) -> None:
    got, doc = await api.call("operator", "PUT", f"/v1/forecasts/{USER_A}/{month}", body)
    assert (got, says.lower() in doc["error"].lower()) == (status, True), doc


async def test_a_forecast_needs_a_registered_user(api: ApiClient) -> None:
    stranger = "90-B3-D5-1F-30-77-00-00"
    status, doc = await api.call("operator", "PUT", f"/v1/forecasts/{stranger}/{MONTH}", FORECAST)
    assert status == 404
    assert "PUT /v1/users" in doc["error"]


async def _answers(
    kafka: KafkaSettings, topic: str, answers: list[tuple[str, str, str | None]], start: int
) -> None:
    """Write router-like answers (User, outcome, SRV) to dcc.user.responses."""
    now_ms = int(time.time() * 1000)
    async with BatchProducer(kafka) as producer:
        for i, (user, outcome, srv) in enumerate(answers):
            value = msgspec.json.encode(
                UserResponse(
                    request_id=f"{user}:00-DB-12-34-56-78-90-A0:{start + i}",
                    user_id=user,
                    response_code="X",
                    outcome=outcome,  # type: ignore[arg-type]
                    reason="test",
                    at_ms=now_ms,
                )
            )
            headers = [] if srv is None else [(SRV_HEADER, srv.encode())]
            await producer.send_one(topic, user.encode(), value, headers=headers)


async def _report(api: ApiClient, who: str = "operator") -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def ready() -> bool:
        status, doc = await api.call(who, "GET", f"/v1/reports/sr-variance?month={MONTH}")
        if status == 200:
            found.update(doc)
        return status == 200

    await await_until(ready, timeout_s=20, step_s=0.1, what="the report never became ready")
    return found


def _totals(report: dict[str, Any]) -> dict[str, tuple[int, dict[str, int]]]:
    return {u["user_id"]: (u["actual_total"], u["by_outcome"]) for u in report["users"]}


async def test_actuals_survive_a_restart_of_the_admin_process_exactly(
    settings: Settings, kafka: KafkaSettings
) -> None:
    topic = settings.topics.user_responses
    first = [(USER_A, "accepted", "4.1.1")] * 5 + [
        (USER_A, "rejected", "7.2"),
        (USER_A, "quarantined", "4.1.1"),
        (USER_A, "released", None),  # Q4 after the quarantined one: not counted again
        (USER_B, "throttled", "4.1.1"),
    ]
    async with admin_api(settings, kafka, OPERATOR) as api:
        await _users(api)
        status, _ = await api.call("A", "PUT", f"/v1/forecasts/{USER_A}/{MONTH}", FORECAST)
        assert status == 200
        await _answers(kafka, topic, first, 0)
        await wait_until_async(
            lambda: api.admin.actuals.book.counted == 8, timeout_s=20, what="8 answers counted"
        )
        assert api.admin.actuals.book.ignored == {"later_answer": 1}
        report = await _report(api)
        await api.admin.actuals.flush()
    assert _totals(report) == {
        USER_A: (7, {"accepted": 5, "rejected": 1, "throttled": 0, "quarantined": 1}),
        USER_B: (1, {"accepted": 0, "rejected": 0, "throttled": 1, "quarantined": 0}),
    }
    # Answers written while no admin process runs, then a new one: counted once, not again.
    await _answers(kafka, topic, [(USER_A, "accepted", "7.2"), (USER_B, "accepted", None)], 100)
    async with admin_api(settings, kafka, OPERATOR) as api:
        actuals = api.admin.actuals
        assert actuals.book.restored_records >= 2
        await wait_until_async(
            lambda: actuals.book.counted == 2, timeout_s=20, what="the 2 new answers counted"
        )
        report = await _report(api)
    totals = _totals(report)
    assert totals[USER_A] == (8, {"accepted": 6, "rejected": 1, "throttled": 0, "quarantined": 1})
    assert totals[USER_B] == (2, {"accepted": 1, "rejected": 0, "throttled": 1, "quarantined": 0})
    a = next(u for u in report["users"] if u["user_id"] == USER_A)
    assert [(s["srv"], s["forecast"], s["actual"]) for s in a["services"]] == [
        ("4.1.1", 1000, 6),
        ("7.2", 10, 2),
    ]
    b = next(u for u in report["users"] if u["user_id"] == USER_B)
    assert b["flags"] == ["no_forecast"]
    assert [s["srv"] for s in b["services"]] == ["4.1.1", "other"]
    assert report["summary"]["users_without_forecast"] == [USER_B]
    state = await read_topic(kafka, settings.topics.state_actuals, expect=3)
    assert {r.key for r in state} >= {
        f"{USER_A}/{MONTH}".encode(),
        f"{USER_B}/{MONTH}".encode(),
        b"checkpoint",
    }


async def test_the_report_from_the_routers_own_answers(
    settings: Settings, kafka: KafkaSettings, make_request: RequestFactory
) -> None:
    lines = [
        make_request(counter=1),
        make_request(counter=2),
        make_request(counter=3, srv="7.2", role="ED", cv=4),  # E2: the role may not
        make_request(counter=4, srv="99.99"),  # E101: not an SRV, counted as `other`
        make_request(user=USER_B, counter=1),
    ]
    async with admin_api(settings, kafka, OPERATOR) as api:
        await _users(api)
        status, _ = await api.call(
            "A", "PUT", f"/v1/forecasts/{USER_A}/{MONTH}", {"counts": {"4.1.1": 1}}
        )
        assert status == 200
        async with running_router(settings, kafka):
            result = await send_requests(
                lines, settings=kafka, topics=settings.topics, timeout_s=20, out=io.StringIO()
            )
        assert result.missing == []
        await wait_until_async(
            lambda: api.admin.actuals.book.counted == 5, timeout_s=20, what="5 answers counted"
        )
        report = await _report(api)
        own = await _report(api, "B")
        async with api.client.get(
            f"/v1/reports/sr-variance?month={MONTH}&format=csv",
            headers={"Authorization": f"Bearer {OPERATOR}"},
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/csv"
            rows = list(csv.reader(io.StringIO(await resp.text())))
        status, doc = await api.call("operator", "GET", "/v1/reports/sr-variance?month=nope")
        assert status == 422
        assert "YYYY-MM" in doc["error"]
        status, doc = await api.call("operator", "GET", "/v1/reports/sr-variance")
        assert status == 422
        assert "required" in doc["error"]
        status, doc = await api.call(
            "operator", "GET", f"/v1/reports/sr-variance?month={MONTH}&format=xml"
        )
        assert status == 422
    a = next(u for u in report["users"] if u["user_id"] == USER_A)
    assert [(s["srv"], s["actual"], s["flags"]) for s in a["services"]] == [
        ("4.1.1", 2, ["exceptional_demand"]),
        ("7.2", 1, ["no_forecast"]),
        ("other", 1, ["no_forecast"]),
    ]
    assert a["by_outcome"] == {"accepted": 2, "rejected": 2, "throttled": 0, "quarantined": 0}
    assert [u["user_id"] for u in own["users"]] == [USER_B]
    assert [r[:5] for r in rows if r[1] == USER_B] == [
        [MONTH, USER_B, "4.1.1", "", "1"],
        [MONTH, USER_B, "total", "", "1"],
    ]


async def _cli(api: ApiClient, *argv: str) -> tuple[int, str, str]:
    """`dccgate admin ARGV` as an operator types it, over HTTP to this test's admin API
    (in a thread: the CLI's HTTP client blocks)."""
    from workers.cli import _parser
    from workers.tools.admin_cli import run_admin

    url = str(api.client.make_url("")).rstrip("/")
    args = _parser().parse_args(["admin", "--url", url, *argv])
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        run_admin, args, environ={"DCCGATE_TOKEN": OPERATOR}, stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


async def test_forecasts_and_the_report_from_the_cli(
    settings: Settings, kafka: KafkaSettings
) -> None:
    async with admin_api(settings, kafka, OPERATOR) as api:
        await _users(api)
        code, out, err = await _cli(
            api, "forecasts", "set", USER_A, MONTH, "--count", "4.1.1=1000", "--count", "7.2=5"
        )
        assert code == 0, err
        assert "TOTAL    1005" in out
        code, out, err = await _cli(api, "forecasts", "set", USER_A, MONTH, "--count", "99.99=1")
        assert code != 0
        assert "unknown SRVs" in err
        code, out, err = await _cli(api, "forecasts", "list", "--month", MONTH)
        assert code == 0, err
        assert USER_A in out
        await _answers(kafka, settings.topics.user_responses, [(USER_B, "accepted", "4.1.1")], 0)
        await wait_until_async(
            lambda: api.admin.actuals.book.counted == 1, timeout_s=20, what="1 answer counted"
        )
        await _report(api)  # ready
        code, out, err = await _cli(api, "report", "sr-variance", "--month", MONTH)
        assert code == 0, err
        assert f"Users sending without a forecast: {USER_B}" in out
        code, out, err = await _cli(api, "report", "sr-variance", "--month", MONTH, "--csv")
        assert code == 0, err
        assert out.splitlines()[0].startswith("month,user_id,srv")
        code, out, err = await _cli(api, "report", "sr-variance", "--month", "2027-13")
        assert code != 0
        assert "YYYY-MM" in err


async def test_a_new_cluster_reports_an_empty_month_and_refuses_a_future_one(
    api: ApiClient,
) -> None:
    report = await _report(api)  # no answer ever written: ready all the same
    assert (report["users"], report["complete"]) == ([], False)
    status, doc = await api.call(
        "operator", "GET", f"/v1/reports/sr-variance?month={_month_after(MONTH, 1)}"
    )
    assert status == 422
    assert "has not started" in doc["error"]
    assert (await api.call("none", "GET", f"/v1/reports/sr-variance?month={MONTH}"))[0] == 401
