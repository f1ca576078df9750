"""`dccgate bench --latency`: the latency the gateway adds, at steady load.

For each load level (10%, 50% and 90% of one router's capacity, measured first in the same
run unless `--capacity` gives it) two pipelines run in turn on the same broker, each in a
process of its own (as a deployed worker would):

- the plain pass-through loop (consume dcc.sr.inbound, produce each record unchanged,
  commit; `workers/tools/passthrough.py`), and
- the router with every production check on (`bench_router(traffic=True, adt=True)`).

This process sends the benchmark's requests at the level's rate for `duration_s` seconds,
steadily (every 2 ms the records due so far), and reads the pipeline's output (the
pass-through's copies, or the router's answers on dcc.user.responses), taking for each
request the time from its `send()` to its output being read. The first second is a
warm-up and not counted. The gateway's **added** latency at a percentile is the router's
minus the pass-through's at the same rate on the same broker: what the gateway costs over
the least a Kafka application can do.

On the embedded broker a fetch always waits `fetch_max_wait_ms` (BROKER-NOTES.md), so both
pipelines' figures are mostly that wait, twice over (the pipeline's fetch and the reader's);
the difference still says what the gateway adds. On Apache Kafka a fetch returns as soon as
data arrives. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import signal
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from broker.settings import KafkaSettings
from broker.topics import ensure_topics
from workers.config.settings import Settings
from workers.tools.bench import (
    BenchRun,
    bench_router,
    bench_run,
    make_requests,
    produce_records,
    time_router,
)

__all__ = ["LEVELS", "bench_latency", "run_latency"]

LEVELS = (0.1, 0.5, 0.9)
"""The load levels, as fractions of one router's capacity."""
_WARMUP_S = 1.0
_TICK_S = 0.002
_COUNTER_BASE = 1_700_000_000_000  # make_requests' first replay counter


class LevelResult(msgspec.Struct, frozen=True, kw_only=True):
    """One pipeline at one rate: what was sent and read, and the latency percentiles."""

    pipeline: str
    rate_per_s: float
    sent: int
    measured: int
    lost: int
    refused: int
    """Outputs whose answer was not "accepted" (the router refused the request)."""
    p50_ms: float
    p99_ms: float
    p99_9_ms: float


def _percentile(sorted_ms: list[float], p: float) -> float:
    """The nearest-rank percentile of an ascending list (no interpolation)."""
    if not sorted_ms:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_ms)))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


# --- the pipelines, each in a child process -------------------------------------------------


async def _serve_passthrough(kafka: KafkaSettings, src: str, dst: str) -> None:
    """The pass-through loop until SIGTERM: fetch, send each record, gather acks, commit."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        src, group_id=f"lat-pt-{uuid.uuid4().hex[:8]}", **kafka.consumer_kwargs()
    )
    producer = AIOKafkaProducer(**kafka.producer_kwargs())
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=kafka.max_poll_records)
            if not batch:
                continue
            futures = [
                await producer.send(dst, rec.value, key=rec.key, partition=tp.partition)
                for tp, recs in batch.items()
                for rec in recs
            ]
            await asyncio.gather(*futures)
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
    finally:
        await producer.stop()
        await consumer.stop()


async def _serve_router(settings: Settings, kafka: KafkaSettings) -> None:
    """The router with every check on until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    router = await bench_router(settings, kafka, traffic=True, adt=True)
    await router.run(stop)


def _child(pipeline: str, settings: Settings, kafka: KafkaSettings, dst: str) -> None:
    """A child process's entry point (spawned: a fresh interpreter, as a worker is)."""
    from workers.runtime.process import run

    if pipeline == "passthrough":
        run(_serve_passthrough(kafka, settings.topics.sr_inbound, dst))
    else:
        run(_serve_router(settings, kafka))


# --- the load and the clock -----------------------------------------------------------------


def _index(request_id: str) -> int:
    return int(request_id.rsplit(":", 1)[1]) - _COUNTER_BASE


async def _read(kafka: KafkaSettings, topic: str, read_at: list[float], refused: list[int]) -> None:
    """Read `topic` until cancelled, noting when each request's first output was read."""
    consumer = AIOKafkaConsumer(
        topic, group_id=f"lat-read-{uuid.uuid4().hex[:8]}", **kafka.consumer_kwargs()
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.perf_counter()
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    i = _index(doc["request_id"])
                    if 0 <= i < len(read_at) and read_at[i] == 0.0:
                        read_at[i] = now
                        # An answer that is not "accepted" measured another path (a
                        # refusal is cheaper): counted, so the figures can be trusted.
                        if doc.get("outcome", "accepted") != "accepted":
                            refused[0] += 1
    finally:
        await consumer.stop()


async def _send_steadily(
    kafka: KafkaSettings,
    topic: str,
    records: list[tuple[bytes, bytes]],
    rate_per_s: float,
    sent_at: list[float],
) -> None:
    """Send records[1:] at `rate_per_s` (records[0] is the probe, already sent)."""
    producer = AIOKafkaProducer(**kafka.producer_kwargs())
    await producer.start()
    try:
        futures = []
        start = time.perf_counter()
        i = 1
        while i < len(records):
            due = min(len(records), 1 + int((time.perf_counter() - start) * rate_per_s))
            while i < due:
                key, value = records[i]
                sent_at[i] = time.perf_counter()
                futures.append(await producer.send(topic, value, key=key))
                i += 1
            await asyncio.sleep(_TICK_S)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _one(run: BenchRun, pipeline: str, rate_per_s: float, duration_s: float) -> LevelResult:
    """One pipeline at one rate, on topics of its own."""
    prefix = f"{run.settings.topic_prefix}lat-{uuid.uuid4().hex[:6]}."
    settings = msgspec.structs.replace(run.settings, topic_prefix=prefix)
    kafka = msgspec.structs.replace(run.kafka, topic_prefix=prefix)
    topics = settings.topics
    dst = f"{prefix}passthrough.out" if pipeline == "passthrough" else topics.user_responses
    specs = topics.specs(partitions=settings.partitions)
    specs.append(msgspec.structs.replace(specs[0], name=f"{prefix}passthrough.out", configs={}))
    await ensure_topics(kafka, specs)
    n = 1 + max(1, int(rate_per_s * duration_s))
    # The benchmark's requests from the Users bench_router registers, in their roles (another
    # seed would pair Users with roles they do not hold: every request refused, E1).
    records = make_requests(n)
    sent_at = [0.0] * n
    read_at = [0.0] * n
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_child, args=(pipeline, settings, kafka, dst), daemon=True)
    child.start()
    refused = [0]
    reader = asyncio.create_task(_read(kafka, dst, read_at, refused))
    try:
        # The probe: the pipeline is ready (joined, assigned) once its output is read.
        producer = AIOKafkaProducer(**kafka.producer_kwargs())
        await producer.start()
        try:
            sent_at[0] = time.perf_counter()
            await producer.send_and_wait(topics.sr_inbound, records[0][1], key=records[0][0])
        finally:
            await producer.stop()
        await _wait(lambda: read_at[0] > 0.0, 120.0, child, f"{pipeline} never answered")
        await _send_steadily(kafka, topics.sr_inbound, records, rate_per_s, sent_at)
        # Whatever is still on its way gets a few seconds.
        with contextlib.suppress(TimeoutError):
            await _wait(lambda: all(read_at), 10.0, child, "")
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        child.terminate()
        await asyncio.to_thread(child.join, 30)
    first_counted = sent_at[1] + _WARMUP_S
    latencies = sorted(
        (r - s) * 1000.0
        for s, r in zip(sent_at[1:], read_at[1:], strict=True)
        if r and s >= first_counted
    )
    counted = sum(1 for s in sent_at[1:] if s >= first_counted)
    return LevelResult(
        pipeline=pipeline,
        rate_per_s=rate_per_s,
        sent=n - 1,
        measured=len(latencies),
        lost=counted - len(latencies),
        refused=refused[0],
        p50_ms=round(_percentile(latencies, 50.0), 2),
        p99_ms=round(_percentile(latencies, 99.0), 2),
        p99_9_ms=round(_percentile(latencies, 99.9), 2),
    )


async def _wait(done: Callable[[], bool], timeout_s: float, child: Any, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if not child.is_alive():
            raise RuntimeError(f"the benchmark's pipeline process exited ({child.exitcode})")
        if time.monotonic() > deadline:
            if what:
                raise RuntimeError(f"{what} within {timeout_s:.0f} s")
            raise TimeoutError
        await asyncio.sleep(0.05)


async def bench_latency(
    settings: Settings,
    *,
    duration_s: float = 10.0,
    capacity_per_s: float | None = None,
    capacity_messages: int = 50_000,
) -> dict[str, object]:
    """Measure the router's capacity (all checks; unless `capacity_per_s` is given), then
    the pass-through's and the router's latency at each of LEVELS; return every figure."""
    async with bench_run(settings) as run:
        if capacity_per_s is None:
            # The benchmark's throughput run, once: the router with every check on.
            records = make_requests(capacity_messages)
            await produce_records(run.kafka, run.topics.sr_inbound, records)
            seconds = await time_router(
                run.settings, run.kafka, capacity_messages, traffic=True, adt=True
            )
            capacity_per_s = capacity_messages / seconds
        levels: list[dict[str, object]] = []
        for level in LEVELS:
            rate = capacity_per_s * level
            pt = await _one(run, "passthrough", rate, duration_s)
            gw = await _one(run, "router", rate, duration_s)
            levels.append(
                {
                    "level": level,
                    "rate_per_s": round(rate),
                    "passthrough": msgspec.structs.asdict(pt),
                    "router": msgspec.structs.asdict(gw),
                    "added_p50_ms": round(gw.p50_ms - pt.p50_ms, 2),
                    "added_p99_ms": round(gw.p99_ms - pt.p99_ms, 2),
                    "added_p99_9_ms": round(gw.p99_9_ms - pt.p99_9_ms, 2),
                }
            )
        return {
            "bootstrap": run.bootstrap,
            "embedded_broker": run.embedded,
            "partitions": settings.partitions,
            "duration_s": duration_s,
            "capacity_per_s": round(capacity_per_s),
            "fetch_max_wait_ms": run.kafka.fetch_max_wait_ms,
            "linger_ms": run.kafka.linger_ms,
            "levels": levels,
            "python": sys.version.split()[0],
        }


def run_latency(
    settings: Settings,
    *,
    duration_s: float,
    capacity_per_s: float | None,
    as_json: bool,
) -> int:
    """CLI wrapper: print the table (and a last JSON line with --json)."""
    if duration_s < 3:
        sys.stderr.write("dccgate bench --latency: --duration must be at least 3 seconds\n")
        return 2
    if capacity_per_s is not None and capacity_per_s <= 0:
        sys.stderr.write("dccgate bench --latency: --capacity must be above 0\n")
        return 2
    from workers.runtime.process import run

    result = run(bench_latency(settings, duration_s=duration_s, capacity_per_s=capacity_per_s))
    broker = "embedded broker" if result["embedded_broker"] else f"Kafka at {result['bootstrap']}"
    print(
        f"broker              {broker} (fetch_max_wait_ms {result['fetch_max_wait_ms']}, "
        f"linger_ms {result['linger_ms']})\n"
        f"router capacity     {result['capacity_per_s']} requests/s (all checks on)\n"
        f"steady load         {result['duration_s']} s per pipeline and level, first "
        f"{_WARMUP_S:.0f} s not counted\n"
        "end-to-end ms (send -> output read)   p50      p99    p99.9   lost refused"
    )
    levels = result["levels"]
    assert isinstance(levels, list)
    for row in levels:
        for name in ("passthrough", "router"):
            r = row[name]
            print(
                f"{int(row['level'] * 100):>3}% {row['rate_per_s']:>7}/s {name:<13}"
                f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['p99_9_ms']:>9.1f}{r['lost']:>7}"
                f"{r['refused']:>8}"
            )
        print(
            f"{'':>13}added by dccgate  "
            f"{row['added_p50_ms']:>9.1f}{row['added_p99_ms']:>9.1f}{row['added_p99_9_ms']:>9.1f}"
        )
    if as_json:
        print(orjson.dumps(result).decode())
    return 0
