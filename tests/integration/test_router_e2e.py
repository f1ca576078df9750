from __future__ import annotations

import asyncio
import io

import orjson
import pytest

from broker.settings import KafkaSettings
from tests.conftest import DEVICE, USER_A, RequestFactory
from tests.integration.helpers import read_topic, running_router
from workers.config.settings import Settings
from workers.tools.send import send_requests

pytestmark = pytest.mark.usefixtures("topics_ready")


async def test_requests_are_forwarded_rejected_or_dead_lettered(
    settings: Settings, kafka: KafkaSettings, make_request: RequestFactory
) -> None:
    lines = [
        make_request(counter=1),
        make_request(counter=2, srv="7.1", cv=4),
        make_request(counter=3, role="ED", srv="7.2", cv=4),
        make_request(counter=2),
        b"{broken",
    ]
    out = io.StringIO()
    async with running_router(settings, kafka) as (router, registry):
        result = await send_requests(
            lines, settings=kafka, topics=settings.topics, timeout_s=20, out=out
        )
        forwards = await read_topic(kafka, settings.topics.sr_outbound, expect=2)
    assert result.missing == []
    assert sorted(a["response_code"] for a in result.answers) == ["E102", "E2", "I99", "I99"]
    assert [d["kind"] for d in result.deadlettered] == ["invalid_json"]
    assert [r.key for r in forwards] == [DEVICE.encode(), DEVICE.encode()]
    assert {orjson.loads(r.value)["request_id"] for r in forwards} == {
        f"{USER_A}:{DEVICE}:1",
        f"{USER_A}:{DEVICE}:2",
    }
    assert "rejected" in out.getvalue()
    assert router.status.records == 5
    assert (
        registry.get_sample_value(
            "dccgate_records_consumed_total",
            {"service": "router", "topic": settings.topics.sr_inbound},
        )
        == 5.0
    )


async def test_two_routers_share_the_partitions_and_answer_everything(
    settings: Settings, kafka: KafkaSettings
) -> None:
    from workers.tools.bench import make_requests

    records = make_requests(3_000, seed=3)
    lines = [value for _, value in records]
    async with (
        running_router(settings, kafka) as (one, _),
        running_router(settings, kafka) as (
            two,
            _,
        ),
    ):
        for _ in range(100):
            if one.status.assigned and two.status.assigned:
                break
            await asyncio.sleep(0.1)
        result = await send_requests(
            lines, settings=kafka, topics=settings.topics, timeout_s=30, out=None
        )
    assert result.missing == []
    assert len(result.answers) == 3_000
    assert one.status.records > 0
    assert two.status.records > 0
    assert one.status.records + two.status.records == 3_000
    assert not one.status.assigned & two.status.assigned
