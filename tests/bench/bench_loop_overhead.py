"""What the service loop and the broker layer add per record, against a plain aiokafka loop.

A plain script, not a test (STYLE.md rule 19): it asserts nothing. From the repository root:

    .venv/bin/python tests/bench/bench_loop_overhead.py --messages 50000 --rounds 3
    .venv/bin/python tests/bench/bench_loop_overhead.py --profile      # cProfile of one loop run
    .venv/bin/python tests/bench/bench_loop_overhead.py --reader       # fetched records, in memory
    .venv/bin/python tests/bench/bench_loop_overhead.py --router       # the router, every check on

It starts the embedded broker (or uses `--bootstrap`), writes `--messages` of the benchmark's
Service Requests (`workers.tools.bench.make_requests`) to a 6-partition topic, then runs in
this one process, alternating, each on a consumer group of its own:

- **pass-through**: the loop of `dccgate bench` (workers/tools/passthrough.py: getmany,
  `send()` each record unchanged to the same partition of another topic, gather the acks,
  commit), with the CPU clock read at its first batch and at its last commit;
- **loop x1**: `workers.runtime.loop.ServiceLoop` with a processor that forwards each record
  unchanged to the same partition of one output topic: the pass-through's work, done by the
  services' loop (OutputBatch, BatchProducer, ordered commits, metrics, status);
- **loop x3**: the same with three outputs per input (the router writes a forward, an
  answer and a replay-changelog record per request): prices an output record.

The difference between the pass-through and "loop x1" is what the loop and the broker layer
add. Figures: CPU time of this process (time.process_time_ns, the broker is another process)
per input record from the first batch to the last commit, and wall-clock msg/s over the same
span; min and median of the rounds. On a shared machine read the CPU figures: wall clock
moves with whatever else runs (check `uptime` first).

`--reader` times, in memory, what reading one fetch costs per record: aiokafka's
`PartitionRecords` (records as `ConsumerRecord`) against broker/fetched.py's `FetchedRecords`
(what `BatchConsumer` uses), over 2,000 of the benchmark's requests in 4 record batches.
`--router` runs `dccgate bench`'s router with every check on instead, `--rounds` times, and
prints its CPU per request and the part of it spent outside `RouterProcessor.process`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from broker.consumer import Record, TopicPartition  # noqa: E402
from broker.embedded import EmbeddedBroker  # noqa: E402
from broker.producer import OutputBatch  # noqa: E402
from broker.settings import KafkaSettings  # noqa: E402
from broker.topics import TopicSpec, ensure_topics  # noqa: E402
from workers.runtime.loop import ServiceLoop  # noqa: E402
from workers.runtime.metrics import CommonMetrics  # noqa: E402
from workers.runtime.process import run  # noqa: E402
from workers.tools.bench import make_requests, produce_records  # noqa: E402

PARTITIONS = 6


class _Span:
    """CPU and wall clock from the first batch to the n-th record committed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = asyncio.Event()
        self.cpu0 = self.cpu1 = 0
        self.sys0 = self.sys1 = 0.0
        self.wall0 = self.wall1 = 0.0
        self.records = 0

    def start(self) -> None:
        if not self.wall0:
            self.cpu0, self.wall0 = time.process_time_ns(), time.perf_counter()
            self.sys0 = os.times().system

    def add(self, records: int) -> None:
        self.records += records
        if self.records >= self.n and not self.done.is_set():
            self.cpu1, self.wall1 = time.process_time_ns(), time.perf_counter()
            self.sys1 = os.times().system
            self.done.set()

    def result(self) -> tuple[float, float, float]:
        """(CPU µs per record, of which in the kernel, msg/s)."""
        return (
            (self.cpu1 - self.cpu0) / self.n / 1000,
            (self.sys1 - self.sys0) / self.n * 1e6,
            self.n / (self.wall1 - self.wall0),
        )


class Forward:
    """Each input record unchanged (key, value, no headers) to the same partition of every
    topic of `outputs`: what the pass-through does, as a processor of the services' loop.
    The report is the batch's record count, which `after_send` hands to the span."""

    def __init__(self, outputs: list[str], span: _Span) -> None:
        self._outputs = outputs
        self._span = span

    def process(
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> int:
        self._span.start()
        n = 0
        for topic in self._outputs:
            lists = out.partition_lists(topic)
            for tp, records in batch.items():
                dst = lists[tp.partition]
                for rec in records:
                    dst.append((rec.key, rec.value, (), None))
        for records in batch.values():
            n += len(records)
        return n

    def after_send(self, report: int, now_ms: int) -> None:
        self._span.add(report)


async def passthrough(
    settings: KafkaSettings, src: str, dst: str, n: int
) -> tuple[float, float, float]:
    """workers/tools/passthrough.py's loop, line for line, with the span's clocks read at the
    first batch and after the last commit."""
    span = _Span(n)
    consumer = AIOKafkaConsumer(
        src, group_id=f"bench-pt-{uuid.uuid4().hex[:8]}", **settings.consumer_kwargs()
    )
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=settings.max_poll_records)
            if not batch:
                continue
            span.start()
            futures = []
            for tp, recs in batch.items():
                for rec in recs:
                    futures.append(
                        await producer.send(dst, rec.value, key=rec.key, partition=tp.partition)
                    )
                done += len(recs)
            await asyncio.gather(*futures)
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
            span.add(sum(len(r) for r in batch.values()))
        return span.result()
    finally:
        await producer.stop()
        await consumer.stop()


async def service_loop(
    settings: KafkaSettings,
    src: str,
    outputs: list[str],
    n: int,
    profile: cProfile.Profile | None = None,
) -> tuple[float, float, float]:
    """The services' loop forwarding each record to every topic of `outputs`."""
    span = _Span(n)
    metrics = CommonMetrics(CollectorRegistry(), version="bench")
    loop: ServiceLoop[int] = ServiceLoop(
        name="bench",
        settings=settings,
        input_topics=[src],
        output_topics=outputs,
        group_id=f"bench-loop-{uuid.uuid4().hex[:8]}",
        processor=Forward(outputs, span),
        metrics=metrics,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    waiter = asyncio.ensure_future(span.done.wait())
    try:
        if profile is not None:
            profile.enable()
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if profile is not None:
            profile.disable()
        if task.done():
            task.result()
            raise RuntimeError("the loop stopped before the input was processed")
        return span.result()
    finally:
        waiter.cancel()
        stop.set()
        await task


async def router_all_checks(n: int, rounds: int) -> None:
    """The router with every check on (`dccgate bench`'s `bench_router(traffic=True,
    adt=True)`), `rounds` runs on the same `n` requests: CPU µs per request from its first
    batch to the commit of the n-th, and how much of it was spent outside
    `RouterProcessor.process` (the loop, the broker layer, `after_send`, the GC)."""
    from workers.config.settings import Settings
    from workers.tools.bench import bench_run

    async with bench_run(Settings()) as bench:
        await produce_records(bench.kafka, bench.topics.sr_inbound, make_requests(n))
        runs = [await _router_run(bench, n) for _ in range(rounds)]
    totals = [total for total, _ in runs]
    outside = [out for _, out in runs]
    print(
        f"router, every check on: CPU µs per request min {min(totals):.2f} median "
        f"{statistics.median(totals):.2f} ({' · '.join(f'{c:.2f}' for c in totals)}); "
        f"outside process(): median {statistics.median(outside):.2f} "
        f"({' · '.join(f'{c:.2f}' for c in outside)})"
    )


async def _router_run(bench: Any, n: int) -> tuple[float, float]:
    """One router run: (CPU µs per request, of which outside `process`)."""
    from workers.tools.bench import bench_router

    router = await bench_router(bench.settings, bench.kafka, traffic=True, adt=True)
    processor: Any = router.loop._processor
    decide = processor.process
    span, inside = _Span(n), [0]

    def process(batch: Any, out: OutputBatch, now_ms: int) -> Any:
        span.start()
        started = time.process_time_ns()
        try:
            return decide(batch, out, now_ms)
        finally:
            inside[0] += time.process_time_ns() - started

    processor.process = process  # on the instance: the loop calls it per batch
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    try:
        while router.status.records < n:
            if task.done():
                task.result()
                raise RuntimeError("the router stopped before the input was processed")
            await asyncio.sleep(0.005)
        span.add(n)
    finally:
        stop.set()
        await task
    cpu = span.result()[0]
    return cpu, cpu - inside[0] / n / 1000


def reader_costs(rounds: int = 30) -> None:
    """CPU µs per record to read one fetch, best of `rounds`: aiokafka against ours."""
    from aiokafka.consumer.fetcher import PartitionRecords
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.memory_records import MemoryRecords

    from broker.fetched import FetchedRecords

    requests = make_requests(2_000)
    data = b""
    for start in range(0, len(requests), 500):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 24,
        )
        for i, (key, value) in enumerate(requests[start : start + 500]):
            builder.append(i, 1_700_000_000_000 + i, key, value, [])
        built = bytearray(builder.build())
        built[0:8] = start.to_bytes(8, "big")  # the batch's base offset
        data += bytes(built)
    tp = TopicPartition("in", 0)

    def fetch() -> PartitionRecords:
        # read_committed, CRCs checked: as every dccgate consumer reads
        return PartitionRecords(tp, MemoryRecords(data), [], 0, None, None, True, 1)

    for name, read in (
        ("aiokafka PartitionRecords", lambda: list(fetch())),
        ("broker.fetched.FetchedRecords", lambda: list(FetchedRecords(fetch()))),
    ):
        best = min(_cpu_ns(read) for _ in range(rounds))
        print(f"{name:<32}{best / len(requests) / 1000:.3f} µs CPU per record")


def _cpu_ns(work: Callable[[], object]) -> int:
    started = time.process_time_ns()
    work()
    return time.process_time_ns() - started


async def main(args: argparse.Namespace) -> None:
    broker = None
    if args.bootstrap is None:
        broker = EmbeddedBroker()
        await broker.start()
        kafka = KafkaSettings(bootstrap=broker.bootstrap).for_embedded()
    else:
        kafka = KafkaSettings(bootstrap=args.bootstrap)
    if args.max_poll_records is not None:
        kafka = msgspec.structs.replace(kafka, max_poll_records=args.max_poll_records)
    try:
        prefix = f"bench-loop-{uuid.uuid4().hex[:8]}."
        src = f"{prefix}in"
        outs = [f"{prefix}out{i}" for i in range(3)]
        await ensure_topics(
            kafka,
            [
                TopicSpec(name=t, partitions=PARTITIONS, replication_factor=1, configs={})
                for t in [src, *outs]
            ],
        )
        await produce_records(kafka, src, make_requests(args.messages))
        n = args.messages
        print(
            f"{n} records x {args.rounds} rounds, {PARTITIONS} partitions, "
            f"max_poll_records {kafka.max_poll_records}, fetch_max_wait_ms "
            f"{kafka.fetch_max_wait_ms}, max_batches_in_flight {kafka.max_batches_in_flight}"
        )
        if args.profile:
            profile = cProfile.Profile()
            cpu, kernel, rate = await service_loop(
                kafka, src, outs[: args.profile_outputs], n, profile
            )
            print(
                f"loop x{args.profile_outputs} (profiled): {cpu:.2f} µs CPU per record "
                f"({kernel:.2f} in the kernel), {rate:,.0f} msg/s"
            )
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text)
            stats.sort_stats("tottime").print_stats(35)
            stats.sort_stats("cumulative").print_stats(45)
            print(text.getvalue())
            return
        samples: dict[str, list[tuple[float, float, float]]] = {
            "pass-through": [],
            "loop x1": [],
            "loop x3": [],
        }
        for _ in range(args.rounds):
            samples["pass-through"].append(await passthrough(kafka, src, outs[0], n))
            samples["loop x1"].append(await service_loop(kafka, src, outs[:1], n))
            samples["loop x3"].append(await service_loop(kafka, src, outs, n))
        print(
            f"{'loop':<14}{'CPU µs/record: min':>20}{'median':>8}{'kernel':>8}"
            f"{'msg/s median':>14}  CPU samples (µs)"
        )
        medians = {}
        for name, runs in samples.items():
            cpus = [c for c, _, _ in runs]
            medians[name] = statistics.median(cpus)
            print(
                f"{name:<14}{min(cpus):>20.2f}{medians[name]:>8.2f}"
                f"{statistics.median(k for _, k, _ in runs):>8.2f}"
                f"{statistics.median(r for _, _, r in runs):>14,.0f}  "
                + " · ".join(f"{c:.2f}" for c in cpus)
            )
        pt, x1, x3 = medians["pass-through"], medians["loop x1"], medians["loop x3"]
        print(
            f"loop and broker layer against the pass-through: {x1 - pt:+.2f} µs per record "
            f"(medians); each output record beyond the first: {(x3 - x1) / 2:.2f} µs"
        )
    finally:
        if broker is not None:
            await broker.stop()


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bootstrap", help="a running cluster instead of the embedded broker")
    p.add_argument("--max-poll-records", type=int, help="batch size (default: the services' 2000)")
    p.add_argument("--profile", action="store_true", help="cProfile one loop run instead")
    p.add_argument("--router", action="store_true", help="the router with every check on instead")
    p.add_argument("--reader", action="store_true", help="time reading a fetch, in memory")
    p.add_argument("--profile-outputs", type=int, default=1, choices=(1, 2, 3))
    return p.parse_args()


if __name__ == "__main__":
    _parsed = _args()
    if _parsed.reader:
        reader_costs()
    elif _parsed.router:
        run(router_all_checks(_parsed.messages, _parsed.rounds))
    else:
        run(main(_parsed))
