"""workers.runtime.supervise: a failing side task is counted, shown and started again; a
watched task reports through its probe."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from workers.runtime.supervise import SideTasks


async def test_a_failing_task_is_retried_shown_and_then_well_again() -> None:
    registry = CollectorRegistry()
    side = SideTasks(registry)
    stop = asyncio.Event()
    runs = 0
    seen_unwell: list[dict[str, str]] = []

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ConnectionError("broker unreachable")
        seen_unwell.append(side.problems())
        await stop.wait()  # then it keeps running, well

    task = asyncio.create_task(
        side.supervise("exchange", flaky, stop, initial_backoff_s=0.01, max_backoff_s=0.02)
    )
    for _ in range(200):
        if runs >= 3 and not side.problems():
            break
        await asyncio.sleep(0.01)
    assert runs == 3
    assert seen_unwell == [{"exchange": "ConnectionError: broker unreachable"}]
    assert side.problems() == {}  # well once the run outlasted a backoff
    assert registry.get_sample_value("dccgate_side_task_failures_total", {"task": "exchange"}) == 2
    assert registry.get_sample_value("dccgate_side_task_unwell", {"task": "exchange"}) == 0
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_failed_and_recovered_and_probes() -> None:
    side = SideTasks(None)
    side.failed("publish", TimeoutError("no ack"))
    problem: list[str | None] = ["cannot fetch dcc.control"]
    side.watch("control", lambda: problem[0])
    assert side.problems() == {"publish": "TimeoutError: no ack", "control": problem[0]}
    side.recovered("publish")
    problem[0] = None
    assert side.problems() == {}


async def test_cancelling_the_supervisor_cancels_the_task() -> None:
    side = SideTasks(None)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    task = asyncio.create_task(side.supervise("x", forever, asyncio.Event()))
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert cancelled.is_set()


async def test_healthz_is_503_while_a_side_task_is_unwell() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from workers.runtime.http import build_app
    from workers.runtime.loop import LoopStatus

    side = SideTasks(None)
    status = LoopStatus()
    status.running = True
    app = build_app(
        CollectorRegistry(), {"router": status}, extra=lambda: {"side_tasks": side.problems()}
    )
    async with TestClient(TestServer(app)) as client:
        ok = await client.get("/healthz")
        assert ok.status == 200
        side.failed("load_exchange", OSError("produce to dcc.load failed"))
        bad = await client.get("/healthz")
        assert bad.status == 503
        doc = await bad.json()
        assert doc["status"] == "unavailable"
        assert doc["side_tasks"] == {"load_exchange": "OSError: produce to dcc.load failed"}
