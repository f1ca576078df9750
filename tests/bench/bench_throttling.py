"""Benchmark of the SECMP0067 hot path: GCRA decisions, TrafficManager, memory per User.

A plain script, not a test (speed is never asserted in the suite). Run from the repo root:

    python tests/bench/bench_throttling.py

Prints nanoseconds per call, the best of 7 runs, with the cost of the bare loop (about
20-30 ns) subtracted, and bytes per key measured with tracemalloc.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from throttling.gcra import Gcra, MemoryGcraStore, to_ticks
from throttling.rates import RateMeter
from throttling.traffic import (
    Allocation,
    LoadReport,
    SystemView,
    TrafficManager,
    TrafficPolicy,
    merge_reports,
)

NOW = 1_795_000_000.0
CALLS = 200_000
REPEAT = 7


def user_ids(n: int, prefix: int = 0) -> list[str]:
    """EUI-64 User IDs like the real ones (23 characters)."""
    return [
        f"90-B3-D5-{prefix:02X}-{(i >> 16) & 0xFF:02X}-{(i >> 8) & 0xFF:02X}-{i & 0xFF:02X}-00"
        for i in range(n)
    ]


Body = Callable[[], None]


def best_ns(prepare: Callable[[], Body], calls: int) -> float:
    """Best-of-REPEAT nanoseconds per call; `prepare` (untimed) returns the timed body."""
    samples = []
    for _ in range(REPEAT):
        body = prepare()
        gc.collect()
        start = time.perf_counter()
        body()
        samples.append((time.perf_counter() - start) / calls * 1e9)
    return min(samples)


def same(body: Body) -> Callable[[], Body]:
    """A `prepare` for best_ns that needs no preparing."""
    return lambda: body


def loop_overhead_ns(users: list[str], times: list[float]) -> float:
    def body() -> None:
        for _user, _now in zip(users, times, strict=True):
            pass

    return best_ns(same(body), len(users))


def bench_gcra() -> list[tuple[str, float]]:
    users = user_ids(300) * (CALLS // 300)
    # Time moves 1 us a call; each User comes every 300 us, under its 1e6/s: all allowed.
    times = [NOW + i * 1e-6 for i in range(len(users))]
    overhead = loop_overhead_ns(users, times)

    def allowed() -> Body:
        decide = Gcra(MemoryGcraStore()).decide

        def body() -> None:
            for user, now in zip(users, times, strict=True):
                decide(user, now, 1_000_000.0, 10)

        return body

    def denied() -> Body:
        decide = Gcra(MemoryGcraStore()).decide
        for user in users[:300]:
            decide(user, NOW, 0.001, 1)  # spends the burst: every later call is denied

        def body() -> None:
            for user, now in zip(users, times, strict=True):
                decide(user, now, 0.001, 1)

        return body

    # Users with different limits, interleaved (each limit is converted to ticks once).
    limits = [(1_000_000.0, 10), (999_999.0, 20), (1_000_001.0, 5)] * (len(users) // 3 + 1)

    def mixed_loop() -> None:
        for _user, _now, (_rate, _burst) in zip(users, times, limits, strict=False):
            pass

    mixed_overhead = best_ns(same(mixed_loop), len(users))

    def mixed() -> Body:
        decide = Gcra(MemoryGcraStore()).decide

        def body() -> None:
            for user, now, (rate, burst) in zip(users, times, limits, strict=False):
                decide(user, now, rate, burst)

        return body

    return [
        ("Gcra.decide, allowed", best_ns(allowed, len(users)) - overhead),
        ("Gcra.decide, denied", best_ns(denied, len(users)) - overhead),
        (
            "Gcra.decide, allowed, 3 limits interleaved",
            best_ns(mixed, len(users)) - mixed_overhead,
        ),
    ]


def make_manager() -> TrafficManager:
    policy = TrafficPolicy(
        capacity_per_s=100_000.0,
        operating_threshold_per_s=80_000.0,
        default_allocation=Allocation(rate_per_s=100.0, burst=20),
        reserved_srvs=frozenset({"8.1.1", "2.2"}),
        reserved_share=0.05,
    )
    return TrafficManager(policy, peer_id="bench")


def bench_manager() -> list[tuple[str, float]]:
    users = user_ids(300) * (CALLS // 300)
    distinct = users[:300]
    # 10 us a call: 100k requests/s in all, each of the 300 Users at 333/s.
    times = [NOW + i * 1e-5 for i in range(len(users))]
    overhead = loop_overhead_ns(users, times)

    def decide_and_record(view: SystemView | None) -> Callable[[], Body]:
        def prepare() -> Body:
            manager = make_manager()
            if view is not None:
                manager.update_view(view)
            decide = manager.decide
            record = manager.record_admitted

            def body() -> None:
                for user, now in zip(users, times, strict=True):
                    if decide(user, "4.1.1", now).allowed:
                        record(user, "4.1.1", now)

            return body

        return prepare

    under = SystemView(at_s=NOW, admitted_per_s=90_000.0, user_rates=dict.fromkeys(distinct, 50))
    over = SystemView(at_s=NOW, admitted_per_s=90_000.0, user_rates=dict.fromkeys(distinct, 500))

    def throttled() -> Body:
        manager = make_manager()
        manager.update_view(over)
        decide = manager.decide
        for user in distinct:
            for _ in range(20):
                decide(user, "4.1.1", NOW)  # spends the bursts

        def body() -> None:
            for user in users:
                decide(user, "4.1.1", NOW)

        return body

    def decide_only(view: SystemView | None) -> Callable[[], Body]:
        def prepare() -> Body:
            manager = make_manager()
            if view is not None:
                manager.update_view(view)
            decide = manager.decide

            def body() -> None:
                for user, now in zip(users, times, strict=True):
                    decide(user, "4.1.1", now)

            return body

        return prepare

    def record_only(same_time: bool) -> Callable[[], Body]:
        # A router decides a batch with one now_s: then `add` needs no exp.
        stamps = [NOW] * len(users) if same_time else times

        def prepare() -> Body:
            record = make_manager().record_admitted

            def body() -> None:
                for user, now in zip(users, stamps, strict=True):
                    record(user, "4.1.1", now)

            return body

        return prepare

    return [
        (
            "TrafficManager.decide alone, inactive",
            best_ns(decide_only(None), len(users)) - overhead,
        ),
        (
            "TrafficManager.decide alone, active, User within allocation",
            best_ns(decide_only(under), len(users)) - overhead,
        ),
        (
            "TrafficManager.record_admitted alone, time moving (one exp a call)",
            best_ns(record_only(False), len(users)) - overhead,
        ),
        (
            "TrafficManager.record_admitted alone, one now_s per batch (no exp)",
            best_ns(record_only(True), len(users)) - overhead,
        ),
        (
            "TrafficManager decide + record_admitted, inactive",
            best_ns(decide_and_record(None), len(users)) - overhead,
        ),
        (
            "TrafficManager decide + record_admitted, active, User within allocation",
            best_ns(decide_and_record(under), len(users)) - overhead,
        ),
        (
            # 300 over Users share T: each is limited to 267/s and sends 333/s, so one
            # request in five is throttled and builds a TrafficDecision.
            "TrafficManager decide + record_admitted, active, User over allocation "
            "(GCRA; 20% throttled)",
            best_ns(decide_and_record(over), len(users)) - overhead,
        ),
        (
            "TrafficManager decide, throttled (builds the decision)",
            best_ns(throttled, len(users)) - overhead,
        ),
    ]


def bench_periodic() -> list[tuple[str, float]]:
    results = []
    for count in (300, 3000):
        manager = make_manager()
        for user in user_ids(count):
            manager.record_admitted(user, "4.1.1", NOW)
        own = manager.local_report(NOW)
        reports = {f"r{p}": own.__replace__(peer_id=f"r{p}") for p in range(8)}

        def update(
            manager: TrafficManager = manager, reports: dict[str, LoadReport] = reports
        ) -> None:
            manager.update_view(merge_reports(reports, NOW, 1.0))

        def report(manager: TrafficManager = manager) -> None:
            manager.local_report(NOW)

        results.append(
            (
                f"merge_reports (8 peers) + update_view, {count} Users",
                best_ns(same(update), 1) / 1e3,
            )
        )
        results.append((f"local_report, {count} Users", best_ns(same(report), 1) / 1e3))
    keys = user_ids(100_000)
    store = MemoryGcraStore(max_keys=len(keys))
    meter = RateMeter(max_keys=len(keys))
    for key in keys:
        store.set(key, to_ticks(NOW + 10.0))
        meter.add(key, NOW, 100)
    now_ticks = to_ticks(NOW)

    def expire_store() -> None:
        store.expire(now_ticks)

    def expire_meter() -> None:
        meter.expire(NOW)

    results.append(
        (
            "MemoryGcraStore.expire, 100,000 keys, none idle",
            best_ns(same(expire_store), 1) / 1e3,
        )
    )
    results.append(
        ("RateMeter.expire, 100,000 keys, none idle", best_ns(same(expire_meter), 1) / 1e3)
    )
    return results


def bytes_per_key(fill: Callable[[list[str]], object], count: int) -> tuple[float, float]:
    """(bytes per key counting the key strings, bytes per key without them)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keys = user_ids(count, prefix=0x1F)
    after_keys = tracemalloc.get_traced_memory()[0]
    holder = fill(keys)
    gc.collect()
    after_fill = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del holder
    return ((after_fill - base) / count, (after_fill - after_keys) / count)


def bench_memory() -> list[tuple[str, float, float]]:
    count = 100_000

    def gcra_store(keys: list[str]) -> object:
        store = MemoryGcraStore(max_keys=count)
        decide = Gcra(store).decide
        for key in keys:
            decide(key, NOW, 10.0, 5)
        return store

    def meter(keys: list[str]) -> object:
        rates = RateMeter(max_keys=count)
        for key in keys:
            rates.add(key, NOW)
        return rates

    def manager(keys: list[str]) -> object:
        tm = make_manager()
        for key in keys:
            tm.record_admitted(key, "4.1.1", NOW)
        view = SystemView(at_s=NOW, admitted_per_s=90_000.0, user_rates=dict.fromkeys(keys, 500))
        tm.update_view(view)
        del view
        for key in keys:
            tm.decide(key, "4.1.1", NOW)
        return tm

    return [
        ("MemoryGcraStore, per key", *bytes_per_key(gcra_store, count)),
        ("RateMeter, per key", *bytes_per_key(meter, count)),
        (
            "TrafficManager, per User over allocation (meter, GCRA, limit entry, plan)",
            *bytes_per_key(manager, count),
        ),
    ]


def main() -> None:
    print(f"CPython {sys.version.split()[0]}, {CALLS:,} calls per run, best of {REPEAT}")
    print()
    print("per call (ns):")
    for name, ns in bench_gcra() + bench_manager():
        print(f"  {ns:8.0f}  {name}")
    print()
    print("periodic work (us per call):")
    for name, us in bench_periodic():
        print(f"  {us:8.1f}  {name}")
    print()
    print("memory (bytes per key, 100,000 keys; with / without the 23-character key string):")
    for name, with_key, without_key in bench_memory():
        print(f"  {with_key:6.0f} / {without_key:4.0f}  {name}")


if __name__ == "__main__":
    main()
