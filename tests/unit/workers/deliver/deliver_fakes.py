"""Fakes for the deliverer's unit tests: a scripted endpoint and a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from prometheus_client import CollectorRegistry

from broker.schemas import UserResponse
from tests.unit.records import FakeRecord
from workers.deliver.dispatcher import Dispatcher
from workers.deliver.metrics import DeliverMetrics
from workers.deliver.policy import RetryPolicy
from workers.deliver.sender import Failure
from workers.runtime.metrics import CommonMetrics

__all__ = ["USER_A", "USER_B", "Clock", "ScriptedEndpoint", "answer_record", "dispatcher_for"]

USER_A = "90-B3-D5-1F-30-01-00-00"
USER_B = "90-B3-D5-1F-30-02-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
TOPIC = "dcc.user.responses"


def answer_record(user: str, counter: int, *, offset: int, partition: int = 0) -> FakeRecord:
    """An `accepted` answer record for `user`'s request number `counter`."""
    value = msgspec.json.encode(
        UserResponse(
            request_id=f"{user}:{DEVICE}:{counter}",
            user_id=user,
            response_code="I99",
            outcome="accepted",
            reason="forwarded",
            at_ms=1_796_000_000_000 + counter,
        )
    )
    return FakeRecord(
        topic=TOPIC, partition=partition, offset=offset, key=user.encode(), value=value
    )


class Clock:
    """Monotonic seconds moved by hand; `sleep` moves it and yields to the loop."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    async def sleep(self, delay_s: float) -> None:
        self.slept.append(delay_s)
        self.now_s += delay_s
        await asyncio.sleep(0)


class ScriptedEndpoint:
    """A poster whose answer per URL is decided by `script(url, attempt_number)`; records
    every document it was given, and may be paused per URL."""

    def __init__(self, script: Callable[[str, int], Failure | None] | None = None) -> None:
        self.script = script or (lambda _url, _n: None)
        self.posts: list[tuple[str, bytes]] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def post(self, url: str, document: bytes) -> Failure | None:
        gate = self.gates.get(url)
        if gate is not None:
            await gate.wait()
        self.posts.append((url, document))
        n = sum(1 for u, _ in self.posts if u == url)
        return self.script(url, n)

    def documents(self, url: str) -> list[bytes]:
        return [d for u, d in self.posts if u == url]


def dispatcher_for(
    endpoint: ScriptedEndpoint,
    clock: Clock,
    urls: dict[str, str],
    *,
    deadline_s: float = 60,
    max_per_user: int = 100,
) -> tuple[Dispatcher, DeliverMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = DeliverMetrics(CommonMetrics(registry, version="test"))
    dispatcher = Dispatcher(
        poster=endpoint,
        policy=RetryPolicy(deadline_s=deadline_s, backoff_initial_s=0.2, backoff_max_s=5),
        url_for=urls.get,
        metrics=metrics,
        max_per_user=max_per_user,
        rand=lambda: 0.5,
        clock_s=clock,
        sleep=clock.sleep,
    )
    return dispatcher, metrics, registry
