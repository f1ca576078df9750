"""Benchmark of the load generator: how many requests a second `dccgate loadtest` sends.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_loadgen.py               # 3 runs of 5 s, about a minute
    python tests/bench/bench_loadgen.py --seconds 2 --runs 1 --workers 1 2

It starts the embedded broker, creates the contract's topics (6 partitions), and runs the
load test's real sending path, `workers.tools.loadtest.runner.Runner` (traffic generation,
RequestIDs, JSON encoding, confluent-kafka produce, the bookkeeping of every request in
flight), with a scenario whose only traffic is one User looping 4.1.1 at 300,000
requests/s: more than it can send, so it sends as fast as it can. No gateway runs, so
nothing answers and the runner is told not to wait (drain 0). Printed per run: requests
queued per second during the traffic, and per second up to the broker's last
acknowledgement. For comparison: the producer alone (pre-encoded records, confluent-kafka
and the gateway's own aiokafka `BatchProducer`).

Then the sharded generator (`--workers N`, workers/tools/loadtest/shards.py), as `dccgate
loadtest --workers N` runs it, with its real results collector: twelve Users, two on each
partition, reading 4.1.1 at 600,000 requests/s in all. Printed: requests sent per second
of traffic by all shards together. The shards share the machine's cores with the broker
(and with nothing else: no gateway runs).
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: F401  (the coroutines below)
import statistics
import time
from typing import Any

from broker.embedded import EmbeddedBroker
from broker.producer import BatchProducer, partition_for_key
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics
from workers.runtime.process import run  # uvloop and the GC tuning of the dccgate command
from workers.tools.loadtest.fastproducer import FastProducer
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.runner import Runner
from workers.tools.loadtest.scenario import parse_scenario
from workers.tools.loadtest.shards import run_sharded

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


def _spread_users(per_partition: int = 2, partitions: int = 6) -> list[str]:
    """User IDs, `per_partition` on each partition, so every shard count splits them evenly."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(users) < per_partition for users in found.values()):
        n += 1
        user = f"90-B3-D5-1F-{n >> 8:02X}-{n & 0xFF:02X}-00-00"
        users = found[partition_for_key(user.encode(), partitions)]
        if len(users) < per_partition:
            users.append(user)
    return [user for users in found.values() for user in users]


def _readers_scenario(users: list[str], rate_per_s: int) -> str:
    table = "".join(f'[[users]]\nid = "{u}"\nroles = ["IS"]\n' for u in users)
    readers = ", ".join(f'"{u}"' for u in users)
    return (
        f'name = "flat-out-readers"\n{table}[regions.north]\ndevices = 100000\n'
        f"[regions.central]\ndevices = 100000\n[regions.south]\ndevices = 100000\n"
        f"[background]\non_demand_reads_per_s = {rate_per_s}\nreaders = [{readers}]\n"
        "alerts_per_device_per_hour = 0\nprofile_reads_per_burst = 0\n"
    )


async def sharded_rate(kafka: KafkaSettings, topics: Topics, seconds: float, workers: int) -> float:
    scenario = parse_scenario(_readers_scenario(_spread_users(), 600_000))
    collector = ResultCollector(scenario=scenario.name, seed=1, scale=1.0, duration_s=seconds)
    run = await run_sharded(
        scenario,
        kafka=kafka,
        topics=topics,
        collector=collector,
        seed=1,
        scale=1.0,
        duration_s=seconds,
        workers=workers,
        drain_s=0.0,
        settle_s=0.0,
    )
    return run.stats.sent / run.stats.traffic_s


class _Nothing:
    """A collector that keeps nothing (the report's cost is not the generator's)."""

    def request_sent(self, t_s: float, user_id: str, srv: str, n: int = 1) -> None:
        pass

    def event(self, t_s: float, kind: str, detail: str) -> None:
        pass


async def runner_rate(kafka: KafkaSettings, topics: Topics, seconds: float) -> tuple[float, float]:
    producer = FastProducer(kafka.bootstrap)
    collector: Any = _Nothing()
    runner = Runner(
        parse_scenario(SCENARIO),
        kafka=kafka,
        topics=topics,
        collector=collector,
        seed=1,
        duration_s=seconds,
        drain_s=0.0,
        settle_s=0.0,
        producer=producer,
    )
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
    rate = n / (time.perf_counter() - start)
    producer.close()  # before the broker stops, or librdkafka logs the refused reconnect
    return rate


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
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 3])
    args = parser.parse_args()
    async with EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap).for_embedded()
        topics = Topics.with_prefix("")
        await ensure_topics(kafka, topics.specs(partitions=6))
        runs = [await runner_rate(kafka, topics, args.seconds) for _ in range(args.runs)]
        for n, (queued, acked) in enumerate(runs, start=1):
            print(f"runner run {n}: {queued:,.0f} requests/s queued, {acked:,.0f}/s acknowledged")
        print(
            f"runner median: {statistics.median(q for q, _ in runs):,.0f} queued/s, "
            f"{statistics.median(a for _, a in runs):,.0f} acknowledged/s"
        )
        for workers in args.workers:
            rates = [
                await sharded_rate(kafka, topics, args.seconds, workers) for _ in range(args.runs)
            ]
            print(
                f"sharded, {workers} worker(s): "
                f"{', '.join(f'{r:,.0f}' for r in rates)} requests/s sent; "
                f"median {statistics.median(rates):,.0f}"
            )
        n = 500_000
        print(
            f"confluent-kafka producer alone: {producer_only(kafka, 'bench.plain', n):,.0f} msg/s"
        )
        print(
            f"aiokafka BatchProducer alone:   "
            f"{await aiokafka_only(kafka, 'bench.plain2', n):,.0f} msg/s"
        )


if __name__ == "__main__":
    run(main())
