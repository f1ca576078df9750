"""Bulk quarantine decisions and list filters (issue #5 item 5): by rule, by time range and
by User; each request decided once, released ones forwarded once, every decision audited."""

from __future__ import annotations

import collections
import datetime
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, read_topic
from tests.integration.quarantine_helpers import (
    A,
    B,
    RefuseOnce,
    held_entry,
    quarantine_all,
    quarantine_gateway,
)
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

RULE_A = f"user:{A}:7.2:3600"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def gw(
    settings: Settings, kafka: KafkaSettings, registry: CollectorRegistry
) -> AsyncIterator[ApiClient]:
    async with quarantine_gateway(settings, kafka, registry=registry) as gw:
        yield gw


def _iso(epoch_s: float) -> str:
    when = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")  # no "+" to escape in a query


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in entries]


async def test_bulk_decisions_by_rule_time_range_and_user(
    gw: ApiClient, settings: Settings, kafka: KafkaSettings, registry: CollectorRegistry
) -> None:
    first = await quarantine_all(gw, settings, kafka, A, range(1, 4))
    later = await quarantine_all(gw, settings, kafka, A, range(4, 7))
    of_b = await quarantine_all(gw, settings, kafka, B, range(1, 3))
    at = {i: held_entry(gw.admin.quarantine, i).at_s for i in first + later}
    assert max(at[i] for i in first) < min(at[i] for i in later)
    boundary = _iso((max(at[i] for i in first) + min(at[i] for i in later)) / 2)

    # List filters: by rule, by time range, by state.
    _, doc = await gw.call("operator", "GET", f"/v1/quarantine?rule={RULE_A}")
    assert (_ids(doc["items"]), doc["more"]) == (first + later, False)
    _, doc = await gw.call("A", "GET", f"/v1/quarantine?to={boundary}")
    assert _ids(doc["items"]) == first
    _, doc = await gw.call("operator", "GET", f"/v1/quarantine?from={boundary}")
    assert _ids(doc["items"]) == [*later, *of_b]
    _, doc = await gw.call("operator", "GET", "/v1/quarantine?limit=2")
    assert (_ids(doc["items"]), doc["more"]) == (first[:2], True)

    # A User may not touch another User's requests, even in bulk.
    status, _ = await gw.call("B", "POST", "/v1/quarantine/release", {"user_id": A})
    assert status == 403
    status, doc = await gw.call("B", "POST", "/v1/quarantine/release", {"rule": RULE_A})
    assert (status, doc["decided"], doc["skipped"]) == (200, [], [])  # its own only: none

    # One released singly first; then A releases its first burst by rule and time range.
    assert (await gw.call("A", "POST", f"/v1/quarantine/{first[0]}/release"))[0] == 200
    bulk: dict[str, str | int] = {"rule": RULE_A, "to": boundary}
    status, doc = await gw.call("A", "POST", "/v1/quarantine/release", bulk)
    assert status == 200, doc
    assert (doc["decision"], _ids(doc["decided"]), doc["more"]) == ("release", first[1:], False)
    assert {e["state"] for e in doc["decided"]} == {"released"}
    ((skipped),) = doc["skipped"]
    assert (skipped["id"], skipped["state"]) == (first[0], "released")
    assert "final" in skipped["reason"]
    # Deciding twice stays refused per item: nothing is decided, everything is skipped.
    status, doc = await gw.call("A", "POST", "/v1/quarantine/delete", bulk)
    assert (status, doc["decided"], _ids(doc["skipped"])) == (200, [], first)

    # An operator deletes the later burst by User and time range, two at a time.
    bulk = {"user_id": A, "from": boundary, "limit": 2}
    status, doc = await gw.call("operator", "POST", "/v1/quarantine/delete", bulk)
    assert (status, _ids(doc["decided"]), doc["more"]) == (200, later[:2], True)
    status, doc = await gw.call("operator", "POST", "/v1/quarantine/delete", bulk)
    assert (_ids(doc["decided"]), doc["more"]) == (later[2:], False)
    status, doc = await gw.call("operator", "POST", "/v1/quarantine/delete", {"user_id": B})
    assert _ids(doc["decided"]) == of_b
    _, doc = await gw.call("operator", "GET", "/v1/quarantine")
    assert doc["items"] == []
    _, doc = await gw.call("operator", "GET", "/v1/quarantine?state=released")
    assert _ids(doc["items"]) == first
    _, doc = await gw.call("A", "GET", "/v1/quarantine?state=any")
    assert len(doc["items"]) == 6

    # Released ones forwarded exactly once; each quarantined request answered once more.
    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=3)
    forwarded = collections.Counter(orjson.loads(r.value)["request_id"] for r in forwards)
    assert forwarded == dict.fromkeys(first, 1)
    answers = await read_topic(kafka, settings.topics.user_responses, expect=16)
    codes = collections.Counter(orjson.loads(r.value)["response_code"] for r in answers)
    assert codes == {"Q1": 8, "Q4": 3, "Q5": 5}

    # Every decision audited, the bulk ones with their filters.
    _, audit = await gw.call("operator", "GET", "/v1/audit?key_prefix=quarantine/")
    actions = collections.Counter(r["action"] for r in audit["records"])
    assert actions == {"quarantine.release": 3, "quarantine.delete": 5}
    bulk_records = [r for r in audit["records"] if "bulk" in r["new"]]
    assert len(bulk_records) == 7
    assert {"rule": RULE_A}.items() <= bulk_records[-1]["new"]["bulk"].items()

    def sample(decision: str, by: str) -> float | None:
        return registry.get_sample_value(
            "dccgate_quarantine_decisions_total", {"decision": decision, "by": by}
        )

    assert (sample("released", "user"), sample("deleted", "operator")) == (3, 5)
    assert registry.get_sample_value("dccgate_quarantine_pending") == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "at least one filter"),
        ({"rule": RULE_A, "colour": "red"}, "colour"),
        ({"from": "2026-01-01T00:00:00"}, "timezone"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "before"),
        ({"user_id": A, "limit": 0}, "limit"),
        ({"kind": "nope"}, "kind"),
    ],
)
async def test_bad_bulk_bodies_are_refused(gw: ApiClient, body: Any, words: str) -> None:
    status, doc = await gw.call("operator", "POST", "/v1/quarantine/release", body)
    assert (status, words in doc["error"]) == (422, True), doc


@pytest.mark.parametrize(
    "query",
    [
        "state=nope",
        "kind=nope",
        "from=yesterday",
        "to=2026-01-01T00:00:00",
        "limit=0",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ],
)
async def test_bad_list_filters_are_refused(gw: ApiClient, query: str) -> None:
    status, doc = await gw.call("operator", "GET", f"/v1/quarantine?{query}")
    assert status == 422, doc


async def test_a_bulk_decision_partly_not_acknowledged_decides_the_rest_and_can_be_repeated(
    gw: ApiClient, settings: Settings, kafka: KafkaSettings
) -> None:
    ids = await quarantine_all(gw, settings, kafka, A, range(1, 4))
    service = gw.admin.quarantine
    service._producer = RefuseOnce(service._producer, settings.topics.sr_outbound, ids[1].encode())

    status, doc = await gw.call("A", "POST", "/v1/quarantine/release", {"user_id": A})
    assert status == 503
    assert (_ids(doc["decided"]), [f["id"] for f in doc["failed"]]) == ([ids[0], ids[2]], [ids[1]])
    assert "call again" in doc["error"]
    assert held_entry(service, ids[1]).state == "pending"

    status, doc = await gw.call("A", "POST", "/v1/quarantine/release", {"user_id": A})
    assert status == 200
    assert (_ids(doc["decided"]), doc["failed"]) == ([ids[1]], [])
    assert sorted(s["id"] for s in doc["skipped"]) == sorted([ids[0], ids[2]])
    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=3)
    forwarded = collections.Counter(orjson.loads(r.value)["request_id"] for r in forwards)
    assert forwarded == dict.fromkeys(ids, 1)  # each once: the refused forward never went
