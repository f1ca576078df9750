"""Identity on the data path (issue 14), on the embedded broker: only registered Users, only
in the roles they hold, under their own key; and a captured request is refused again after a
SIGKILL, after a rebalance and after its pair was evicted from the replay memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from prometheus_client import CollectorRegistry

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import (
    admin_api,
    read_topic,
    register_users,
    running_router,
    start_worker_process,
    wait_until_async,
)
from workers.config.settings import Settings
from workers.router.service import build_router
from workers.runtime.metrics import CommonMetrics
from workers.tools.send import send_requests

pytestmark = pytest.mark.usefixtures("topics_ready")

A = "90-B3-D5-1F-30-0A-00-00"  # registered as a Distribution Network Operator (ED) only
B = "90-B3-D5-1F-30-0B-00-00"  # never registered
S = "90-B3-D5-1F-30-0C-00-00"  # an Import Supplier, for the replay cases
DEVICE = "00-DB-12-34-56-78-90-A0"
OPERATOR = "identity-test-operator-token-0123456789"


def _request(
    user: str, counter: int, *, role: str, srv: str, cv: int, device: str = DEVICE
) -> bytes:
    return orjson.dumps(
        {
            "request_id": f"{user}:{device}:{counter}",
            "user_role": role,
            "srv": srv,
            "command_variant": cv,
            "body": {},
        }
    )


def _device(n: int) -> str:
    return f"00-DB-00-00-00-01-{n >> 8:02X}-{n & 255:02X}"


async def _send(settings: Settings, kafka: KafkaSettings, lines: list[bytes]) -> list[Any]:
    result = await send_requests(
        lines, settings=kafka, topics=settings.topics, timeout_s=20, out=None
    )
    assert len(result.answers) == len(lines), result
    by_id = {a["request_id"]: a for a in result.answers}
    return [by_id[orjson.loads(line)["request_id"]] for line in lines]


async def _send_keyed(kafka: KafkaSettings, topic: str, key: bytes | None, value: bytes) -> None:
    producer = BatchProducer(kafka)
    await producer.start()
    try:
        await producer.send_one(topic, key, value)
    finally:
        await producer.stop()


async def test_only_registered_users_in_the_roles_they_hold(
    settings: Settings, kafka: KafkaSettings
) -> None:
    async with admin_api(settings, kafka, OPERATOR) as api:
        status, _ = await api.call(
            "operator", "PUT", f"/v1/users/{A}", {"name": "DNO", "roles": ["ED"]}
        )
        assert status == 200
        router = build_router(
            settings, kafka, CommonMetrics(CollectorRegistry(), version="t"), reader=api.reader
        )
        stop = asyncio.Event()
        task = asyncio.create_task(router.run(stop))
        try:
            answers = await _send(
                settings,
                kafka,
                [
                    _request(A, 1, role="IS", srv="7.2", cv=4),  # 7.2 Disable Supply as a Supplier
                    _request(A, 2, role="GS", srv="4.1.1", cv=1),
                    _request(B, 3, role="IS", srv="4.1.1", cv=1),
                    _request(A, 4, role="ED", srv="6.2.1", cv=1),  # what A may do
                ],
            )
            codes = [(a["outcome"], a["response_code"]) for a in answers]
            assert codes == [("rejected", "E1")] * 3 + [("accepted", "I99")]
            assert answers[0]["reason"] == (
                f"User {A} is not registered in User Role IS; its registered roles: ED"
            )
            assert "not a registered DCC User" in answers[2]["reason"]

            # The key must be the request's User: B's key on A's request is refused.
            await _send_keyed(
                kafka,
                settings.topics.sr_inbound,
                B.encode(),
                _request(A, 5, role="ED", srv="6.2.1", cv=1),
            )
            # A deleted User is refused like one never registered.
            status, _ = await api.call("operator", "DELETE", f"/v1/users/{A}")
            assert status == 200
            [deleted] = await _send(settings, kafka, [_request(A, 6, role="ED", srv="6.2.1", cv=1)])
            assert (deleted["response_code"], deleted["outcome"]) == ("E1", "rejected")
            answers_topic = await read_topic(kafka, settings.topics.user_responses, expect=6)
            mismatch = [
                orjson.loads(r.value or b"")
                for r in answers_topic
                if orjson.loads(r.value or b"")["request_id"].endswith(":5")
            ]
            assert [m["response_code"] for m in mismatch] == ["E1"]
            assert "does not match the record key" in mismatch[0]["reason"]
            forwarded = await read_topic(kafka, settings.topics.sr_outbound, expect=1)
            assert len(forwarded) == 1  # only A's ED request went to the device
        finally:
            stop.set()
            await task


async def test_a_replay_is_refused_after_the_router_is_killed(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    await register_users(settings, kafka, {S: ["IS"]})
    log = tmp_path / "router.log"
    first = start_worker_process(kafka_broker.bootstrap, settings, log)
    try:
        [ok] = await _send(settings, kafka, [_request(S, 100, role="IS", srv="4.1.1", cv=1)])
        assert ok["outcome"] == "accepted", log.read_text()
        [again] = await _send(settings, kafka, [_request(S, 100, role="IS", srv="4.1.1", cv=1)])
        assert again["response_code"] == "E102"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    second = start_worker_process(kafka_broker.bootstrap, settings, log)
    try:
        lines = [
            _request(S, 100, role="IS", srv="4.1.1", cv=1),
            _request(S, 101, role="IS", srv="4.1.1", cv=1),
        ]
        replay, fresh = await _send(settings, kafka, lines)
        assert (replay["outcome"], replay["response_code"]) == ("rejected", "E102"), log.read_text()
        assert fresh["outcome"] == "accepted"
        forwarded = await read_topic(kafka, settings.topics.sr_outbound, expect=2)
        assert sorted(orjson.loads(r.value or b"")["request_id"][-3:] for r in forwarded) == [
            "100",
            "101",
        ]  # counter 100 went to the device once
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=40)


async def test_a_replay_is_refused_after_a_rebalance(
    settings: Settings, kafka: KafkaSettings
) -> None:
    users = {S: ["IS"]}
    async with contextlib.AsyncExitStack() as second_stack:
        async with running_router(settings, kafka, users=users):
            [ok] = await _send(settings, kafka, [_request(S, 7, role="IS", srv="4.1.1", cv=1)])
            assert ok["outcome"] == "accepted"
            second, _ = await second_stack.enter_async_context(
                running_router(settings, kafka, users=users)
            )
            for _ in range(400):  # until the second router has joined the group
                if second.status.assigned:
                    break
                await asyncio.sleep(0.05)
            assert second.status.assigned
        # The first router left: every partition, and S's replay memory, moved to the second,
        # which restored the pair from dcc.state.router.
        [replay] = await _send(settings, kafka, [_request(S, 7, role="IS", srv="4.1.1", cv=1)])
        assert (replay["outcome"], replay["response_code"]) == ("rejected", "E102")
        validator = second.validator
        assert validator is not None

        # A rebalance may still be settling (the first router's leave can trigger another
        # one): S's partition may be revoked and handed back, its memory dropped and
        # restored again. Once settled, the pair is there.
        def restored() -> bool:
            book = validator.books.get(S)
            return book is not None and book.last == {DEVICE: 7}

        await wait_until_async(restored, timeout_s=30, what="S's replay pair not restored")


async def test_eviction_never_reopens_a_counter_even_after_a_restart(
    settings: Settings, kafka: KafkaSettings
) -> None:
    small = msgspec.structs.replace(settings, replay_pairs_per_user=64)
    users = {S: ["IS"]}
    target = "00-DB-00-00-00-00-00-01"
    async with running_router(small, kafka, users=users) as (router, _):
        first = _request(S, 1_000, role="IS", srv="4.1.1", cv=1, device=target)
        # 200 other devices flush the first pair out of a 64-pair memory.
        others = [
            _request(S, 1_001 + n, role="IS", srv="4.1.1", cv=1, device=_device(n))
            for n in range(200)
        ]
        answers = await _send(small, kafka, [first, *others])
        assert {a["outcome"] for a in answers} == {"accepted"}
        assert router.validator is not None
        book = router.validator.books[S]
        assert target not in book.last
        assert book.floor >= 1_000
        [replay] = await _send(small, kafka, [first])
        assert replay["response_code"] == "E102"
        assert "forgotten" in replay["reason"]
    async with running_router(small, kafka, users=users):
        [replay] = await _send(small, kafka, [first])
        assert replay["response_code"] == "E102"
