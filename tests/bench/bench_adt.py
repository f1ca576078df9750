"""Benchmark of adt: AdtEngine cost per request and memory per counted key.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_adt.py            # about half a minute
    python tests/bench/bench_adt.py --quick    # fewer requests and keys

What it measures, each timing the median of 5 runs of 200,000 requests on a warm engine
(time moves on 0.5 ms per request, 2,000 requests/s, so windows slide as in service).
Times are process CPU time (`time.process_time_ns`), so other work on a shared machine
inflates them less than wall-clock time would:

- `check` + `record_processed` per request with 3 windows (1 min, 1 h, 1 day) on each of
  (User, SRV), (User, "*") and (SRV) DCC-wide: 9 counters read and 9 counted per request,
  200 Users, 10 SRVs, every request passed (the common case);
- the same with one data-value rule on the SRV (the body getter returns a prebuilt dict,
  so the decode itself is not counted: add msgspec's cost for your bodies);
- the same for a User over its thresholds (every request quarantined, nothing counted);
- a lighter configuration: 3 windows on (User, SRV) only, no (User, "*"), no DCC-wide;
- `check` + `record_processed` with no rule for the request (a User without values of its
  own, an SRV without DCC-wide rules: the fast path);
- memory: tracemalloc around 20,000 Users with 3 windows on (User, SRV), stage by stage:
  the compiled values, the plan cache, the first request (each window allocates its
  array), and `prune` once the windows are idle (arrays freed);
- the JSON size of one User's snapshot.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from adt import AdtEngine, AdtValues, Threshold, ValueRule, encode_snapshot

_REPEAT = 5
_WINDOWS = (60, 3_600, 86_400)
_SRVS = tuple(f"7.{i}" for i in range(1, 11))
_T0 = 1_700_000_000.0
_STEP_S = 0.0005


def _user(n: int) -> str:
    raw = f"90B3D51F{n:08X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def _values(srvs: tuple[str, ...], limit: int, *, all_srvs: bool) -> AdtValues:
    thresholds = [Threshold(srv=s, window_s=w, max=limit) for s in srvs for w in _WINDOWS]
    if all_srvs:
        thresholds += [Threshold(srv="*", window_s=w, max=limit) for w in _WINDOWS]
    return AdtValues(thresholds=tuple(thresholds))


def _engine(
    users: int, limit: int, *, value_rule: bool = False, user_srv_only: bool = False
) -> AdtEngine:
    dcc = AdtValues() if user_srv_only else _values(_SRVS, 10**9, all_srvs=False)
    if value_rule:
        rules = tuple(ValueRule(srv=s, field="amount", min=0, max=1000) for s in _SRVS)
        dcc = AdtValues(thresholds=dcc.thresholds, value_rules=rules)
    engine = AdtEngine(dcc_values=dcc)
    for n in range(users):
        engine.set_user_values(_user(n), _values(_SRVS, limit, all_srvs=not user_srv_only))
    return engine


def _requests(n: int, users: int, srvs: tuple[str, ...]) -> list[tuple[str, str]]:
    names = [_user(i) for i in range(users)]
    # A fixed interleaving, no random module: User i sends SRV (i * 7 + k) mod 10.
    return [(names[i % users], srvs[(i * 7 + i // users) % len(srvs)]) for i in range(n)]


def _run(engine: AdtEngine, requests: list[tuple[str, str]], t0: float) -> tuple[float, int]:
    body: dict[str, Any] = {"amount": 12.5}

    def getter() -> dict[str, Any]:
        return body

    check = engine.check
    record = engine.record_processed
    quarantined = 0
    now = t0
    start = time.process_time_ns()
    for user, srv in requests:
        now += _STEP_S
        if check(user, srv, getter, now).quarantined:
            quarantined += 1
        else:
            record(user, srv, now)
    elapsed = time.process_time_ns() - start
    return elapsed / len(requests), quarantined


def _median_ns(make: Callable[[], AdtEngine], requests: list[tuple[str, str]]) -> tuple[float, int]:
    engine = make()
    _run(engine, requests, _T0)  # warm: plans built, arrays allocated
    samples = []
    quarantined = 0
    for r in range(_REPEAT):
        gc.collect()
        ns, quarantined = _run(engine, requests, _T0 + (r + 1) * len(requests) * _STEP_S)
        samples.append(ns)
    return statistics.median(samples), quarantined


def _memory(keys: int) -> dict[str, float]:
    """Bytes per User with 3 thresholds on (User, 7.2), measured stage by stage."""
    values = AdtValues(thresholds=tuple(Threshold(srv="7.2", window_s=w, max=10) for w in _WINDOWS))
    names = [_user(i) for i in range(keys)]
    engine = AdtEngine()
    gc.collect()
    tracemalloc.start()
    stages = [tracemalloc.get_traced_memory()[0]]
    for name in names:  # compiled values, lanes, windows without arrays
        engine.set_user_values(name, values)
    stages.append(tracemalloc.get_traced_memory()[0])
    for name in names:  # the plan cache entry for (User, 7.2)
        engine.check(name, "7.2", dict, _T0)
    stages.append(tracemalloc.get_traced_memory()[0])
    for name in names:  # first request: each of the 3 windows gets its array
        engine.record_processed(name, "7.2", _T0)
    stages.append(tracemalloc.get_traced_memory()[0])
    freed = engine.prune(_T0 + 2 * 86_400)  # idle again: arrays freed
    stages.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert freed == keys * len(_WINDOWS)
    return {
        "values": (stages[1] - stages[0]) / keys,
        "plan": (stages[2] - stages[1]) / keys,
        "window": (stages[3] - stages[2]) / (keys * len(_WINDOWS)),
        "key": (stages[3] - stages[2]) / keys,
        "pruned": (stages[4] - stages[3]) / keys,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and keys")
    args = parser.parse_args(argv)
    n = 50_000 if args.quick else 200_000
    keys = 5_000 if args.quick else 20_000
    users = 200
    requests = _requests(n, users, _SRVS)
    # 9 windows per request: (User, SRV), (User, *), (SRV) x 3 lengths.
    print(f"python {sys.version.split()[0]}, {n:,} requests per run, median of {_REPEAT} runs")
    print("| case | ns per request | quarantined per run |")
    print("|---|---|---|")
    cases: list[tuple[str, Callable[[], AdtEngine], list[tuple[str, str]]]] = [
        ("check + record, 9 windows, all pass", lambda: _engine(users, 10**9), requests),
        (
            "check + record, 9 windows + 1 value rule, all pass",
            lambda: _engine(users, 10**9, value_rule=True),
            requests,
        ),
        ("check, 9 windows, User over its max (quarantined)", lambda: _engine(users, 0), requests),
        (
            "check + record, 3 windows on (User, SRV) only, all pass",
            lambda: _engine(users, 10**9, user_srv_only=True),
            requests,
        ),
        (
            "check + record, a User without values, no DCC-wide rule for the SRV",
            lambda: _engine(0, 10**9),
            _requests(n, users, ("4.1.1",)),
        ),
    ]
    for name, make, reqs in cases:
        ns, quarantined = _median_ns(make, reqs)
        print(f"| {name} | {ns:,.0f} | {quarantined:,} |")
    mem = _memory(keys)
    print()
    print(f"memory, {keys:,} Users x 3 windows (60 buckets each) on (User, 7.2), tracemalloc:")
    print(f"  a User's values, compiled, with 3 empty windows: {mem['values']:,.0f} bytes")
    print(f"  the cached plan of one (User, SRV): {mem['plan']:,.0f} bytes")
    print(f"  a window once it has counted (its array): {mem['window']:,.0f} bytes")
    print(f"  a key (User, SRV) with 3 counting windows: {mem['key']:,.0f} bytes")
    print(f"  prune() of the idle windows frees, per key: {-mem['pruned']:,.0f} bytes")
    engine = _engine(1, 10**9)
    for i, (_, srv) in enumerate(_requests(2_000, 1, _SRVS)):
        engine.record_processed(_user(0), srv, _T0 + i * 30)
    snapshot = engine.snapshot_user(_user(0), _T0 + 2_000 * 30)
    assert snapshot is not None
    size = len(encode_snapshot(snapshot))
    print(f"snapshot of a User with 33 windows after 2,000 requests over 17 h: {size:,} bytes JSON")
    return 0


if __name__ == "__main__":
    sys.exit(main())
