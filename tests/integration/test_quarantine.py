"""Anomaly detection end to end: a User's ADT on 7.2 (Disable Supply), a burst, the excess
quarantined, released and deleted by the User through the API, released ones forwarded once.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson
import pytest

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, read_topic
from tests.integration.quarantine_helpers import (
    OPERATOR,
    A,
    RefuseOnce,
    disable_supply,
    held_entry,
    quarantine_all,
    quarantine_gateway,
)
from workers.admin.service import AdminService
from workers.config.settings import Settings
from workers.tools.send import send_requests

pytestmark = pytest.mark.usefixtures("topics_ready")

Gateway = ApiClient


@pytest.fixture
async def gateway(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[Gateway]:
    async with quarantine_gateway(settings, kafka) as gw:
        yield gw


def _disable_supply(counter: int) -> bytes:
    return disable_supply(counter, A)


async def test_the_user_decides_on_its_quarantined_requests(
    gateway: Gateway, settings: Settings, kafka: KafkaSettings
) -> None:
    gw = gateway
    values = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 3}]}
    assert (await gw.call("A", "PUT", f"/v1/adt/users/{A}", values))[0] == 200
    result = await send_requests(
        [_disable_supply(n) for n in range(1, 7)],
        settings=kafka,
        topics=settings.topics,
        timeout_s=20,
        out=None,
    )
    outcomes = collections.Counter((a["outcome"], a["response_code"]) for a in result.answers)
    assert outcomes == {("accepted", "I99"): 3, ("quarantined", "Q1"): 3}
    held = sorted(a["request_id"] for a in result.answers if a["outcome"] == "quarantined")

    # The quarantine service sees them (it follows dcc.sr.quarantine).
    for _ in range(50):
        status, doc = await gw.call("A", "GET", "/v1/quarantine")
        if len(doc["items"]) == 3:
            break
        await asyncio.sleep(0.1)
    assert sorted(i["id"] for i in doc["items"]) == held
    assert doc["items"][0]["rule"] == f"user:{A}:7.2:3600"
    assert (await gw.call("B", "GET", f"/v1/quarantine?user_id={A}"))[0] == 403
    assert (await gw.call("B", "POST", f"/v1/quarantine/{held[0]}/release"))[0] == 403

    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{held[0]}/release")
    assert (status, doc["state"]) == (200, "released")
    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{held[0]}/release")
    assert status == 409
    assert "final" in doc["error"]
    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{held[1]}/delete")
    assert (status, doc["state"]) == (200, "deleted")
    status, doc = await gw.call("operator", "POST", f"/v1/quarantine/{held[2]}/release")
    assert (status, doc["state"]) == (200, "released")
    assert (await gw.call("A", "GET", "/v1/quarantine"))[1]["items"] == []

    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=5)
    forwarded = collections.Counter(orjson.loads(r.value)["request_id"] for r in forwards)
    assert sorted(forwarded) == sorted(
        {
            *held[:1],
            *held[2:],
            *(a["request_id"] for a in result.answers if a["outcome"] == "accepted"),
        }
    )
    assert set(forwarded.values()) == {1}  # each released request forwarded once

    answers = await read_topic(kafka, settings.topics.user_responses, expect=9)
    final = collections.Counter(
        orjson.loads(r.value)["response_code"]
        for r in answers
        if orjson.loads(r.value)["request_id"] in held
    )
    assert final == {"Q1": 3, "Q4": 2, "Q5": 1}

    _, audit = await gw.call("operator", "GET", "/v1/audit?key_prefix=quarantine/")
    assert sorted(r["action"] for r in audit["records"]) == [
        "quarantine.delete",
        "quarantine.release",
        "quarantine.release",
    ]


async def test_a_restarted_quarantine_service_remembers_every_decision(
    gateway: Gateway, settings: Settings, kafka: KafkaSettings
) -> None:
    gw = gateway
    values = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 0}]}
    assert (await gw.call("A", "PUT", f"/v1/adt/users/{A}", values))[0] == 200
    result = await send_requests(
        [_disable_supply(n) for n in range(1, 3)],
        settings=kafka,
        topics=settings.topics,
        timeout_s=20,
        out=None,
    )
    held = sorted(a["request_id"] for a in result.answers)
    for _ in range(50):
        if len(gw.admin.quarantine.list(A)) == 2:
            break
        await asyncio.sleep(0.1)
    assert (await gw.call("A", "POST", f"/v1/quarantine/{held[0]}/delete"))[0] == 200
    # A second admin process rebuilds the book from dcc.sr.quarantine.
    other = AdminService(
        msgspec.structs.replace(settings, admin_token=OPERATOR), kafka, gw.admin.reader
    )
    await other.start()
    try:
        for _ in range(50):
            entry = other.quarantine.book.get(held[0])
            if entry is not None and entry.state == "deleted":
                break
            await asyncio.sleep(0.1)
        assert [e["id"] for e in other.quarantine.list(A)] == [held[1]]
        assert held_entry(other.quarantine, held[0]).state == "deleted"
    finally:
        await other.stop()


@pytest.mark.parametrize("refused", ["sr_outbound", "sr_quarantine"])
async def test_a_decision_kafka_did_not_acknowledge_can_be_retried(
    gateway: Gateway, settings: Settings, kafka: KafkaSettings, refused: str
) -> None:
    gw = gateway
    [request_id] = await quarantine_all(gw, settings, kafka, A, range(1, 2))
    service = gw.admin.quarantine
    service._producer = RefuseOnce(service._producer, getattr(settings.topics, refused))

    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{request_id}/release")
    assert (status, "try again" in doc["error"]) == (503, True), doc
    assert held_entry(service, request_id).state == "pending"
    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{request_id}/release")
    assert (status, doc["state"]) == (200, "released")
    assert (await gw.call("A", "POST", f"/v1/quarantine/{request_id}/release"))[0] == 409

    # The decision record is the commit point: one on the log, the request decided once.
    log = await read_topic(kafka, settings.topics.sr_quarantine, expect=2)
    events = [orjson.loads(r.value)["event"] for r in log]
    assert events == ["quarantined", "released"]
    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=1)
    # Refused before the forward: forwarded once. Refused after it (the decision record):
    # forwarded again by the retry (at-least-once; downstream de-duplicates by request_id).
    assert len(forwards) == (1 if refused == "sr_outbound" else 2)
    answers = await read_topic(kafka, settings.topics.user_responses, expect=2)
    codes = [orjson.loads(r.value)["response_code"] for r in answers]
    assert codes.count("Q4") == (1 if refused == "sr_outbound" else 2)


async def test_a_request_quarantined_twice_is_held_once_and_told_its_state(
    gateway: Gateway, settings: Settings, kafka: KafkaSettings
) -> None:
    """A router that lost its replay memory could quarantine the same request again; the
    quarantine service never holds it twice and answers the copy with the current state
    (issue 14: no orphaned quarantine)."""
    gw = gateway
    values = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 0}]}
    assert (await gw.call("A", "PUT", f"/v1/adt/users/{A}", values))[0] == 200
    result = await send_requests(
        [_disable_supply(1)], settings=kafka, topics=settings.topics, timeout_s=20, out=None
    )
    [held] = [a["request_id"] for a in result.answers if a["outcome"] == "quarantined"]
    for _ in range(50):  # the quarantine service follows dcc.sr.quarantine
        if gw.admin.quarantine.book.get(held) is not None:
            break
        await asyncio.sleep(0.1)
    assert held_entry(gw.admin.quarantine, held).state == "pending"
    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{held}/release")
    assert (status, doc["state"]) == (200, "released")

    # The same quarantine record again, as a router without its replay memory would write it.
    [original] = [
        r
        for r in await read_topic(kafka, settings.topics.sr_quarantine, expect=2)
        if b'"event":"quarantined"' in (r.value or b"")
    ]
    producer = BatchProducer(kafka)
    await producer.start()
    try:
        await producer.send_one(settings.topics.sr_quarantine, original.key, original.value)
    finally:
        await producer.stop()

    def told(records: list[Any]) -> list[dict[str, Any]]:
        docs = [orjson.loads(r.value or b"") for r in records]
        return [d for d in docs if d["request_id"] == held and "already" in d["reason"]]

    answers = await read_topic(kafka, settings.topics.user_responses, expect=3)
    for _ in range(100):
        if told(answers):
            break
        await asyncio.sleep(0.1)
        answers = await read_topic(kafka, settings.topics.user_responses, expect=3)
    [copy] = told(answers)
    assert (copy["outcome"], copy["response_code"]) == ("released", "Q4")
    assert "this copy is not held again" in copy["reason"]
    assert (await gw.call("A", "GET", "/v1/quarantine"))[1]["items"] == []
    status, doc = await gw.call("A", "POST", f"/v1/quarantine/{held}/release")
    assert status == 409
    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=1)
    assert [orjson.loads(r.value or b"")["request_id"] for r in forwards] == [held]
