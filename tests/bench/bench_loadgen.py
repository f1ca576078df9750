"""Benchmark of the load generator: how many requests a second `dccgate loadtest` sends.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_loadgen.py               # 3 runs of 5 s, about half a minute
    python tests/bench/bench_loadgen.py --seconds 2 --runs 1

It starts the embedded broker, creates the contract's topics (6 partitions), and runs the
load test's real sending path, `workers.loadtest.runner.Runner` (traffic generation,
RequestIDs, JSON encoding, confluent-kafka produce, the bookkeeping of every request in
flight), with a scenario whose only traffic is one User looping 4.1.1 at 300,000
requests/s: more than it can send, so it sends as fast as it can. No gateway runs, so
nothing answers and the runner is told not to wait (drain 0). Printed per run: requests
queued per second during the traffic, and per second up to the broker's last
acknowledgement. For comparison: the producer alone (pre-encoded records, confluent-kafka
and the gateway's own aiokafka `BatchProducer`).
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: F401  (the coroutines below)
import statistics
import time
from typing import Any

from broker.embedded import EmbeddedBroker
from broker.fastproducer import FastProducer
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics
from workers.loadtest.runner import Runner
from workers.loadtest.scenario import parse_scenario
from workers.runtime import run  # uvloop and the GC tuning of the dccgate command

SCENARIO = """
name = "flat-out"
[[users]]
id = "90-B3-D5-1F-30-01-00-00"
roles = ["IS"]
[regions.north]
devices = 100000
[regions.central]
devices = 100000
[regions.south]
devices = 100000
[[faults.runaway_user]]
user = "90-B3-D5-1F-30-01-00-00"
srv = "4.1.1"
rate_per_s = 300000
duration_s = 3600
"""


class _Nothing:
    """A collector that keeps nothing (the report's cost is not the generator's)."""

    def request_sent(self, t_s: float, user_id: str, srv: str) -> None:
        pass

    def event(self, t_s: float, kind: str, detail: str) -> None:
        pass


async def runner_rate(kafka: KafkaSettings, topics: Topics, seconds: float) -> tuple[float, float]:
    producer = FastProducer(kafka.bootstrap)
    collector: Any = _Nothing()
    runner = Runner(
        parse_scenario(SCENARIO), kafka=kafka, topics=topics, collector=collector, seed=1,
        duration_s=seconds, drain_s=0.0, settle_s=0.0, producer=producer,
    )  # fmt: skip
    start = time.perf_counter()
    stats = await runner.run()  # flushes at the end
    total_s = time.perf_counter() - start
    return stats.sent / stats.traffic_s, stats.sent / total_s


def producer_only(kafka: KafkaSettings, topic: str, n: int) -> float:
    producer = FastProducer(kafka.bootstrap)
    value = b'{"request_id":"90-B3-D5-1F-30-01-00-00:00-DB-01-00-00-00-01-00:1","user_role":"IS","srv":"4.1.1","command_variant":1,"region":"north"}'  # noqa: E501
    keys = [f"90-B3-D5-1F-30-{i:02X}-00-00".encode() for i in range(200)]
    start = time.perf_counter()
    for i in range(n):
        producer.produce(topic, keys[i % 200], value)
        if i % 10_000 == 0:
            producer.poll()
    producer.flush(60.0)
    return n / (time.perf_counter() - start)


async def aiokafka_only(kafka: KafkaSettings, topic: str, n: int) -> float:
    value = b'{"request_id":"90-B3-D5-1F-30-01-00-00:00-DB-01-00-00-00-01-00:1","user_role":"IS","srv":"4.1.1","command_variant":1,"region":"north"}'  # noqa: E501
    keys = [f"90-B3-D5-1F-30-{i:02X}-00-00".encode() for i in range(200)]
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        start = time.perf_counter()
        for chunk in range(0, n, 20_000):
            batch = producer.batch()
            for i in range(chunk, min(n, chunk + 20_000)):
                batch.add(topic, keys[i % 200], value)
            await producer.send(batch)
        return n / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    async with EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap).for_embedded()
        topics = Topics.with_prefix("")
        await ensure_topics(kafka, topics.specs(partitions=6))
        runs = [await runner_rate(kafka, topics, args.seconds) for _ in range(args.runs)]
        for n, (queued, acked) in enumerate(runs, start=1):
            print(f"runner run {n}: {queued:,.0f} requests/s queued, {acked:,.0f}/s acknowledged")
        print(f"runner median: {statistics.median(q for q, _ in runs):,.0f} queued/s, "
              f"{statistics.median(a for _, a in runs):,.0f} acknowledged/s")  # fmt: skip
        n = 500_000
        print(
            f"confluent-kafka producer alone: {producer_only(kafka, 'bench.plain', n):,.0f} msg/s"
        )
        print(f"aiokafka BatchProducer alone:   "
              f"{await aiokafka_only(kafka, 'bench.plain2', n):,.0f} msg/s")  # fmt: skip


if __name__ == "__main__":
    run(main())
