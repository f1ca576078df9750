"""Expiry (issue #5 items 5 and 10): a request pending longer than the configured time is
answered `deleted` (Q5) with a reason that says it expired; time is injected, never waited."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import msgspec
import orjson
import pytest
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, read_topic
from tests.integration.quarantine_helpers import (
    A,
    FakeClock,
    held_entry,
    quarantine_all,
    quarantine_gateway,
)
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

PENDING_MAX_S = 120


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def gw(
    settings: Settings, kafka: KafkaSettings, registry: CollectorRegistry, clock: FakeClock
) -> AsyncIterator[ApiClient]:
    settings = msgspec.structs.replace(settings, quarantine_pending_max_s=PENDING_MAX_S)
    async with quarantine_gateway(settings, kafka, registry=registry, clock=clock) as gw:
        yield gw


async def test_pending_requests_expire_as_deleted_saying_so(
    gw: ApiClient,
    settings: Settings,
    kafka: KafkaSettings,
    registry: CollectorRegistry,
    clock: FakeClock,
) -> None:
    held = await quarantine_all(gw, settings, kafka, A, range(1, 4))
    assert (await gw.call("A", "POST", f"/v1/quarantine/{held[0]}/release"))[0] == 200
    oldest = min(held_entry(gw.admin.quarantine, i).at_s for i in held[1:])
    clock.now_s = oldest + 30
    assert registry.get_sample_value("dccgate_quarantine_pending") == 2
    assert registry.get_sample_value("dccgate_quarantine_pending_max_seconds") == PENDING_MAX_S
    age = registry.get_sample_value("dccgate_quarantine_oldest_pending_age_seconds")
    assert age == pytest.approx(30)

    # Not yet due: nothing expires.
    assert await gw.admin.quarantine.expire_due(clock()) == 0
    clock.now_s = oldest + PENDING_MAX_S + 1
    age = registry.get_sample_value("dccgate_quarantine_oldest_pending_age_seconds")
    assert age is not None
    assert age > 120
    assert await gw.admin.quarantine.expire_due(clock()) == 2

    _, doc = await gw.call("A", "GET", "/v1/quarantine?state=expired")
    assert sorted(e["id"] for e in doc["items"]) == held[1:]
    assert registry.get_sample_value("dccgate_quarantine_pending") == 0
    assert registry.get_sample_value("dccgate_quarantine_oldest_pending_age_seconds") == 0
    expired = registry.get_sample_value(
        "dccgate_quarantine_decisions_total", {"decision": "expired", "by": "expiry"}
    )
    assert expired == 2

    # The User was told: deleted (Q5), because it expired after the configured time.
    answers = await read_topic(kafka, settings.topics.user_responses, expect=6)
    final = {
        doc["request_id"]: doc
        for doc in (orjson.loads(r.value) for r in answers)
        if doc["response_code"] != "Q1"
    }
    assert collections.Counter(d["response_code"] for d in final.values()) == {"Q4": 1, "Q5": 2}
    for request_id in held[1:]:
        answer = final[request_id]
        assert answer["outcome"] == "deleted"
        assert "expired: no release or delete decision within 2 min" in answer["reason"]

    # Final: an expired request cannot be released any more; nothing was forwarded for it.
    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{held[1]}/release")
    assert status == 409
    assert "already expired" in doc["error"]
    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=1)
    assert [orjson.loads(r.value)["request_id"] for r in forwards] == held[:1]

    _, audit = await gw.call("operator", "GET", "/v1/audit?key_prefix=quarantine/")
    actions = collections.Counter(r["action"] for r in audit["records"])
    assert actions == {"quarantine.release": 1, "quarantine.expire": 2}
    assert {r["by"] for r in audit["records"] if r["action"] == "quarantine.expire"} == {
        "dccgate:expiry"
    }
