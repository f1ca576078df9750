"""Benchmark of throttling.storm: decide() cost per alert and memory per tracked key.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_storm.py            # all of it, about a minute
    python tests/bench/bench_storm.py --quick    # 100,000 keys instead of 1,000,000

What it measures, each timing the median of 5 runs on a fresh guard:

- `decide`, normal traffic: every alert under its threshold (200,000 devices, 5 alerts
  each, interleaved, so most calls find an open window);
- `decide`, first alert of a key: 1,000,000 distinct devices, each call opens a window;
- `decide`, during storms: 1,000 devices in a storm, every alert suppressed;
- `decide`, an excluded code;
- `flush` with 100,000 storms due at once, per copy;
- memory: tracemalloc around 1,000,000 distinct keys (one alert each, device ID strings
  made on the fly and dropped by the caller, as a worker decoding records would), so what
  is counted is what the guard keeps: the key string, the packed window and the dict slot;
  the same for 100,000 keys in a storm (the alert object kept per storm is shared here,
  so it is not counted: add the size of your own alert object).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

from throttling.storm import StormGuard, StormParams, StormPolicy

_PARAMS = StormParams(window_s=600, max_alerts=10, period_s=600)
_REPEAT = 5


def _device(n: int) -> str:
    # EUI-64 like 00-DB-12-34-56-78-90-A0: 23 characters, as on the wire.
    raw = f"00DB{n:012X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def _guard(max_keys: int = 2_000_000) -> StormGuard[object]:
    return StormGuard(StormPolicy(default=_PARAMS), exclusions=["8F75"], max_keys=max_keys)


def _median_ns(setup: Callable[[], Callable[[], int]]) -> float:
    """Median over runs of ns per call; setup returns the timed function and it returns
    how many calls it made."""
    samples = []
    for _ in range(_REPEAT):
        run = setup()
        gc.collect()
        start = time.perf_counter_ns()
        calls = run()
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def _decide_all(devices: list[str], code: str) -> float:
    """ns per decide() of `code` for each of `devices` at t=1 on a fresh guard."""
    item = object()

    def setup() -> Callable[[], int]:
        g = _guard()

        def run() -> int:
            decide = g.decide
            for device in devices:
                decide(device, code, item, 1.0)
            return len(devices)

        return run

    return _median_ns(setup)


def bench_normal() -> float:
    devices = [_device(n) for n in range(200_000)]
    alerts = [(d, 1.0 + k) for k in range(5) for d in devices]
    item = object()

    def setup() -> Callable[[], int]:
        return _decide_timed(_guard(), alerts, item)

    return _median_ns(setup)


def _decide_timed(
    g: StormGuard[object], alerts: list[tuple[str, float]], item: object
) -> Callable[[], int]:
    """The timed part: `g` decides 8F35 for each (device, time) of `alerts`."""

    def run() -> int:
        decide = g.decide
        for device, t in alerts:
            decide(device, "8F35", item, t)
        return len(alerts)

    return run


def bench_new_keys(n: int) -> float:
    return _decide_all([_device(i) for i in range(n)], "8F35")


def bench_storm() -> float:
    devices = [_device(n) for n in range(1_000)]
    item = object()

    def setup() -> Callable[[], int]:
        g = _guard()
        for device in devices:
            for _ in range(_PARAMS.max_alerts + 1):
                g.decide(device, "8F35", item, 1.0)
        assert g.active_storms == len(devices)
        alerts = [(d, 2.0 + k / 1000) for k in range(300) for d in devices]
        return _decide_timed(g, alerts, item)

    return _median_ns(setup)


def bench_excluded() -> float:
    return _decide_all([_device(n) for n in range(1_000)] * 300, "8F75")


def bench_flush() -> float:
    devices = [_device(n) for n in range(100_000)]
    item = object()

    def setup() -> Callable[[], int]:
        g = _guard()
        for device in devices:
            for _ in range(_PARAMS.max_alerts + 2):
                g.decide(device, "8F35", item, 1.0)

        def run() -> int:
            return len(g.flush(1.0 + _PARAMS.period_s))

        return run

    return _median_ns(setup)


def memory(n: int, *, storms: bool) -> tuple[int, float]:
    """Bytes the guard holds for n keys (all windows, or all storms) and per key."""
    item = object()
    gc.collect()
    tracemalloc.start()
    g = _guard(max_keys=n + 1)
    before = tracemalloc.get_traced_memory()[0]
    alerts = _PARAMS.max_alerts + 1 if storms else 1
    for i in range(n):
        device = _device(i)
        for _ in range(alerts):
            g.decide(device, "8F35", item, 1.0)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert g.tracked_keys == n
    assert g.active_storms == (n if storms else 0)
    return held, held / n


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    keys = 100_000 if quick else 1_000_000
    print(f"CPython {sys.version.split()[0]}, params {_PARAMS}")
    print(f"decide, normal (under threshold)   {bench_normal():8.0f} ns/alert")
    print(f"decide, first alert of a key       {bench_new_keys(keys):8.0f} ns/alert")
    print(f"decide, during storms (suppressed) {bench_storm():8.0f} ns/alert")
    print(f"decide, excluded code              {bench_excluded():8.0f} ns/alert")
    print(f"flush, 100,000 storms due          {bench_flush():8.0f} ns/copy")
    total, per_key = memory(keys, storms=False)
    print(f"memory, {keys:,} keys in a window   {total / 2**20:8.1f} MiB, {per_key:.0f} B/key")
    storm_keys = keys // 10
    total, per_key = memory(storm_keys, storms=True)
    print(f"memory, {storm_keys:,} keys in a storm   {total / 2**20:8.1f} MiB, {per_key:.0f} B/key")


if __name__ == "__main__":
    main(sys.argv[1:])
