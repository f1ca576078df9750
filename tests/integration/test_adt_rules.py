"""Each ADT rule kind on the session broker, with values put through the admin API: data
values (Q3, SECMP0007's firmware activation date and a numeric range), and shadow mode
(counted, logged, processed). Q1 is in test_quarantine.py, Q2 and the counters' survival
in test_adt_counters_survive.py.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, admin_api, read_topic, wait_until_async
from workers.config.settings import Settings
from workers.router.service import build_router
from workers.runtime.metrics import CommonMetrics
from workers.tools.send import send_requests

pytestmark = pytest.mark.usefixtures("topics_ready")

A = "90-B3-D5-1F-30-01-00-00"
OPERATOR = "adt-rules-test-operator-token-32-characters"


@pytest.fixture
async def gateway(
    settings: Settings, kafka: KafkaSettings
) -> AsyncIterator[tuple[ApiClient, CollectorRegistry]]:
    async with admin_api(settings, kafka, OPERATOR) as gw:
        registry = CollectorRegistry()
        router = build_router(
            settings, kafka, CommonMetrics(registry, version="t"), reader=gw.reader
        )
        stop = asyncio.Event()
        task = asyncio.create_task(router.run(stop))
        try:
            user = {"name": "A", "roles": ["IS", "GS"]}
            assert (await gw.call("operator", "PUT", f"/v1/users/{A}", user))[0] == 200
            yield gw, registry
        finally:
            stop.set()
            await task


def _request(counter: int, srv: str, cv: int, body: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "request_id": f"{A}:00-DB-00-00-00-00-00-{counter:02X}:{counter}",
            "user_role": "IS",
            "srv": srv,
            "command_variant": cv,
            "body": body,
        }
    )


async def _answers(settings: Settings, kafka: KafkaSettings, requests: list[bytes]) -> list[Any]:
    result = await send_requests(
        requests, settings=kafka, topics=settings.topics, timeout_s=20, out=None
    )
    assert len(result.answers) == len(requests)
    return sorted(result.answers, key=lambda a: a["request_id"])


async def test_data_values_out_of_range_are_quarantined_with_the_rule_and_value(
    gateway: tuple[ApiClient, CollectorRegistry], settings: Settings, kafka: KafkaSettings
) -> None:
    gw, registry = gateway
    values = {
        "value_rules": [
            {"srv": "11.3", "field": "activation_datetime", "max_days_ahead": 30},
            {"srv": "2.2", "field": "amount", "min": 0, "max": 500},
        ]
    }
    assert (await gw.call("operator", "PUT", f"/v1/adt/users/{A}", values))[0] == 200
    now = dt.datetime.now(dt.UTC)
    soon = (now + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    far = (now + dt.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    answers = await _answers(
        settings,
        kafka,
        [
            _request(1, "11.3", 4, {"activation_datetime": soon}),
            _request(2, "11.3", 4, {"activation_datetime": far}),
            _request(3, "2.2", 1, {"amount": 120}),
            _request(4, "2.2", 1, {"amount": 9000}),
            _request(5, "11.3", 4, {"activation_datetime": "next tuesday"}),
        ],
    )
    assert [(a["outcome"], a["response_code"]) for a in answers] == [
        ("accepted", "I99"),
        ("quarantined", "Q3"),
        ("accepted", "I99"),
        ("quarantined", "Q3"),
        ("quarantined", "Q3"),
    ]
    assert answers[1]["rule"] == f"user:{A}:value:11.3:activation_datetime"
    assert "30" in answers[1]["reason"]
    assert "9000" in answers[3]["reason"]
    assert "500" in answers[3]["reason"]
    assert "release" in answers[3]["reason"]
    held = await read_topic(kafka, settings.topics.sr_quarantine, expect=3)
    logged = {orjson.loads(r.value)["id"]: orjson.loads(r.value) for r in held}
    entry = logged[answers[3]["request_id"]]
    assert (entry["kind"], entry["observed"], entry["limit"]) == ("data_value", 9000, 500)
    # The original bytes are held, so a release forwards exactly what the User sent.
    assert orjson.loads(orjson.dumps(entry["request"]))["body"] == {"amount": 9000}
    sample = registry.get_sample_value(
        "dccgate_adt_quarantined_total", {"kind": "data_value", "srv": "2.2"}
    )
    assert sample == 1


async def test_shadow_rules_count_what_they_would_quarantine_and_process_it(
    gateway: tuple[ApiClient, CollectorRegistry], settings: Settings, kafka: KafkaSettings
) -> None:
    gw, registry = gateway
    values = {
        "thresholds": [{"srv": "7.2", "window_s": 3600, "max": 2, "shadow": True}],
    }
    assert (await gw.call("operator", "PUT", f"/v1/adt/users/{A}", values))[0] == 200
    answers = await _answers(settings, kafka, [_request(n, "7.2", 4, {}) for n in range(1, 6)])
    assert collections.Counter(a["outcome"] for a in answers) == {"accepted": 5}

    def would() -> float | None:
        labels = {"kind": "user_adt"}
        return registry.get_sample_value("dccgate_adt_shadow_would_quarantine_total", labels)

    # Counted once a batch's outputs are acknowledged: on Apache Kafka the answers can be
    # read before the router has seen that acknowledgement, so wait for the count.
    await wait_until_async(
        lambda: would() == 3, timeout_s=10, what=lambda: f"would quarantine {would()}, not 3"
    )
    forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=5)
    assert len(forwards) == 5
