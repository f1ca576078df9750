"""Benchmark of the alert worker's own decisions: CPU time per alert, in memory.

A plain script, not a test (STYLE.md rule 19): it asserts nothing about speed and prints
figures for docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_alerts.py            # plain and every check on, best of 3
    python tests/bench/bench_alerts.py --profile  # and a cProfile of the every-check run
    python tests/bench/bench_alerts.py --alerts 20000 --rounds 5

What it measures: `AlertProcessor.process`, the follow-up stages of the storm changelog
(`follow_up`) and `after_send` on in-memory records, as the service loop calls them, over
`dccgate bench`'s alerts (`workers.tools.bench.make_alerts`: 100,000 devices, half the
alerts to two recipients, 5% from 20 devices in a storm), in batches of 2,000 read from 6
partitions (`--batch` to change) at 20,000 alerts/s, with the storm changelog on (as in service when
`dcc.state.alerts` is co-partitioned). Two cases, each on a fresh processor:

- plain: the default storm policy, no exclusions, no regional capacity, MP102 off;
- every check on: `workers.tools.bench.alerts_all_checks` (storm policy with code groups,
  two excluded codes, regional capacity for the three regions with a high-priority code,
  the MP102 rule on and watching 10,000 devices), as `dccgate bench --service alerts`.

Time is process CPU time (`time.process_time_ns`) around the processor's calls only, so
other work on a shared machine inflates it less than wall-clock time would; each figure is
the best of `--rounds` runs, the runs of the two cases alternating, and the median is
printed beside it. No broker and no aiokafka: what `dccgate bench` adds on top is the
client's fetch parsing and batch building (the pass-through's cost).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry

from broker.consumer import TopicPartition
from broker.producer import OutputBatch
from broker.topics import Topics
from workers.alerts import AlertProcessor
from workers.alerts.metrics import AlertMetrics
from workers.runtime.metrics import CommonMetrics
from workers.runtime.process import GC_THRESHOLDS
from workers.tools.bench import alerts_all_checks, make_alerts

_T0_MS = 1_700_000_000_000
_BATCH = 2_000
_PARTITIONS = 6
_RATE_PER_S = 20_000


class _Record:
    """An in-memory consumed record (what `broker.consumer.Record` names)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value = key, value
        self.timestamp = _T0_MS
        self.headers: tuple[tuple[str, bytes], ...] = ()


def _processor(*, everything: bool) -> tuple[AlertProcessor, Topics]:
    topics = Topics.with_prefix("")
    metrics = AlertMetrics(CommonMetrics(CollectorRegistry(), version="bench"))
    processor = AlertProcessor(topics=topics, metrics=metrics)
    processor.set_changelog(topics.state_alerts)
    if everything:
        alerts_all_checks(processor, _T0_MS / 1000)
    return processor, topics


def _batches(topics: Topics, n: int, size: int) -> list[dict[TopicPartition, list[Any]]]:
    alerts = make_alerts(n)
    batches = []
    offsets = [0] * _PARTITIONS
    for start in range(0, n, size):
        batch: dict[TopicPartition, list[Any]] = {}
        for i in range(start, min(n, start + size)):
            key, value = alerts[i]
            p = i % _PARTITIONS
            tp = TopicPartition(topics.alerts_inbound, p)
            batch.setdefault(tp, []).append(_Record(tp.topic, p, offsets[p], key, value))
            offsets[p] += 1
        batches.append(batch)
    return batches


def run_once(
    n: int,
    *,
    everything: bool,
    batch_size: int = _BATCH,
    profile: cProfile.Profile | None = None,
) -> float:
    """CPU ns per alert of one run of `n` alerts in batches of `batch_size` through a fresh
    processor."""
    processor, topics = _processor(everything=everything)
    batches = _batches(topics, n, batch_size)
    partitions = dict.fromkeys(topics.all(), _PARTITIONS)
    gc.collect()
    spent = 0
    forwarded = 0
    for b, batch in enumerate(batches):
        now_ms = _T0_MS + b * batch_size * 1_000 // _RATE_PER_S
        out = OutputBatch(partitions)
        follow = OutputBatch(partitions)
        if profile is not None:
            profile.enable()
        begin = time.process_time_ns()
        tally = processor.process(batch, out, now_ms)
        stage = 0
        while processor.follow_up(tally, stage, follow):
            stage += 1
        processor.after_send(tally, now_ms)
        spent += time.process_time_ns() - begin
        if profile is not None:
            profile.disable()
        forwarded += sum(tally.forwarded.values())
        if tally.deadlettered:
            raise RuntimeError(f"dead letters {tally.deadlettered}: not the measured path")
    if forwarded == 0:
        raise RuntimeError("nothing forwarded: not the measured path")
    return spent / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=60_000, help="alerts per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case")
    parser.add_argument("--batch", type=int, default=_BATCH, help="alerts per batch")
    parser.add_argument("--profile", action="store_true", help="cProfile every check on")
    args = parser.parse_args(argv)
    n = args.alerts
    gc.set_threshold(*GC_THRESHOLDS)  # the collector as a service runs it
    samples: dict[str, list[float]] = {"plain": [], "all": []}
    for _ in range(args.rounds):  # alternating, so both cases see the same machine load
        samples["plain"].append(run_once(n, everything=False, batch_size=args.batch))
        samples["all"].append(run_once(n, everything=True, batch_size=args.batch))
    print(
        f"alert worker, AlertProcessor.process + follow_up + after_send, {n:,} alerts in "
        f"batches of {args.batch:,}, {args.rounds} rounds (CPU µs per alert):"
    )
    print("| alert worker | best | median |")
    print("|---|---|---|")
    for name, key in (
        ("plain (default storm policy, changelog on)", "plain"),
        ("every check on (alerts_all_checks)", "all"),
    ):
        best, median = min(samples[key]), statistics.median(samples[key])
        print(f"| {name} | {best / 1000:.2f} | {median / 1000:.2f} |")
    if args.profile:
        prof = cProfile.Profile()
        run_once(n, everything=True, batch_size=args.batch, profile=prof)
        stats = pstats.Stats(prof)
        total = sum(t for _, _, t, _, _ in stats.stats.values())  # type: ignore[attr-defined]
        print(f"\ncProfile, every check on, {n:,} alerts: {total:.2f} s of own time")
        print("| function | calls | own time, s | % |")
        print("|---|---|---|---|")
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
        for (path, line, func), (_, calls, own, _, _) in rows[:25]:
            where = f"{path.rsplit('/', 1)[-1]}:{line}"
            print(f"| `{func}` ({where}) | {calls:,} | {own:.3f} | {100 * own / total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
