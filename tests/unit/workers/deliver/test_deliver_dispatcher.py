"""workers.deliver.dispatcher: per-User order, isolation between Users, retries, the
dead-letter deadline."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from broker.consumer import TopicPartition
from tests.unit.workers.deliver.deliver_fakes import (
    USER_A,
    USER_B,
    Clock,
    ScriptedEndpoint,
    answer_record,
    dispatcher_for,
)
from workers.deliver.dispatcher import Dispatcher, Finished, Pending
from workers.deliver.sender import Failure

URL_A = "https://a.example/responses"
URL_B = "https://b.example/responses"
TP = TopicPartition("dcc.user.responses", 0)


def pending(user: str, counter: int, clock: Clock, offset: int | None = None) -> Pending:
    return Pending(
        record=answer_record(user, counter, offset=counter if offset is None else offset),
        tp=TP,
        user_id=user,
        response_id=f"R{user[-5:]}-{counter}",
        document=f"{user}:{counter}".encode(),
        at_ms=1_796_000_000_000,
        queued_s=clock(),
    )


async def settle(dispatcher: Dispatcher, rounds: int = 200) -> list[Finished]:
    done: list[Finished] = []
    for _ in range(rounds):
        await asyncio.sleep(0)
        done.extend(dispatcher.harvest())
        if dispatcher.queued == 0:
            break
    return done


def value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_answers_are_delivered_in_order_per_user_despite_failures() -> None:
    clock = Clock()
    # User A's endpoint fails its first three POSTs (500, timeout, refused), then recovers.
    failures = {
        1: Failure("http_status", "HTTP 500"),
        2: Failure("timeout", "no answer"),
        3: Failure("connection", "refused"),
    }
    endpoint = ScriptedEndpoint(lambda url, n: failures.get(n) if url == URL_A else None)
    dispatcher, _, registry = dispatcher_for(endpoint, clock, {USER_A: URL_A})
    for counter in range(5):
        dispatcher.submit(pending(USER_A, counter, clock))
    done = await settle(dispatcher)
    assert [f.outcome for f in done] == ["delivered"] * 5
    assert [f.pending.record.offset for f in done] == [0, 1, 2, 3, 4]
    # The first answer was sent four times (three failures), every later one once, in order.
    assert endpoint.documents(URL_A) == [f"{USER_A}:0".encode()] * 4 + [
        f"{USER_A}:{c}".encode() for c in range(1, 5)
    ]
    assert clock.slept == pytest.approx([0.15, 0.3, 0.6])  # 0.2 x 2**(n-1) x 0.75 (rand 0.5)
    assert value(registry, "dccgate_delivery_attempts_total", {"user": USER_A}) == 8
    for reason in ("http_status", "timeout", "connection"):
        labels = {"user": USER_A, "reason": reason}
        assert value(registry, "dccgate_delivery_failures_total", labels) == 1
    delivered = {"user": USER_A, "outcome": "delivered"}
    assert value(registry, "dccgate_delivery_responses_total", delivered) == 5


async def test_a_stuck_endpoint_does_not_block_another_user() -> None:
    clock = Clock()
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()  # A's endpoint never answers until opened
    dispatcher, _, registry = dispatcher_for(endpoint, clock, {USER_A: URL_A, USER_B: URL_B})
    for counter in range(3):
        dispatcher.submit(pending(USER_A, counter, clock))
        dispatcher.submit(pending(USER_B, counter, clock))
    for _ in range(50):
        await asyncio.sleep(0)
    done = dispatcher.harvest()
    assert [(f.pending.user_id, f.outcome) for f in done] == [(USER_B, "delivered")] * 3
    assert dispatcher.queued == 3
    assert value(registry, "dccgate_delivery_queue_records", {"user": USER_A}) == 3
    assert value(registry, "dccgate_delivery_queue_records", {"user": USER_B}) == 0
    assert value(registry, "dccgate_delivery_lag_seconds", {"user": USER_A}) > 0
    assert value(registry, "dccgate_delivery_lag_seconds", {"user": USER_B}) == 0
    endpoint.gates[URL_A].set()
    done = await settle(dispatcher)
    assert [f.pending.user_id for f in done] == [USER_A] * 3
    assert [d for d in endpoint.documents(URL_A)] == [f"{USER_A}:{c}".encode() for c in range(3)]


async def test_past_the_deadline_an_answer_is_dead_lettered_and_the_backlog_drains() -> None:
    clock = Clock()
    endpoint = ScriptedEndpoint(lambda _url, _n: Failure("http_status", "HTTP 503"))
    dispatcher, _, registry = dispatcher_for(endpoint, clock, {USER_A: URL_A}, deadline_s=10)
    for counter in range(4):
        dispatcher.submit(pending(USER_A, counter, clock))
    done = await settle(dispatcher, rounds=2000)
    assert [f.outcome for f in done] == ["deadlettered"] * 4
    assert [f.pending.record.offset for f in done] == [0, 1, 2, 3]
    first = done[0].reason
    assert first.startswith("undeliverable: ")
    assert "DCCGATE_DELIVER_DEADLINE_S=10" in first
    assert "last failure: http_status: HTTP 503" in first
    # Every later answer had waited as long: given up without an attempt of its own.
    assert "not attempted" in done[1].reason
    assert sum(clock.slept) <= 10 + 1e-9  # the last attempt is made at the deadline
    attempts = value(registry, "dccgate_delivery_attempts_total", {"user": USER_A})
    assert attempts == len(endpoint.posts) == done[0].pending.attempts
    dead = {"user": USER_A, "outcome": "deadlettered"}
    assert value(registry, "dccgate_delivery_responses_total", dead) == 4


async def test_a_recovered_endpoint_gets_the_answers_that_are_not_yet_due() -> None:
    clock = Clock()
    state = {"down": True}
    endpoint = ScriptedEndpoint(
        lambda _url, _n: Failure("connection", "refused") if state["down"] else None
    )
    dispatcher, _, _ = dispatcher_for(endpoint, clock, {USER_A: URL_A}, deadline_s=10)
    dispatcher.submit(pending(USER_A, 0, clock))
    for _ in range(20):
        await asyncio.sleep(0)
    state["down"] = False
    clock.now_s += 1  # a later answer, queued later: within its own deadline
    dispatcher.submit(pending(USER_A, 1, clock))
    done = await settle(dispatcher, rounds=2000)
    assert [f.outcome for f in done][-1] == "delivered"
    assert [f.pending.record.offset for f in done] == [0, 1]


async def test_a_removed_response_url_finishes_the_answer_unpushed() -> None:
    clock = Clock()
    urls = {USER_A: URL_A}
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()
    dispatcher, _, _ = dispatcher_for(endpoint, clock, urls)
    dispatcher.submit(pending(USER_A, 0, clock))
    dispatcher.submit(pending(USER_A, 1, clock))
    await asyncio.sleep(0)
    del urls[USER_A]
    endpoint.gates[URL_A].set()
    done = await settle(dispatcher)
    assert [f.outcome for f in done] == ["delivered", "unpushable"]


async def test_full_queues_and_dropped_partitions() -> None:
    clock = Clock()
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()
    dispatcher, _, _ = dispatcher_for(
        endpoint, clock, {USER_A: URL_A, USER_B: URL_B}, max_per_user=2
    )
    other = TopicPartition("dcc.user.responses", 1)
    dispatcher.submit(pending(USER_A, 0, clock))
    assert not dispatcher.any_full()
    dispatcher.submit(pending(USER_A, 1, clock))
    assert dispatcher.any_full()
    b = pending(USER_B, 0, clock)
    b.tp = other
    endpoint.gates[URL_B] = asyncio.Event()
    dispatcher.submit(b)
    await asyncio.sleep(0)
    assert dispatcher.drop([TP]) == 2
    assert not dispatcher.any_full()
    assert dispatcher.queued == 1
    endpoint.gates[URL_A].set()
    endpoint.gates[URL_B].set()
    done = await settle(dispatcher)
    assert [(f.pending.user_id, f.outcome) for f in done] == [(USER_B, "delivered")]
    assert endpoint.documents(URL_A) == []
    await dispatcher.close()


async def test_close_stops_every_task() -> None:
    clock = Clock()
    endpoint = ScriptedEndpoint()
    endpoint.gates[URL_A] = asyncio.Event()
    dispatcher, _, _ = dispatcher_for(endpoint, clock, {USER_A: URL_A})
    dispatcher.submit(pending(USER_A, 0, clock))
    await asyncio.sleep(0)
    await dispatcher.close()
    assert dispatcher.harvest() == []
    assert dispatcher.queued == 1  # not finished: its offset stays uncommitted
