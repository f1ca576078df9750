"""Helpers for the quarantine tests: a gateway (admin API, quarantine service and a router)
with Users A and B and their tokens, 7.2 Disable Supply bursts, and a clock to move on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
from prometheus_client import CollectorRegistry

from adt import QuarantineEntry
from broker.errors import DeliveryError
from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, admin_api, wait_until_async
from workers.admin.quarantine import QuarantineService, RecordSender
from workers.config.settings import Settings
from workers.router.service import build_router
from workers.runtime.metrics import CommonMetrics
from workers.tools.send import send_requests

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"
OPERATOR = "quarantine-test-operator-token-32-characters"


class FakeClock:
    """Epoch seconds that move only when told: starts at the real time."""

    def __init__(self) -> None:
        self.now_s = time.time()

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`."""
        self.now_s += seconds


class RefuseOnce:
    """A quarantine service's producer whose first send to `topic` (holding `containing`,
    if given) is refused as an unacknowledged record is (DeliveryError); every other send
    goes to the broker. Install it as `service._producer`."""

    def __init__(self, producer: RecordSender, topic: str, containing: bytes = b"") -> None:
        self._producer = producer
        self._topic = topic
        self._containing = containing
        self.refused = 0

    async def send_one(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int]:
        if topic == self._topic and not self.refused and self._containing in (value or b""):
            self.refused += 1
            raise DeliveryError(f"record to {topic} not acknowledged: injected by the test")
        return await self._producer.send_one(topic, key, value)


@contextlib.asynccontextmanager
async def quarantine_gateway(
    settings: Settings,
    kafka: KafkaSettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[ApiClient]:
    """The admin API and a router in this event loop; Users A and B with tokens "A", "B"."""
    async with admin_api(
        settings, kafka, OPERATOR, registry=registry, clock=clock or time.time
    ) as gw:
        router = build_router(
            settings, kafka, CommonMetrics(CollectorRegistry(), version="t"), reader=gw.reader
        )
        stop = asyncio.Event()
        task = asyncio.create_task(router.run(stop))
        try:
            for name, user in (("A", A), ("B", B)):
                body = {"name": name, "roles": ["IS", "GS"]}
                status, _ = await gw.call("operator", "PUT", f"/v1/users/{user}", body)
                assert status == 200
                _, doc = await gw.call("operator", "POST", f"/v1/users/{user}/tokens")
                gw.tokens[name] = doc["token"]
            yield gw
        finally:
            stop.set()
            await task


def held_entry(quarantine: QuarantineService, request_id: str) -> QuarantineEntry:
    """The quarantine book's entry for `request_id` (the test fails when there is none)."""
    entry = quarantine.book.get(request_id)
    assert entry is not None, f"{request_id} is not in the quarantine book"
    return entry


def disable_supply(counter: int, user: str = A) -> bytes:
    """A 7.2 Disable Supply Service Request of `user` to its own device number `counter`."""
    return orjson.dumps(
        {
            "request_id": f"{user}:00-DB-00-00-00-00-00-{counter:02X}:{counter}",
            "user_role": "IS",
            "srv": "7.2",
            "command_variant": 4,
            "body": {},
        }
    )


async def quarantine_all(
    gw: ApiClient, settings: Settings, kafka: KafkaSettings, user: str, counters: range
) -> list[str]:
    """Send one 7.2 per counter for `user`, with an ADT of 0 on 7.2 so each is quarantined;
    wait until the quarantine service holds them; return their request ids in order."""
    values = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 0}]}
    assert (await gw.call("operator", "PUT", f"/v1/adt/users/{user}", values))[0] == 200
    result = await send_requests(
        [disable_supply(n, user) for n in counters],
        settings=kafka,
        topics=settings.topics,
        timeout_s=20,
        out=None,
    )
    assert {a["response_code"] for a in result.answers} == {"Q1"}
    ids = [orjson.loads(disable_supply(n, user))["request_id"] for n in counters]

    def held() -> bool:
        return all(gw.admin.quarantine.book.get(i) is not None for i in ids)

    await wait_until_async(held, timeout_s=20, what=f"quarantine service to hold {ids}")
    return ids
