"""The configuration in force through the admin API: defaults, file and API sources,
`GET /v1/config`, and `?dry_run=true` on changes, against the session's real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, admin_api
from workers.config.configfile import ConfigFile
from workers.config.defaults import DEFAULT_ITEMS, DEFAULT_MP102, as_json
from workers.config.model import Traffic
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

OPERATOR = "op-secret-for-tests-at-least-32-characters"
A = "90-B3-D5-1F-30-01-00-00"
SINGLETONS = {
    "adt.dcc": "/v1/adt/dcc",
    "alerts.exclusions": "/v1/alerts/exclusions",
    "alerts.storm-policy": "/v1/alerts/storm-policy",
    "alerts.regional-capacity": "/v1/alerts/regional-capacity",
    "alerts.mp102": "/v1/alerts/mp102",
}


@pytest.fixture
async def api(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[ApiClient]:
    async with admin_api(settings, kafka, OPERATOR) as api:
        status, _ = await api.call(
            "operator", "PUT", f"/v1/users/{A}", {"name": "A", "roles": ["IS"]}
        )
        assert status == 200
        yield api


def _fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("version", "source", "note")}


async def test_a_fresh_gateway_answers_the_built_in_defaults(api: ApiClient) -> None:
    for kind, path in SINGLETONS.items():
        status, doc = await api.call("operator", "GET", path)
        assert status == 200, (path, doc)
        assert (doc["source"], doc["version"]) == ("default", 0), path
        assert doc["note"]
        default = DEFAULT_ITEMS[kind]
        assert default is not None
        assert _fields(doc) == as_json(default), path
    status, doc = await api.call("operator", "GET", "/v1/alerts/storm-policy")
    assert doc["default"] == {"window_s": 600, "max_alerts": 10, "period_s": 600}
    status, doc = await api.call("operator", "GET", "/v1/traffic")
    assert status == 200
    assert doc == {
        "version": 0,
        "source": "default",
        "note": "traffic management is off: nothing is throttled (PUT /v1/traffic turns it on)",
    }
    status, doc = await api.call("operator", "GET", f"/v1/allocations/{A}")
    assert (status, doc["source"], _fields(doc)) == (200, "default", {})
    status, doc = await api.call("operator", "GET", f"/v1/adt/users/{A}")
    assert (status, doc["source"]) == (200, "default")
    # A User has no default: one never registered is still 404.
    status, doc = await api.call("operator", "GET", "/v1/users/90-B3-D5-1F-30-09-00-00")
    assert status == 404


async def test_a_change_through_the_api_is_source_api_with_its_version(api: ApiClient) -> None:
    body = {"alert_codes": ["8F3F"]}
    status, doc = await api.call("operator", "PUT", "/v1/alerts/exclusions", body)
    assert status == 200
    status, doc = await api.call("operator", "GET", "/v1/alerts/exclusions")
    assert (doc["source"], doc["version"], doc["alert_codes"]) == ("api", 1, ["8F3F"])
    # A User without an allocation gets the traffic item's default_allocation.
    traffic = {
        "capacity_per_s": 100,
        "operating_threshold_per_s": 80,
        "default_allocation": {"rate_per_s": 5, "burst": 10},
    }
    assert (await api.call("operator", "PUT", "/v1/traffic", traffic))[0] == 200
    status, doc = await api.call("operator", "GET", f"/v1/allocations/{A}")
    assert (doc["source"], doc["version"], doc["rate_per_s"], doc["burst"]) == ("api", 0, 5, 10)
    status, doc = await api.call("operator", "GET", "/v1/users")
    assert doc["users"][A]["source"] == "api"


async def test_get_config_lists_everything_in_force(api: ApiClient) -> None:
    status, doc = await api.call("operator", "GET", "/v1/config")
    assert status == 200
    by_key = {item["key"]: item for item in doc["items"]}
    assert {"traffic", f"users/{A}", f"allocations/{A}", f"adt.users/{A}"} <= set(by_key)
    assert set(SINGLETONS) <= set(by_key)
    assert by_key[f"users/{A}"]["source"] == "api"
    assert by_key[f"users/{A}"]["by"].startswith("operator")
    assert by_key["alerts.mp102"] == {
        "key": "alerts.mp102",
        "kind": "alerts.mp102",
        "user_id": None,
        "path": "/v1/alerts/mp102",
        "source": "default",
        "version": 0,
        "by": None,
        "at_ms": None,
        "note": "the MP102 rule is off",
        "value": as_json(DEFAULT_MP102),
    }
    # Operators only: a User token is refused.
    status, token = await api.call("operator", "POST", f"/v1/users/{A}/tokens")
    api.tokens["A"] = token["token"]
    assert (await api.call("A", "GET", "/v1/config"))[0] == 403


async def test_dry_run_answers_what_would_change_and_writes_nothing(api: ApiClient) -> None:
    body = {"default": {"window_s": 60, "max_alerts": 5, "period_s": 600}}
    path = "/v1/alerts/storm-policy?dry_run=true"
    status, doc = await api.call("operator", "PUT", path, body)
    assert status == 200
    assert doc["dry_run"] is True
    assert doc["would_write"] is True
    assert (doc["version"], doc["version_after"], doc["source"]) == (0, 1, "default")
    assert doc["changes"] == {
        "default": {
            "from": {"window_s": 600, "max_alerts": 10, "period_s": 600},
            "to": {"window_s": 60, "max_alerts": 5, "period_s": 600},
        }
    }
    status, now = await api.call("operator", "GET", "/v1/alerts/storm-policy")
    assert (now["source"], now["version"]) == ("default", 0)
    status, audit = await api.call("operator", "GET", "/v1/audit?key_prefix=alerts.")
    assert audit["records"] == []
    # The dry run checks what the change would: a bad body, a stale version.
    status, doc = await api.call("operator", "PUT", path, {"default": {"window_s": 0}})
    assert status == 422
    status, doc = await api.call("operator", "PUT", path, {**body, "version": 3})
    assert status == 409
    status, doc = await api.call("operator", "PUT", "/v1/traffic?dry_run=maybe", {})
    assert status == 422
    assert "dry_run" in doc["error"]
    # The same body again once written: nothing would change.
    assert (await api.call("operator", "PUT", "/v1/alerts/storm-policy", body))[0] == 200
    status, doc = await api.call("operator", "PUT", path, body)
    assert (doc["would_write"], doc["changes"], doc["version_after"]) == (False, {}, 1)


async def test_items_seeded_from_the_file_are_source_file(
    settings: Settings, kafka: KafkaSettings
) -> None:
    config = ConfigFile(traffic=Traffic(capacity_per_s=500, operating_threshold_per_s=400))
    settings = msgspec.structs.replace(settings, config=config)
    async with admin_api(settings, kafka, OPERATOR) as api:
        status, doc = await api.call("operator", "GET", "/v1/traffic")
        assert (status, doc["source"], doc["version"]) == (200, "file", 1)
        assert doc["capacity_per_s"] == 500
        status, doc = await api.call("operator", "GET", "/v1/alerts/exclusions")
        assert doc["source"] == "default"
        # Changed through the API, the item's source is the API from then on.
        body = {"capacity_per_s": 600, "operating_threshold_per_s": 400, "version": 1}
        assert (await api.call("operator", "PUT", "/v1/traffic", body))[0] == 200
        status, doc = await api.call("operator", "GET", "/v1/traffic")
        assert (doc["source"], doc["version"]) == ("api", 2)
