"""Responses pushed to Users (`dccgate worker deliver`) against the session's broker, with
local receivers (aiohttp on 127.0.0.1) that fail (500s, time-outs, connection refused) and
recover.

What must hold: every answer arrives, in order per User; a repeat only where a retry was
unavoidable, always with the ResponseID it had; a restart of the deliverer loses nothing;
an answer that stays undeliverable past DCCGATE_DELIVER_DEADLINE_S is a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from broker.producer import BatchProducer
from broker.schemas import UserResponse
from broker.settings import KafkaSettings
from tests.integration.helpers import admin_api, read_topic, running_router, wait_until_async
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.deliver.service import DeliverService, build_deliver
from workers.duis.response_xml import DUIS_NS
from workers.runtime.metrics import CommonMetrics

pytestmark = pytest.mark.usefixtures("topics_ready")

USER_A = "90-B3-D5-1F-30-01-00-00"
USER_B = "90-B3-D5-1F-30-02-00-00"
USER_C = "90-B3-D5-1F-30-03-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
_HEADER = f"{{{DUIS_NS}}}Header/{{{DUIS_NS}}}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Receiver:
    """One User's endpoint: `behave(n)` decides the answer to the n-th POST (1-based):
    an HTTP status, or a float to stall that many seconds before answering 200."""

    behave: Callable[[int], int | float] = lambda _n: 200
    posts: list[str] = field(default_factory=list)
    """ResponseID of every POST received, in arrival order."""
    accepted: list[str] = field(default_factory=list)
    """ResponseID of every POST answered 2xx (a stalled one counts: it was processed)."""
    documents: list[bytes] = field(default_factory=list)
    """The body of every POST."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.documents.append(body)
        assert request.content_type == "application/xml"
        root = ET.fromstring(body)
        response_id = root.findtext(_HEADER + "ResponseID") or ""
        self.posts.append(response_id)
        action = self.behave(len(self.posts))
        if isinstance(action, float):
            await asyncio.sleep(action)
            action = 200
        if 200 <= action < 300:
            self.accepted.append(response_id)
        return web.Response(status=action, text="ok")


@contextlib.asynccontextmanager
async def serving(receivers: dict[str, Receiver], port: int) -> AsyncIterator[None]:
    app = web.Application()
    for path, receiver in receivers.items():
        app.router.add_post(f"/{path}", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def answer(user: str, n: int, code: str = "I99") -> UserResponse:
    return UserResponse(
        request_id=f"{user}:{DEVICE}:{n}",
        user_id=user,
        response_code=code,
        outcome="accepted",
        reason=f"answer {n} <&> for {user}",
        at_ms=1_796_000_000_000 + n,
    )


def response_id(user: str, n: int, code: str = "I99") -> str:
    return f"{DEVICE}:{user}:{n}:{code}:{1_796_000_000_000 + n}"


async def produce(kafka: KafkaSettings, topic: str, answers: list[UserResponse]) -> None:
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        out = producer.batch()
        for a in answers:
            out.add(topic, a.user_id.encode(), msgspec.json.encode(a))
        await producer.send(out)


def quick(settings: Settings, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "deliver_timeout_ms": 300,
        "deliver_backoff_initial_ms": 20,
        "deliver_backoff_max_ms": 200,
        "deliver_deadline_s": 120,
    }
    values.update(overrides)
    return msgspec.structs.replace(settings, **values)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, kafka: KafkaSettings, urls: dict[str, str]
) -> AsyncIterator[tuple[DeliverService, CollectorRegistry]]:
    registry = CollectorRegistry()
    service = build_deliver(settings, kafka, CommonMetrics(registry, version="test"))
    service.processor.set_users(urls)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service, registry
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def assert_in_order_without_loss(received: list[str], expected: list[str]) -> None:
    """Every expected ResponseID arrived; the first arrivals are in the expected order;
    anything else is a repeat of one already received (same ResponseID)."""
    first_seen: list[str] = []
    for rid in received:
        if rid not in first_seen:
            first_seen.append(rid)
    assert first_seen == expected
    assert set(received) == set(expected)


async def test_failing_endpoints_recover_and_get_every_answer_in_order(
    settings: Settings, kafka: KafkaSettings
) -> None:
    settings = quick(settings, deliver_timeout_ms=1000)
    n = 25
    # A: three 500s, then two stalls past the 1 s time limit, then healthy.
    a = Receiver(lambda k: 500 if k <= 3 else (1.5 if k <= 5 else 200))
    c = Receiver()
    b = Receiver()
    port, b_port = _free_port(), _free_port()
    urls = {
        USER_A: f"http://127.0.0.1:{port}/a",
        USER_B: f"http://127.0.0.1:{b_port}/b",  # nobody listens yet: connection refused
        USER_C: f"http://127.0.0.1:{port}/c",
    }
    answers = [answer(u, i) for i in range(n) for u in (USER_A, USER_B, USER_C)]
    async with serving({"a": a, "c": c}, port):
        await produce(kafka, settings.topics.user_responses, answers)
        async with running(settings, kafka, urls) as (service, registry):
            # C is not held up by A's failures nor B's dead endpoint.
            await wait_until_async(
                lambda: len(c.accepted) >= n, timeout_s=30, what="C's answers delivered"
            )
            assert len(b.posts) == 0
            await wait_until_async(
                lambda: (
                    (
                        registry.get_sample_value(
                            "dccgate_delivery_failures_total",
                            {"user": USER_B, "reason": "connection"},
                        )
                        or 0
                    )
                    > 0
                ),
                timeout_s=10,
                what="B's connection refused counted",
            )
            async with serving({"b": b}, b_port):  # B's endpoint comes up
                await wait_until_async(
                    lambda: len(a.accepted) >= n and len(b.accepted) >= n,
                    timeout_s=60,
                    what=lambda: f"A {len(a.accepted)}, B {len(b.accepted)} of {n} delivered",
                )
                await wait_until_async(
                    lambda: service.processor.held_floor() == {},
                    timeout_s=10,
                    what="every offset released",
                )
            sample = registry.get_sample_value
            assert (
                sample("dccgate_delivery_failures_total", {"user": USER_A, "reason": "http_status"})
                == 3
            )
            assert (
                sample("dccgate_delivery_failures_total", {"user": USER_A, "reason": "timeout"})
                or 0
            ) >= 2
            delivered = {"user": USER_C, "outcome": "delivered"}
            assert sample("dccgate_delivery_responses_total", delivered) == n
            assert sample("dccgate_delivery_queue_records", {"user": USER_A}) == 0
            assert sample("dccgate_delivery_lag_seconds", {"user": USER_B}) == 0
            timeouts = {
                u: sample("dccgate_delivery_failures_total", {"user": u, "reason": "timeout"}) or 0
                for u in (USER_A, USER_C)
            }
    for user, receiver in ((USER_A, a), (USER_B, b), (USER_C, c)):
        expected = [response_id(user, i) for i in range(n)]
        assert_in_order_without_loss(receiver.posts, expected)
        assert_in_order_without_loss(receiver.accepted, expected)
    # Repeats only where unavoidable: a POST the receiver processed after the deliverer had
    # given up waiting (A's two stalls; for C, whose endpoint never failed, none unless the
    # machine was so loaded that an answer took over a second).
    assert len(c.posts) - n == timeouts[USER_C]
    assert len(a.accepted) - n <= timeouts[USER_A]
    # Everything was committed: a new deliverer of the same group finds nothing to send.
    again = Receiver()
    async with serving({"a": again, "b": again, "c": again}, port):
        urls_again = {
            u: f"http://127.0.0.1:{port}/{p}"
            for u, p in ((USER_A, "a"), (USER_B, "b"), (USER_C, "c"))
        }
        async with running(settings, kafka, urls_again) as (service, _):
            await wait_until_async(
                lambda: service.status.assigned, timeout_s=20, what="the group rejoined"
            )
            await asyncio.sleep(1.0)
    assert again.posts == []


async def test_a_restart_mid_stream_loses_nothing(settings: Settings, kafka: KafkaSettings) -> None:
    settings = quick(settings)
    n = 40
    a = Receiver(lambda _k: 0.02)  # a slow endpoint: the stream is still flowing at the stop
    port = _free_port()
    urls = {USER_A: f"http://127.0.0.1:{port}/a"}
    async with serving({"a": a}, port):
        await produce(kafka, settings.topics.user_responses, [answer(USER_A, i) for i in range(n)])
        async with running(settings, kafka, urls):
            await wait_until_async(lambda: len(a.accepted) >= 10, timeout_s=30, what="10 delivered")
        stopped_at = len(a.accepted)
        assert stopped_at < n
        async with running(settings, kafka, urls):
            await wait_until_async(
                lambda: set(a.accepted) >= {response_id(USER_A, i) for i in range(n)},
                timeout_s=60,
                what=lambda: f"{len(set(a.accepted))} of {n} delivered after the restart",
            )
    assert_in_order_without_loss(a.accepted, [response_id(USER_A, i) for i in range(n)])


async def test_an_undeliverable_answer_is_dead_lettered_after_the_deadline(
    settings: Settings, kafka: KafkaSettings
) -> None:
    settings = quick(settings, deliver_deadline_s=1)
    a = Receiver(lambda _k: 503)
    port = _free_port()
    answers = [answer(USER_A, i, code) for i, code in enumerate(["Q1", "Q4", "Q5"])]
    async with serving({"a": a}, port):
        await produce(kafka, settings.topics.user_responses, answers)
        async with running(settings, kafka, {USER_A: f"http://127.0.0.1:{port}/a"}) as (
            service,
            registry,
        ):
            letters = await read_topic(kafka, settings.topics.deadletter, expect=3, timeout_s=30)
            await wait_until_async(
                lambda: service.processor.held_floor() == {}, timeout_s=10, what="released"
            )
            dead = {"user": USER_A, "outcome": "deadlettered"}
            assert registry.get_sample_value("dccgate_delivery_responses_total", dead) == 3
    assert len(letters) == 3
    assert [msgspec.json.decode(r.value, type=UserResponse) for r in letters] == answers
    for rec in letters:
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers["dccgate-dlq-kind"] == "undeliverable"
        assert headers["dccgate-dlq-service"] == "deliver"
        assert headers["dccgate-dlq-topic"] == settings.topics.user_responses
        assert "DCCGATE_DELIVER_DEADLINE_S=1" in headers["dccgate-dlq-reason"]
    assert a.posts
    assert set(a.posts) <= {response_id(USER_A, i, c) for i, c in enumerate(["Q1", "Q4", "Q5"])}
    assert a.accepted == []


async def test_a_response_url_registered_through_the_admin_api_gets_the_routers_answers(
    settings: Settings, kafka: KafkaSettings
) -> None:
    """The whole path: PUT /v1/users/{id} with a response_url, the router's answers on
    dcc.user.responses, the deliverer following dcc.control, the User's endpoint."""
    settings = quick(settings)
    a = Receiver()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/a"
    async with admin_api(settings, kafka, "deliver-e2e-operator-token-0123456789abcdef") as api:
        body = {"name": "Supplier A", "roles": ["IS"], "response_url": url}
        status, saved = await api.call("operator", "PUT", f"/v1/users/{USER_A}", body)
        assert status == 200, saved
        assert saved["response_url"] == url
        bad = {**body, "response_url": "https://user:pw@evil.example/"}
        status, refused = await api.call("operator", "PUT", f"/v1/users/{USER_A}", bad)
        assert status == 422
        assert "credentials" in str(refused)
    reader = ControlReader(kafka, settings.topics.control)
    await reader.start()
    try:
        await reader.wait_caught_up()
        registry = CollectorRegistry()
        service = build_deliver(
            settings, kafka, CommonMetrics(registry, version="test"), reader=reader
        )
        assert service.processor.url_for(USER_A) == url
        requests = [
            {"request_id": f"{USER_A}:{DEVICE}:1", "user_role": "IS", "srv": "4.1.1",
             "command_variant": 1, "body": {}},
            {"request_id": f"{USER_A}:{DEVICE}:2", "user_role": "IS", "srv": "7.2",
             "command_variant": 8, "body": {}},
        ]  # fmt: skip
        stop = asyncio.Event()
        async with serving({"a": a}, port), running_router(settings, kafka, users={USER_A: ["IS"]}):
            task = asyncio.create_task(service.run(stop))
            try:
                async with BatchProducer(kafka) as producer:
                    await producer.prepare([settings.topics.sr_inbound])
                    out = producer.batch()
                    for r in requests:
                        out.add(settings.topics.sr_inbound, USER_A.encode(), msgspec.json.encode(r))
                    await producer.send(out)
                await wait_until_async(
                    lambda: len(a.documents) >= 2, timeout_s=30, what="both answers pushed"
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        await reader.stop()
    first, second = (ET.fromstring(d) for d in a.documents)
    assert first.findtext(_HEADER + "RequestID") == f"{USER_A}:{DEVICE}:1"
    assert first.findtext(_HEADER + "ResponseCode") == "I99"
    assert second.findtext(_HEADER + "RequestID") == f"{USER_A}:{DEVICE}:2"
    assert second.findtext(_HEADER + "ResponseCode") == "E12"  # 7.2 is critical: CV 4 first
