"""ADT counters survive the router (SEC G6; workers/router/adt_state.py): a User cannot slip past a
threshold by the router being killed mid-window, and released requests count.

Real `dccgate worker router` processes against the session's broker; the configuration is
put through the admin API running in the test.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import orjson
import pytest
from prometheus_client import CollectorRegistry

from broker.embedded import free_port
from broker.producer import partition_for_key
from broker.settings import KafkaSettings
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import (
    ApiClient,
    admin_api,
    health,
    read_topic,
    start_worker_process,
    wait_healthy,
    wait_until_async,
)
from workers.config.settings import Settings
from workers.router.service import build_router
from workers.runtime.metrics import CommonMetrics
from workers.tools.send import send_requests

pytestmark = [pytest.mark.usefixtures("topics_ready"), pytest.mark.slow]

A = "90-B3-D5-1F-30-01-00-00"
OPERATOR = "adt-state-test-operator-token-32-characters"
MAX = 40


def _request(user: str, counter: int) -> bytes:
    target = f"00-DB-00-00-00-00-{counter // 256:02X}-{counter % 256:02X}"
    return orjson.dumps(
        {
            "request_id": f"{user}:{target}:{counter}",
            "user_role": "IS",
            "srv": "7.2",
            "command_variant": 4,
            "body": {},
        }
    )


def _start_router(
    broker: SessionBroker, settings: Settings, port: int, log: Path
) -> subprocess.Popen[bytes]:
    return start_worker_process(broker.bootstrap, settings, log, http_port=port)


def _committed(port: int) -> int:
    status, doc = health(port)
    return int(doc["services"]["router"]["records"]) if status == 200 else -1


@pytest.fixture
async def api(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[ApiClient]:
    async with admin_api(settings, kafka, OPERATOR) as gw:
        user = {"name": "A", "roles": ["IS", "GS"]}
        assert (await gw.call("operator", "PUT", f"/v1/users/{A}", user))[0] == 200
        values = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": MAX}]}
        assert (await gw.call("operator", "PUT", f"/v1/adt/users/{A}", values))[0] == 200
        yield gw


async def _send(
    settings: Settings, kafka: KafkaSettings, counters: range
) -> collections.Counter[str]:
    result = await send_requests(
        [_request(A, n) for n in counters],
        settings=kafka,
        topics=settings.topics,
        timeout_s=30,
        out=None,
    )
    assert len(result.answers) == len(counters)
    return collections.Counter(a["outcome"] for a in result.answers)


async def test_a_killed_router_does_not_reset_the_users_window(
    api: ApiClient,
    kafka_broker: SessionBroker,
    settings: Settings,
    kafka: KafkaSettings,
    tmp_path: Path,
) -> None:
    port = free_port()
    first = _start_router(kafka_broker, settings, port, tmp_path / "router-1.log")
    second = None
    try:
        wait_healthy(port, first, tmp_path / "router-1.log")
        assert await _send(settings, kafka, range(1, 31)) == {"accepted": 30}
        # Killed once the batches are committed: the requests are not redone, so the test
        # sees the restored counts alone (a redo could only count more, never fewer).
        await wait_until_async(
            lambda: _committed(port) >= 30, timeout_s=20, what="router 1 to commit 30 requests"
        )
        first.send_signal(signal.SIGKILL)
        first.wait()

        second = _start_router(kafka_broker, settings, port, tmp_path / "router-2.log")
        wait_healthy(port, second, tmp_path / "router-2.log")
        # Without the snapshots the second router would start at zero and accept all 30.
        assert await _send(settings, kafka, range(31, 61)) == {
            "accepted": MAX - 30,
            "quarantined": 30 - (MAX - 30),
        }
        log = (tmp_path / "router-2.log").read_text()
        assert "restored the ADT counters of 1 Users" in log, log
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


async def test_released_requests_count_in_the_owners_window(
    api: ApiClient, settings: Settings, kafka: KafkaSettings
) -> None:
    router = build_router(
        settings, kafka, CommonMetrics(CollectorRegistry(), version="t"), reader=api.reader
    )
    assert router.adt is not None
    assert router.adt_state is not None
    store, engine = router.adt_state, router.adt.engine
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    try:
        assert await _send(settings, kafka, range(1, MAX + 3)) == {
            "accepted": MAX,
            "quarantined": 2,
        }
        items = await wait_until_async(
            lambda: api.admin.quarantine.list(None) or None,
            timeout_s=10,
            what="the quarantine service to see the held requests",
        )
        held = items[0]["id"]
        assert (await api.call("operator", "POST", f"/v1/quarantine/{held}/release"))[0] == 200
        await wait_until_async(
            lambda: store.releases_counted == 1 or None,
            timeout_s=10,
            what="the router to count the release",
        )
        assert [u.count for u in engine.usage(A, time.time())] == [MAX + 1]
        # The next batch writes the User's snapshot with the release in it.
        assert await _send(settings, kafka, range(MAX + 3, MAX + 4)) == {"quarantined": 1}
    finally:
        stop.set()
        await task
    snapshots = await read_topic(kafka, settings.topics.state_router, expect=2)
    newest = msgspec.json.decode(snapshots[-1].value)
    assert newest["user_id"] == A
    assert sum(n for w in newest["windows"] for _, n in w["buckets"]) == MAX + 1


def _user_on(partitions: frozenset[int], n_partitions: int, avoid: str = "") -> str:
    """A User ID whose requests land on one of `partitions` of dcc.sr.inbound."""
    for i in range(1, 256):
        user = f"90-B3-D5-1F-30-{i:02X}-00-00"
        if user != avoid and partition_for_key(user.encode(), n_partitions) in partitions:
            return user
    raise AssertionError(f"no User ID maps to partitions {sorted(partitions)}")


async def test_dcc_wide_counts_are_summed_across_routers(
    api: ApiClient, settings: Settings, kafka: KafkaSettings
) -> None:
    values = {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": MAX}]}
    assert (await api.call("operator", "PUT", "/v1/adt/dcc", values))[0] == 200
    routers = [
        build_router(
            settings, kafka, CommonMetrics(CollectorRegistry(), version="t"), reader=api.reader
        )
        for _ in range(2)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in routers]
    try:
        owned = await wait_until_async(
            lambda: (
                [frozenset(tp.partition for tp in r.status.assigned) for r in routers]
                if all(r.status.assigned for r in routers)
                and sum(len(r.status.assigned) for r in routers) == settings.partitions
                else None
            ),
            timeout_s=20,
            what="both routers to own partitions",
        )
        users = [_user_on(owned[0], settings.partitions)]
        users.append(_user_on(owned[1], settings.partitions, avoid=users[0]))
        for name, user in zip("XY", users, strict=True):
            body = {"name": name, "roles": ["IS"]}
            assert (await api.call("operator", "PUT", f"/v1/users/{user}", body))[0] == 200
        first = await send_requests(
            [_request(users[0], n) for n in range(1, 31)],
            settings=kafka,
            topics=settings.topics,
            timeout_s=30,
            out=None,
        )
        assert collections.Counter(a["outcome"] for a in first.answers) == {"accepted": 30}
        # The second router learns the first's count from dcc.load (a report every 0.25 s).
        engine = routers[1].adt.engine if routers[1].adt else None
        assert engine is not None
        await wait_until_async(
            lambda: [u.count for u in engine.dcc_usage(time.time())] == [30] or None,
            timeout_s=10,
            what="router 2 to sum router 1's DCC-wide count",
        )
        second = await send_requests(
            [_request(users[1], n) for n in range(1, 31)],
            settings=kafka,
            topics=settings.topics,
            timeout_s=30,
            out=None,
        )
        outcomes = collections.Counter((a["outcome"], a["response_code"]) for a in second.answers)
        # Without the exchange router 2 would count from zero and accept all 30.
        assert outcomes == {("accepted", "I99"): MAX - 30, ("quarantined", "Q2"): 30 - (MAX - 30)}
    finally:
        stop.set()
        await asyncio.gather(*tasks)
