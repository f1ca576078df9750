"""Benchmark of the response deliverer (`dccgate worker deliver`).

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_deliver.py            # about half a minute
    python tests/bench/bench_deliver.py --quick    # fewer answers

Two measures:

1. **Rendering**: `response_from_answer` (decode not included) on one answer, in process CPU
   time per answer (best of 5 runs: the machine is shared).
2. **End to end**: answers written to `dcc.user.responses` on the embedded broker, one
   deliverer in this process POSTing each to a local aiohttp endpoint (another process, so
   the figure is the deliverer's, not the endpoint's) that answers 200 at once; answers
   delivered per second of wall time from the deliverer's start to the last 2xx, and the
   deliverer process's CPU per answer. Each User's answers go one at a time (in order), so
   the rate grows with the number of Users until the CPU is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import sys
import time
import uuid
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from broker.embedded import EmbeddedBroker, free_port
from broker.producer import BatchProducer
from broker.schemas import UserResponse
from broker.topics import ensure_topics
from workers.config.settings import Settings
from workers.deliver.service import build_deliver
from workers.duis.response_xml import response_from_answer
from workers.runtime.metrics import CommonMetrics

_RUNS = 5
DEVICE = "00-DB-12-34-56-78-90-A0"


def _user(i: int) -> str:
    return f"90-B3-D5-1F-{i // 256:02X}-{i % 256:02X}-00-00"


def _answer(user: str, n: int) -> UserResponse:
    return UserResponse(
        request_id=f"{user}:{DEVICE}:{n}",
        user_id=user,
        response_code="T1",
        outcome="throttled",
        reason="allocation a1: 12.0/s over 10/s (SECMP0067)",
        rule="a1",
        retry_after_ms=250,
        at_ms=1_796_000_000_000 + n,
    )


def render_cost_us(n: int) -> float:
    answer = _answer(_user(1), 1000)
    best = float("inf")
    for _ in range(_RUNS):
        gc.collect()
        start = time.process_time()
        for _ in range(n):
            response_from_answer(answer)
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


def _serve(port: int, ready: Event) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{user}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def end_to_end(users: int, per_user: int) -> tuple[float, float]:
    """(answers/s, CPU µs per answer) of one deliverer."""
    port = free_port()
    ready = multiprocessing.Event()
    endpoint = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    endpoint.start()
    ready.wait(10)
    broker = EmbeddedBroker()
    await broker.start()
    try:
        settings = Settings(topic_prefix=f"b{uuid.uuid4().hex[:8]}.", partitions=6)
        kafka = settings.kafka(broker.bootstrap, embedded=True)
        await ensure_topics(kafka, settings.topics.specs(partitions=settings.partitions))
        ids = [_user(i) for i in range(users)]
        async with BatchProducer(kafka) as producer:
            await producer.prepare([settings.topics.user_responses])
            out = producer.batch()
            for n in range(per_user):
                for user in ids:
                    out.add(
                        settings.topics.user_responses,
                        user.encode(),
                        msgspec.json.encode(_answer(user, n)),
                    )
            await producer.send(out)
        registry = CollectorRegistry()
        service = build_deliver(settings, kafka, CommonMetrics(registry, version="bench"))
        service.processor.set_users({u: f"http://127.0.0.1:{port}/{i}" for i, u in enumerate(ids)})
        total = users * per_user
        stop = asyncio.Event()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        task = asyncio.create_task(service.run(stop))
        # Done when every answer was read and none is held (each was delivered): cheap to
        # ask, unlike a scan of the metrics registry, which would cost the deliverer CPU.
        while service.status.records < total or service.processor.held_floor():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stop.set()
        await task
        return total / wall, cpu / total * 1e6
    finally:
        await broker.stop()
        endpoint.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    print(f"render response_from_answer: {render_cost_us(n):.1f} us/answer (best of {_RUNS})")
    per_user = 100 if args.quick else 500
    for users in (1, 10, 50):
        rate, cpu_us = asyncio.run(end_to_end(users, per_user))
        print(
            f"end to end, {users:3d} Users x {per_user} answers: {rate:8.0f} answers/s, "
            f"{cpu_us:6.0f} us CPU/answer in the deliverer process"
        )


if __name__ == "__main__":
    main()
