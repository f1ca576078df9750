"""The admin API against the session's real broker: authorisation, validation, versions, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, admin_api
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"
C = "90-B3-D5-1F-30-03-00-00"
OPERATOR = "op-secret-for-tests-at-least-32-characters"


Api = ApiClient


@pytest.fixture
async def api(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[Api]:
    async with admin_api(settings, kafka, OPERATOR) as api:
        for user in (A, B, C):
            body = {"name": f"User {user[-5:]}", "roles": ["IS"]}
            status, _ = await api.call("operator", "PUT", f"/v1/users/{user}", body)
            assert status == 200
        for name, user in (("A", A), ("B", B)):
            status, doc = await api.call("operator", "POST", f"/v1/users/{user}/tokens")
            assert status == 201
            api.tokens[name] = doc["token"]
        yield api


ALLOCATION = {"rate_per_s": 10, "burst": 20}
ADT = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 100}], "value_rules": []}
TRAFFIC = {"capacity_per_s": 1000, "operating_threshold_per_s": 800}
STORM = {"default": {"window_s": 60, "max_alerts": 10, "period_s": 300}}
EXCLUSIONS = {"alert_codes": ["8F3F"]}
REGIONAL = {"regions": {"north": {"rate_per_s": 100, "burst": 200}}, "high_priority_codes": ["AD1"]}
MP102 = {"enabled": True, "hold_s": 300}

# (method, path, body, expected status for operator, User A (the owner), User B, no token)
MATRIX: list[tuple[str, str, Any, int, int, int, int]] = [
    ("GET", "/v1/users", None, 200, 200, 200, 401),
    ("GET", "/v1/allocations", None, 200, 200, 200, 401),
    ("GET", "/v1/adt/users", None, 200, 200, 200, 401),
    ("GET", f"/v1/users/{A}", None, 200, 200, 403, 401),
    ("PUT", f"/v1/users/{A}", {"name": "A2", "roles": ["IS"]}, 200, 403, 403, 401),
    ("GET", f"/v1/users/{A}/tokens", None, 200, 200, 403, 401),
    ("POST", f"/v1/users/{A}/tokens", None, 201, 403, 403, 401),
    ("GET", "/v1/operators/tokens", None, 200, 403, 403, 401),
    ("POST", "/v1/operators/tokens", None, 201, 403, 403, 401),
    ("PUT", f"/v1/allocations/{A}", ALLOCATION, 200, 403, 403, 401),
    ("GET", f"/v1/allocations/{A}", None, 200, 200, 403, 401),
    ("PUT", f"/v1/adt/users/{A}", ADT, 200, 200, 403, 401),
    ("GET", f"/v1/adt/users/{A}", None, 200, 200, 403, 401),
    ("PUT", "/v1/adt/dcc", ADT, 200, 403, 403, 401),
    ("GET", "/v1/adt/dcc", None, 200, 403, 403, 401),
    ("PUT", "/v1/alerts/exclusions", EXCLUSIONS, 200, 403, 403, 401),
    ("GET", "/v1/alerts/exclusions", None, 200, 403, 403, 401),
    ("PUT", "/v1/alerts/storm-policy", STORM, 200, 403, 403, 401),
    ("GET", "/v1/alerts/storm-policy", None, 200, 403, 403, 401),
    ("PUT", "/v1/alerts/regional-capacity", REGIONAL, 200, 403, 403, 401),
    ("GET", "/v1/alerts/regional-capacity", None, 200, 403, 403, 401),
    ("PUT", "/v1/alerts/mp102", MP102, 200, 403, 403, 401),
    ("GET", "/v1/alerts/mp102", None, 200, 403, 403, 401),
    ("PUT", "/v1/traffic", TRAFFIC, 200, 403, 403, 401),
    ("GET", "/v1/traffic", None, 200, 403, 403, 401),
    ("GET", "/v1/quarantine", None, 200, 200, 200, 401),
    ("GET", f"/v1/quarantine?user_id={A}", None, 200, 200, 403, 401),
    ("GET", f"/v1/quarantine?user_id={A}&state=any&rule=r", None, 200, 200, 403, 401),
    ("POST", "/v1/quarantine/release", {"user_id": A}, 200, 200, 403, 401),
    ("POST", "/v1/quarantine/delete", {"user_id": A}, 200, 200, 403, 401),
    # Without user_id a User token decides on its own requests only.
    ("POST", "/v1/quarantine/release", {"rule": "r"}, 200, 200, 200, 401),
    ("POST", "/v1/quarantine/delete", {"kind": "user_adt"}, 200, 200, 200, 401),
    ("POST", f"/v1/quarantine/{A}:00-DB-12-34-56-78-90-A0:1/release", None, 404, 404, 403, 401),
    ("POST", f"/v1/quarantine/{A}:00-DB-12-34-56-78-90-A0:1/delete", None, 404, 404, 403, 401),
    ("GET", "/v1/audit", None, 200, 403, 403, 401),
    ("DELETE", f"/v1/users/{A}/tokens/000000000000", None, 404, 403, 403, 401),
    ("DELETE", "/v1/operators/tokens/000000000000", None, 404, 403, 403, 401),
    ("DELETE", f"/v1/users/{C}", None, 200, 403, 403, 401),
]


async def test_authorisation_matrix(api: Api) -> None:
    failures = []
    for method, path, body, *expected in MATRIX:
        # The operator goes last so a successful write does not hide a refusal.
        for who, want in zip(("none", "B", "A", "operator"), reversed(expected), strict=True):
            status, doc = await api.call(who, method, path, body)
            if status != want:
                failures.append(f"{who} {method} {path}: {status} {doc}, expected {want}")
            if status == 403:
                # Nothing about the data leaks into a refusal.
                assert doc == {"error": "forbidden: this token may not do that"}
    assert failures == []


async def test_a_user_lists_only_itself(api: Api) -> None:
    _, doc = await api.call("A", "GET", "/v1/users")
    assert list(doc["users"]) == [A]
    _, doc = await api.call("operator", "GET", "/v1/users")
    assert set(doc["users"]) == {A, B, C}


async def test_bad_bodies_are_refused_and_change_nothing(api: Api) -> None:
    path = f"/v1/allocations/{A}"
    assert (await api.call("operator", "PUT", path, ALLOCATION))[0] == 200
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"[1]", 422, "JSON object"),
        ({"rate_per_s": 10, "burst": 20, "colour": "red"}, 422, "colour"),
        ({"rate_per_s": -1, "burst": 20}, 422, "rate_per_s"),
        ({"rate_per_s": 10}, 422, "burst"),
        ({"rate_per_s": 10, "burst": 20, "version": "one"}, 422, "version"),
    ]
    for body, status, words in cases:
        got, doc = await api.call("operator", "PUT", path, body)
        assert (got, words in doc["error"]) == (status, True), doc
    _, doc = await api.call("operator", "GET", path)
    assert doc == {"rate_per_s": 10.0, "burst": 20, "shadow": False, "version": 1, "source": "api"}


async def test_version_conflicts(api: Api) -> None:
    path = "/v1/traffic"
    status, doc = await api.call("operator", "PUT", path, {**TRAFFIC, "version": 0})
    assert (status, doc["version"]) == (200, 1)
    # Two operators read version 1; the first write wins, the second gets 409.
    assert (await api.call("operator", "PUT", path, {**TRAFFIC, "version": 1}))[0] == 200
    status, doc = await api.call("operator", "PUT", path, {**TRAFFIC, "version": 1})
    assert status == 409
    assert "now at version 2" in doc["error"]
    status, _ = await api.call("operator", "PUT", path, TRAFFIC, headers={"If-Match": '"1"'})
    assert status == 409
    status, doc = await api.call("operator", "PUT", path, TRAFFIC, headers={"If-Match": '"2"'})
    assert (status, doc["version"]) == (200, 3)
    status, doc = await api.call("operator", "PUT", path, TRAFFIC)  # unconditional
    assert (status, doc["version"]) == (200, 4)
    status, doc = await api.call(
        "operator", "PUT", path, {"capacity_per_s": 10, "operating_threshold_per_s": 20}
    )
    assert status == 422
    assert "must not exceed capacity_per_s" in doc["error"]


async def test_tokens_revoke_and_operator_tokens(api: Api) -> None:
    status, doc = await api.call("operator", "POST", f"/v1/users/{A}/tokens")
    api.tokens["A2"] = doc["token"]
    assert (await api.call("A2", "GET", f"/v1/users/{A}"))[0] == 200
    _, listed = await api.call("A", "GET", f"/v1/users/{A}/tokens")
    assert doc["token_id"] in {t["token_id"] for t in listed["tokens"]}
    assert all("token" not in t and "sha256" not in t for t in listed["tokens"])
    status, _ = await api.call("operator", "DELETE", f"/v1/users/{A}/tokens/{doc['token_id']}")
    assert status == 200
    assert (await api.call("A2", "GET", f"/v1/users/{A}"))[0] == 401
    status, op = await api.call("operator", "POST", "/v1/operators/tokens")
    api.tokens["op2"] = op["token"]
    assert (await api.call("op2", "GET", "/v1/traffic"))[0] in (200, 404)
    assert (await api.call("op2", "GET", "/v1/audit"))[0] == 200
    status, _ = await api.call("operator", "POST", f"/v1/users/{'90-B3-D5-1F-30-09-00-00'}/tokens")
    assert status == 404  # no such User


async def test_every_change_is_audited_with_old_and_new(api: Api) -> None:
    path = f"/v1/allocations/{B}"
    await api.call("operator", "PUT", path, ALLOCATION)
    await api.call("operator", "PUT", path, {"rate_per_s": 15, "burst": 30})
    _, doc = await api.call("operator", "GET", f"/v1/audit?key_prefix=allocations/{B}")
    newest, older = doc["records"][:2]
    assert newest["action"] == "put"
    assert newest["by"] == "operator:bootstrap"
    assert newest["version"] == 2
    assert newest["old"] == {"rate_per_s": 10.0, "burst": 20, "shadow": False}
    assert newest["new"]["rate_per_s"] == 15.0
    assert older["old"] is None
    _, doc = await api.call("operator", "GET", "/v1/audit?key_prefix=tokens/")
    actions = {r["action"] for r in doc["records"]}
    assert "token.issue" in actions
    assert all("sha256" not in str(r) for r in doc["records"])


async def test_unauthenticated_and_bad_tokens(api: Api) -> None:
    api.tokens["bogus"] = "dcg_000000000000_nope"
    status, doc = await api.call("bogus", "GET", "/v1/users")
    assert status == 401
    assert "not valid" in doc["error"]
    status, doc = await api.call("none", "GET", "/v1/users")
    assert (status, "Bearer" in doc["error"]) == (401, True)
    status, _ = await api.call("operator", "GET", "/v1/users/not-a-user")
    assert status == 404


async def test_openapi_lists_every_route(api: Api) -> None:
    from workers.admin.app import ROUTES

    async with api.client.get("/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path]
    assert "Allocation" in doc["components"]["schemas"]


async def test_lists_show_a_user_only_its_own(api: Api) -> None:
    await api.call("operator", "PUT", f"/v1/allocations/{A}", ALLOCATION)
    await api.call("operator", "PUT", f"/v1/allocations/{B}", ALLOCATION)
    _, doc = await api.call("A", "GET", "/v1/allocations")
    assert list(doc["items"]) == [A]
    _, doc = await api.call("operator", "GET", "/v1/allocations")
    assert set(doc["items"]) == {A, B}


async def test_configuration_needs_a_registered_user(api: Api) -> None:
    stranger = "90-B3-D5-1F-30-0F-00-00"
    status, doc = await api.call("operator", "PUT", f"/v1/allocations/{stranger}", ALLOCATION)
    assert status == 404
    assert f"PUT /v1/users/{stranger} first" in doc["error"]


async def test_deleting_a_user_revokes_its_tokens(api: Api) -> None:
    assert (await api.call("B", "GET", f"/v1/users/{B}"))[0] == 200
    status, doc = await api.call("operator", "DELETE", f"/v1/users/{B}")
    assert status == 200
    assert len(doc["revoked_tokens"]) == 1
    assert (await api.call("B", "GET", f"/v1/users/{B}"))[0] == 401


async def test_unknown_paths_and_methods_answer_in_json(api: Api) -> None:
    status, doc = await api.call("operator", "GET", "/v1/nothing-here")
    assert (status, doc) == (404, {"error": "no such path"})
    status, doc = await api.call("operator", "PATCH", "/v1/traffic")
    assert (status, doc) == (405, {"error": "method PATCH not allowed here"})


async def test_adt_values_with_exception_windows_and_owner_checks(api: Api) -> None:
    values: dict[str, Any] = {
        "thresholds": [{"srv": "11.3", "window_s": 86400, "max": 1000}],
        "exceptions": [
            {
                "id": "firmware-rollout",
                "start": "2026-12-01T00:00:00Z",
                "end": "2026-12-08T00:00:00Z",
                "thresholds": {f"user:{A}:11.3:86400": 50000},
                "reason": "planned firmware campaign",
            }
        ],
    }
    status, doc = await api.call("A", "PUT", f"/v1/adt/users/{A}", values)
    assert status == 200, doc
    assert doc["exceptions"][0]["id"] == "firmware-rollout"
    bad = {**values, "exceptions": [{**values["exceptions"][0], "thresholds": {"nope": 1}}]}
    status, doc = await api.call("A", "PUT", f"/v1/adt/users/{A}", bad)
    assert status == 422
    assert "nope" in doc["error"]
    status, doc = await api.call(
        "operator", "PUT", "/v1/adt/dcc", {"thresholds": [{"srv": "*", "window_s": 60, "max": 1}]}
    )
    assert status == 422


async def test_regional_capacity_and_mp102_bodies_are_checked(api: Api) -> None:
    cases = [
        ("/v1/alerts/regional-capacity", {"regions": {"mars": {"rate_per_s": 1, "burst": 1}}},
         "regions"),
        ("/v1/alerts/regional-capacity", {"regions": {"north": {"rate_per_s": 0, "burst": 1}}},
         "rate_per_s"),
        ("/v1/alerts/regional-capacity", {"regions": {}, "unknown_region": "south"},
         "unknown_region 'south' has no capacity"),
        ("/v1/alerts/regional-capacity", {**REGIONAL, "high_priority_codes": ["8f3f"]},
         "high_priority_codes"),
        ("/v1/alerts/mp102", {"enabled": True, "watch_s": 0}, "watch_s"),
        ("/v1/alerts/mp102", {"outage_codes": ["AD1"], "restore_codes": ["AD1"]},
         "both outage_codes and restore_codes"),
        ("/v1/alerts/mp102", {"enabled": "yes"}, "enabled"),
    ]  # fmt: skip
    for path, body, words in cases:
        status, doc = await api.call("operator", "PUT", path, body)
        assert (status, words in doc["error"]) == (422, True), doc
    status, doc = await api.call("operator", "PUT", "/v1/alerts/mp102", {})
    assert status == 200
    assert doc == {
        "enabled": False,
        "watch_s": 1800,
        "hold_s": 600,
        "outage_codes": ["AD1"],
        "restore_codes": ["8F35", "8F36"],
        "max_watched": 100000,
        "max_held": 100000,
        "version": 1,
        "source": "api",
    }
