"""One load test over several processes (`dccgate loadtest --workers N`).

A runner spends its time in Python, per request: about 100,000 requests a second from one
process (docs/benchmarks.md), which is more than one router decides but not several
routers' worth. `run_sharded` starts N shard processes, each a `Runner` for one
`generator.Shard` of the scenario:

- Users are dealt to shards by their partition of `dcc.user.responses` (the partition the
  gateway's answers to them land in, and the router that decides them), so each shard
  reads only its own partitions of answers, and all of a User's requests, with their
  RequestID counters, come from one process in order.
- The User-less lanes (steady alerts per region, storm lanes) are dealt round.
- Every shard reads `dcc.sr.outbound` and skips the others' forwarded requests by their
  `dcctool-loadtest-shard` header; shard 0 alone reads the delivered alerts and the dead
  letters, and adds the scenario's fault events to the timeline. So shard 0 goes on reading
  until every shard's traffic is over, and then for the settle time.

The shards connect and start reading, then wait for one start (wall-clock ms and the
monotonic clock every process on the machine shares), so their time axes agree. Each
sends its counts once a second for the progress line, and at the end its `RunStats` and
its collector, which are added up here (`RunStats.add`, `ResultCollector.merge`). The
traffic of N shards is, event for event, the single-process traffic of the same seed
(tests/unit/workers/tools/loadtest/test_generator.py); only the interleaving of the shards'
records on a partition differs from run to run, as it would between two real Users.

A shard that fails or dies stops the run with its error; the others are stopped.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from broker.follower import partition_counts
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.tools.loadtest.generator import Shard
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.runner import Runner, RunStats
from workers.tools.loadtest.scenario import Scenario

__all__ = ["ShardError", "ShardedRun", "run_sharded"]

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = 120.0
"""How long shards get to start (import, connect, start reading) before the run gives up."""
_START_DELAY_S = 0.2
"""The common start is this far after the last shard is ready: time to hand it over."""
_POLL_S = 0.2


class ShardError(RuntimeError):
    """A shard process failed or died; the message says which and why."""


@dataclass(frozen=True, slots=True)
class _Job:
    """What a shard process is given (pickled to it)."""

    scenario: Scenario
    kafka: KafkaSettings
    topics: Topics
    seed: int
    scale: float
    duration_s: float
    shard: Shard
    run_tag: str
    bucket_s: float
    drain_s: float | None
    settle_s: float | None


@dataclass(slots=True)
class ShardedRun:
    """The outcome of `run_sharded`: counts added up over the shards."""

    stats: RunStats
    elapsed_s: float
    """The latest shard's end, seconds since the common start."""
    started_at_s: float
    """The common start, Unix seconds."""


async def run_sharded(
    scenario: Scenario,
    *,
    kafka: KafkaSettings,
    topics: Topics,
    collector: ResultCollector,
    seed: int,
    scale: float,
    duration_s: float,
    workers: int,
    on_progress: Callable[[RunStats, float], None] | None = None,
    drain_s: float | None = None,
    settle_s: float | None = None,
) -> ShardedRun:
    """Run `scenario` in `workers` processes (at most one per partition of
    `dcc.user.responses`); their collectors are merged into `collector`. The other
    arguments are `Runner`'s."""
    partitions = (await partition_counts(kafka, [topics.user_responses]))[topics.user_responses]
    if workers > partitions:
        log.warning(
            "%d workers asked for, %s has %d partitions: using %d",
            workers,
            topics.user_responses,
            partitions,
            partitions,
        )
        workers = partitions
    run_tag = uuid.uuid4().hex[:12]
    context = multiprocessing.get_context("spawn")
    outbox: Any = context.Queue()
    gates: list[Any] = [context.Queue() for _ in range(workers)]
    jobs = [
        _Job(
            scenario,
            kafka,
            topics,
            seed,
            scale,
            duration_s,
            Shard(index=k, count=workers, partitions=partitions),
            run_tag,
            collector.bucket_s,
            drain_s,
            settle_s,
        )
        for k in range(workers)
    ]
    processes = [
        context.Process(
            target=_shard_main,
            args=(job, gates[k], outbox),
            name=f"dccgate-loadtest-shard-{k}",
            daemon=True,
        )
        for k, job in enumerate(jobs)
    ]
    try:
        for process in processes:
            process.start()
        return await _coordinate(processes, gates, outbox, collector, duration_s, on_progress)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            await asyncio.to_thread(process.join, 10.0)
        outbox.close()
        for gate in gates:
            gate.close()


async def _coordinate(
    processes: Sequence[BaseProcess],
    gates: list[Any],
    outbox: Any,
    collector: ResultCollector,
    duration_s: float,
    on_progress: Callable[[RunStats, float], None] | None,
) -> ShardedRun:
    workers = len(processes)
    ready: set[int] = set()
    sent: set[int] = set()
    latest: dict[int, RunStats] = {}
    done: dict[int, tuple[RunStats, float]] = {}
    started_at_s = 0.0
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last_progress = 0.0
    while len(done) < workers:
        try:
            message = await asyncio.to_thread(outbox.get, True, _POLL_S)
        except queue.Empty:
            message = None
        if message is not None:
            kind, k, *rest = message
            if kind == "failed":
                raise ShardError(f"load-test shard {k} of {workers} failed:\n{rest[0]}")
            if kind == "ready":
                ready.add(k)
                if len(ready) == workers:
                    t0 = time.monotonic() + _START_DELAY_S
                    start_ms = time.time_ns() // 1_000_000 + int(_START_DELAY_S * 1000)
                    started_at_s = start_ms / 1000
                    for gate in gates:
                        gate.put((start_ms, t0))
            elif kind == "sent":
                sent.add(k)
                if len(sent) == workers:
                    gates[0].put("all sent")
            elif kind == "progress":
                latest[k] = rest[0]
            elif kind == "done":
                stats, elapsed_s, shard_collector = rest
                done[k] = (stats, elapsed_s)
                latest[k] = stats
                collector.merge(shard_collector)
        if len(ready) < workers and time.monotonic() > deadline:
            raise ShardError(
                f"load-test shards not ready after {_READY_TIMEOUT_S:.0f} s "
                f"({len(ready)} of {workers})"
            )
        for k, process in enumerate(processes):
            if k not in done and process.exitcode is not None and message is None:
                raise ShardError(
                    f"load-test shard {k} of {workers} exited with code "
                    f"{process.exitcode} before it reported"
                )
        now = time.monotonic()
        if on_progress is not None and latest and now - last_progress >= 1.0:
            last_progress = now
            total = _added(latest.values())
            on_progress(total, max(0.0, duration_s - total.elapsed_s))
    stats = _added(s for s, _ in done.values())
    return ShardedRun(
        stats=stats, elapsed_s=max(e for _, e in done.values()), started_at_s=started_at_s
    )


def _added(parts: Any) -> RunStats:
    total = RunStats()
    for part in parts:
        total.add(part)
    return total


def _shard_main(job: _Job, gate: Any, outbox: Any) -> None:
    """A shard process: run the job's part of the scenario, report to `outbox`."""
    from workers.runtime.process import run

    try:
        run(_run_shard(job, gate, outbox))
    except BaseException:
        outbox.put(("failed", job.shard.index, traceback.format_exc()))
        raise


async def _run_shard(job: _Job, gate: Any, outbox: Any) -> None:
    k = job.shard.index
    collector = ResultCollector(
        scenario=job.scenario.name,
        seed=job.seed,
        scale=job.scale,
        duration_s=job.duration_s,
        bucket_s=job.bucket_s,
    )

    def progress(stats: RunStats, left_s: float) -> None:
        outbox.put(("progress", k, stats))

    async def start() -> tuple[int, float]:
        outbox.put(("ready", k))
        start_ms, t0 = await asyncio.to_thread(gate.get)
        return int(start_ms), float(t0)

    runner = Runner(
        job.scenario,
        kafka=job.kafka,
        topics=job.topics,
        collector=collector,
        seed=job.seed,
        scale=job.scale,
        duration_s=job.duration_s,
        drain_s=job.drain_s,
        settle_s=job.settle_s,
        on_progress=progress,
        shard=job.shard,
        run_tag=job.run_tag,
    )

    async def sent() -> None:
        outbox.put(("sent", k))
        if k == 0:
            # Shard 0 reads every shard's delivered alerts: it stops when all are done, and
            # the last alerts raised have had the settle time to come through.
            await asyncio.to_thread(gate.get)
            await asyncio.sleep(runner.settle_s)

    stats = await runner.run(gate=start, sent=sent)
    outbox.put(("done", k, stats, runner.now(), collector))
