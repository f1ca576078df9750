"""Helpers for integration tests: read a topic back, run a router in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from tests.conftest import USER_A, USER_B
from workers.config.settings import Settings
from workers.router.service import RouterService, build_router
from workers.runtime.metrics import CommonMetrics

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.test_utils import TestClient

    from workers.admin.service import AdminService

T = TypeVar("T")


def start_worker_process(
    bootstrap: str,
    settings: Settings,
    log: Path,
    *,
    worker: str = "router",
    http_port: int = 0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real `dccgate worker WORKER` process on the test's topics, with client settings
    tuned for tests (quick joins and fetches); its output is appended to `log`."""
    full_env = {
        **os.environ,
        "DCCGATE_BOOTSTRAP": bootstrap,
        "DCCGATE_TOPIC_PREFIX": settings.topic_prefix,
        "DCCGATE_PARTITIONS": str(settings.partitions),
        "DCCGATE_HTTP_PORT": str(http_port),
        "DCCGATE_SESSION_TIMEOUT_MS": "1000",
        "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
        "DCCGATE_FETCH_MAX_WAIT_MS": "20",
        **(env or {}),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", worker],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def read_topic(
    kafka: KafkaSettings, topic: str, *, expect: int, timeout_s: float = 30.0
) -> list[Any]:
    """Every record of `topic` from the start, waiting until at least `expect` arrived
    (and a short quiet period after, to catch extras such as duplicates)."""
    # No consumer group: a group member dropped under load (the tests' 1 s session) would
    # be handed the partitions again from the start, and count every record twice.
    consumer = AIOKafkaConsumer(topic, group_id=None, **kafka.consumer_kwargs())
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = sum(len(v) for v in batch.values())
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expect:
                if got == 0:
                    if quiet_until is None:
                        quiet_until = time.monotonic() + 0.5
                    elif time.monotonic() > quiet_until:
                        break
                else:
                    quiet_until = None
        return records
    finally:
        await consumer.stop()


ALL_ROLES = ("IS", "ES", "GS", "ED", "GT", "RSA", "OU")
TEST_USERS: dict[str, tuple[str, ...]] = {USER_A: ALL_ROLES, USER_B: ALL_ROLES}
"""The Users the suite's requests come from, registered in every role unless a test says
otherwise (the router decides only for registered Users, in their roles)."""


async def register_users(
    settings: Settings, kafka: KafkaSettings, users: Mapping[str, Sequence[str]]
) -> None:
    """Register `users` (User ID -> roles) on dcc.control through the admin API, as an
    operator would, for routers that follow the configuration (worker processes)."""
    async with admin_api(settings, kafka, "register-users-operator-token-0123456789") as api:
        for user_id, roles in users.items():
            body = {"name": f"User {user_id[-5:]}", "roles": list(roles)}
            status, answer = await api.call("operator", "PUT", f"/v1/users/{user_id}", body)
            assert status == 200, answer


@contextlib.asynccontextmanager
async def running_router(
    settings: Settings,
    kafka: KafkaSettings,
    *,
    users: Mapping[str, Sequence[str]] | None = TEST_USERS,
) -> AsyncIterator[tuple[RouterService, CollectorRegistry]]:
    """A router service running in this event loop until the block ends, deciding for
    `users` (User ID -> roles; None: any User in any role)."""
    registry = CollectorRegistry()
    router = build_router(settings, kafka, CommonMetrics(registry, version="test"))
    assert router.validator is not None
    router.validator.set_users(users)
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    try:
        yield router, registry
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _describe(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    step_s: float = 0.05,
) -> T:
    """Poll `check` until it returns something truthy and return it; fail the test with
    `what` after `timeout_s` (a deadline so a hung service fails instead of stalling CI,
    not a speed assertion). OSError from `check` (a server not listening yet) counts as
    not yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{_describe(what)} (waited {timeout_s:g} s)")
        time.sleep(step_s)


async def wait_until_async(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    step_s: float = 0.05,
) -> T:
    """`wait_until` for async tests: sleeps without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{_describe(what)} (waited {timeout_s:g} s)")
        await asyncio.sleep(step_s)


async def await_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    step_s: float = 0.5,
) -> None:
    """`wait_until_async` for a check that must itself await (a broker query): a deadline
    so a stuck cluster fails the test instead of stalling CI, not a speed assertion."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{_describe(what)} (waited {timeout_s:g} s)")
        await asyncio.sleep(step_s)


def health(port: int) -> tuple[int, dict[str, Any]]:
    """GET /healthz on 127.0.0.1:port: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_healthy(
    port: int,
    proc: subprocess.Popen[bytes],
    log: Path,
    *,
    ready: Callable[[dict[str, Any]], bool] = lambda doc: doc["status"] == "ok",
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Wait until the process `proc` serving HTTP on `port` is healthy (and `ready`);
    fail with its log if it exits or does not get there in `timeout_s`."""

    def check() -> dict[str, Any] | None:
        assert proc.poll() is None, log.read_text()
        status, doc = health(port)
        return doc if status == 200 and ready(doc) else None

    return wait_until(check, timeout_s=timeout_s, what=lambda: f"not healthy:\n{log.read_text()}")


class ApiClient:
    """The admin API as named principals call it: `tokens[who]` (None: no token)."""

    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        admin: AdminService,
        operator_token: str,
    ) -> None:
        self.client = client
        self.admin = admin
        self.reader = admin.reader
        self.tokens: dict[str, str | None] = {"operator": operator_token, "none": None}

    async def call(
        self, who: str, method: str, path: str, body: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        """One request as `who`: (status, decoded JSON answer)."""
        headers = dict(kw.pop("headers", {}))
        token = self.tokens[who]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, (bytes, str)) or body is None else msgspec.json.encode(body)
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=headers) as resp:
            return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def admin_api(
    settings: Settings,
    kafka: KafkaSettings,
    operator_token: str,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[ApiClient]:
    """A control reader, the admin service and its API in this event loop (its metrics on
    `registry`, its time from `clock`)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from workers.admin.service import AdminService
    from workers.config.reader import ControlReader

    settings = msgspec.structs.replace(settings, admin_token=operator_token)
    reader = ControlReader(kafka, settings.topics.control)
    await reader.start()
    await reader.wait_caught_up()
    admin = AdminService(settings, kafka, reader, registry=registry, clock=clock)
    await admin.start()
    app = web.Application()
    admin.api.install(app)
    try:
        async with TestClient(TestServer(app)) as client:
            yield ApiClient(client, admin, operator_token)
    finally:
        await admin.stop()
        await reader.stop()
