"""Benchmark of adt: AdtEngine cost per request, memory per counted key, snapshot cost.

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    python tests/bench/bench_adt.py            # about two minutes
    python tests/bench/bench_adt.py --quick    # fewer requests, Users and keys
    python tests/bench/bench_adt.py --profile  # and a cProfile of the headline case
    python tests/bench/bench_adt.py --router   # only the router with every check on
    python tests/bench/bench_adt.py --router --profile  # and its cProfile

Each timing is the median of 5 runs of 200,000 requests on a warm engine (time moves on
0.5 ms per request, 2,000 requests/s, so windows slide as in service; "60,000 requests/s":
1/60,000 s per request, a router's rate), in process CPU time
(`time.process_time_ns`), so other work on a shared machine inflates it less than
wall-clock time would. The SRVs are the 129 of workers/duis/srv_catalogue.toml. Unless a
case says otherwise a request meets 9 count windows (1 min, 1 h and 1 day on its (User,
SRV), on its (User, "*") and on its SRV DCC-wide) and one value rule (DCC-wide, on a body
field `amount`; the body getter returns a prebuilt dict, so decoding is not counted), and
every request passes. The router calls `check_and_record` (one call); "check + record" is
`check` then `record_processed`.

- 200 Users with thresholds on all 129 SRVs and "*" (390 each), requests over all SRVs:
  a (User, SRV) sees a request every 13 s, so its minute window moves on each time;
- the same with 1, 10,000 and 100,000 Users, each with thresholds on 4 SRVs of its own and
  "*" (all 129 in use across Users): with more Users each key sees a request less often;
  then 200 Users sending among 100,000 with values: the number of Users with values as
  such must not weigh;
- a User over its thresholds (every request quarantined, nothing counted);
- the largest configuration a User may set (adt.config): 4 windows on each of the 129
  SRVs and 4 on "*" (520 thresholds), 4 value rules on each SRV (516), 64 exception
  windows raising thresholds of 16 or 17 SRVs each, 27 of them in force: a request meets
  11 windows (some of them raised) and 5 value rules; it must cost at most twice the
  9-window case (the ratio is measured again with the runs of the two cases alternating,
  as a ratio of figures taken minutes apart moves with the machine's load);
- a request no rule applies to (a User without values, an SRV without DCC-wide rules);
- memory: tracemalloc around 20,000 Users with 3 windows on (User, SRV), stage by stage;
- snapshots: the JSON size of a User's, and the cost of the per-key snapshots a router
  writes after a batch, per key counted under, built the straightforward way
  (`snapshot_changed` + `encode_snapshot`) and as the router does (`encode_changed`, the
  same bytes), on the same requests, at 2,000 and at 60,000 requests/s.

With `--router`: the router's own decisions (`RouterProcessor.process` and `after_send` on
in-memory records, batches of 2,000 at 60,000 requests/s, `dccgate bench`'s requests,
Users, traffic policy and ADT values), CPU time per request with every check on, without
the ADT state store (no snapshots, no replay changelog), and without ADT; best of 3 runs of
60,000 requests each on a fresh router. With `--profile` as well, a cProfile of one run
with every check on, top functions by own time. No broker, no aiokafka: what `dccgate
bench` adds on top is the client's fetch parsing and batch building.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adt import (
    AdtEngine,
    AdtValues,
    ExceptionWindow,
    Threshold,
    ValueRule,
    encode_snapshot,
)
from workers.duis import load_catalogue
from workers.runtime.process import GC_THRESHOLDS

_REPEAT = 5
_WINDOWS = (60, 3_600, 86_400)
_BIG_WINDOWS = (60, 3_600, 86_400, 604_800)
_SRVS = tuple(sorted(load_catalogue()))
_T0 = 1_700_000_000.0
_STEP_S = 0.0005
_HUGE = 10**9

Request = tuple[str, str]


def _user(n: int) -> str:
    raw = f"90B3D51F{n:08X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def _thresholds(srvs: tuple[str, ...], windows: tuple[int, ...], limit: int) -> list[Threshold]:
    return [Threshold(srv=s, window_s=w, max=limit) for s in srvs for w in windows]


def _dcc() -> AdtValues:
    return AdtValues(
        thresholds=tuple(_thresholds(_SRVS, _WINDOWS, _HUGE)),
        value_rules=tuple(ValueRule(srv=s, field="amount", min=0, max=1000) for s in _SRVS),
    )


def _own_srvs(n: int) -> tuple[str, ...]:
    """4 SRVs of User n's own; all 129 in use across Users."""
    return tuple(_SRVS[(n * 4 + j) % len(_SRVS)] for j in range(4))


def _engine_all_srvs(users: int, limit: int) -> AdtEngine:
    engine = AdtEngine(dcc_values=_dcc())
    values = AdtValues(thresholds=tuple(_thresholds((*_SRVS, "*"), _WINDOWS, limit)))
    for n in range(users):
        engine.set_user_values(_user(n), values)
    return engine


def _engine_own_srvs(users: int) -> AdtEngine:
    engine = AdtEngine(dcc_values=_dcc())
    for n in range(users):
        values = AdtValues(thresholds=tuple(_thresholds((*_own_srvs(n), "*"), _WINDOWS, _HUGE)))
        engine.set_user_values(_user(n), values)
    return engine


def _largest(n: int) -> AdtValues:
    """The most a User may set: 4 windows per SRV and on "*", 4 value rules per SRV, 64
    exception windows (27 in force at the benchmark's time) raising some thresholds."""
    user = _user(n)
    thresholds = _thresholds((*_SRVS, "*"), _BIG_WINDOWS, _HUGE)
    rules = [
        ValueRule(srv=s, field=f, min=-1, max=10_000) for s in _SRVS for f in ("a", "b", "c", "d")
    ]
    exceptions = []
    for i in range(64):
        start = _T0 - 86_400 + i * 3_600 * (1 if i % 8 else -1)  # every 8th spans the run
        exceptions.append(
            ExceptionWindow(
                id=f"campaign-{i}",
                start=datetime.fromtimestamp(start, UTC),
                end=datetime.fromtimestamp(start + 3 * 86_400, UTC),
                thresholds={
                    f"user:{user}:{s}:{w}": _HUGE + i for s in _SRVS[i::8] for w in _BIG_WINDOWS
                },
            )
        )
    return AdtValues(
        thresholds=tuple(thresholds), value_rules=tuple(rules), exceptions=tuple(exceptions)
    )


def _engine_largest(users: int) -> AdtEngine:
    engine = AdtEngine(dcc_values=_dcc())
    for n in range(users):
        engine.set_user_values(_user(n), _largest(n))
    return engine


def _requests(n: int, users: int, srvs: Callable[[int], tuple[str, ...]]) -> list[Request]:
    names = [_user(i) for i in range(users)]
    out = []
    for i in range(n):
        u = i % users
        own = srvs(u)
        # A fixed interleaving, no random module: User u sends SRV (i * 7 + i // users).
        out.append((names[u], own[(i * 7 + i // users) % len(own)]))
    return out


def _run(
    engine: AdtEngine,
    requests: list[Request],
    t0: float,
    *,
    fused: bool,
    body: dict[str, Any],
    step_s: float = _STEP_S,
) -> tuple[float, int]:
    def getter() -> dict[str, Any]:
        return body

    quarantined = 0
    now = t0
    start = time.process_time_ns()
    if fused:
        decide = engine.check_and_record
        for user, srv in requests:
            now += step_s
            if decide(user, srv, getter, now).outcome != "pass":
                quarantined += 1
    else:
        check = engine.check
        record = engine.record_processed
        for user, srv in requests:
            now += step_s
            if check(user, srv, getter, now).quarantined:
                quarantined += 1
            else:
                record(user, srv, now)
    elapsed = time.process_time_ns() - start
    return elapsed / len(requests), quarantined


def _median_ns(
    make: Callable[[], AdtEngine],
    requests: list[Request],
    *,
    fused: bool = True,
    body: dict[str, Any] | None = None,
    step_s: float = _STEP_S,
) -> tuple[float, int]:
    engine = make()
    body = {"amount": 12.5} if body is None else body
    # Warm: plans built, arrays allocated.
    _run(engine, requests, _T0, fused=fused, body=body, step_s=step_s)
    samples = []
    quarantined = 0
    for r in range(_REPEAT):
        gc.collect()
        t0 = _T0 + (r + 1) * len(requests) * step_s
        ns, quarantined = _run(engine, requests, t0, fused=fused, body=body, step_s=step_s)
        samples.append(ns)
    return statistics.median(samples), quarantined


def _alternating(
    cases: list[tuple[Callable[[], AdtEngine], list[Request], dict[str, Any]]],
) -> list[float]:
    """Median ns per request of each case, their runs alternating (one run of each, then
    again, _REPEAT times), so that a machine getting slower or faster meanwhile weighs on
    each alike: what a ratio between them needs."""
    engines = [make() for make, _, _ in cases]
    for engine, (_, requests, body) in zip(engines, cases, strict=True):
        _run(engine, requests, _T0, fused=True, body=body)  # warm
    samples: list[list[float]] = [[] for _ in cases]
    for r in range(_REPEAT):
        for i, (engine, (_, requests, body)) in enumerate(zip(engines, cases, strict=True)):
            gc.collect()
            t0 = _T0 + (r + 1) * len(requests) * _STEP_S
            samples[i].append(_run(engine, requests, t0, fused=True, body=body)[0])
    return [statistics.median(s) for s in samples]


def _memory(keys: int) -> dict[str, float]:
    """Bytes per User with 3 thresholds on (User, 7.2), measured stage by stage."""
    values = AdtValues(thresholds=tuple(_thresholds(("7.2",), _WINDOWS, 10)))
    names = [_user(i) for i in range(keys)]
    engine = AdtEngine()
    gc.collect()
    tracemalloc.start()
    stages = [tracemalloc.get_traced_memory()[0]]
    for name in names:  # compiled values: no key, no window until the User sends
        engine.set_user_values(name, values)
    stages.append(tracemalloc.get_traced_memory()[0])
    for name in names:  # the plan of (User, 7.2), with its key and 3 windows, no array yet
        engine.check(name, "7.2", dict, _T0)
    stages.append(tracemalloc.get_traced_memory()[0])
    for name in names:  # first request (logged), then read: each window gets its array
        engine.record_processed(name, "7.2", _T0)
        engine.usage(name, _T0)
    stages.append(tracemalloc.get_traced_memory()[0])
    for name in names:  # written to the state topic, as the router does after a batch
        engine.snapshot_changed(name, _T0)
    stages.append(tracemalloc.get_traced_memory()[0])
    # Idle again: arrays freed, and the keys (with their windows and plans) dropped.
    freed = engine.prune(_T0 + 2 * 86_400)
    stages.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    if freed != keys * len(_WINDOWS):
        raise RuntimeError(f"prune freed {freed} windows, expected {keys * len(_WINDOWS)}")
    return {
        "values": (stages[1] - stages[0]) / keys,
        "plan": (stages[2] - stages[1]) / keys,
        "window": (stages[3] - stages[2]) / (keys * len(_WINDOWS)),
        "key": (stages[3] - stages[2]) / keys,
        "pruned": (stages[5] - stages[4]) / keys,
        "idle": (stages[5] - stages[0]) / keys,
    }


def _snapshots() -> None:
    engine = _engine_all_srvs(1, _HUGE)
    user = _user(0)
    srvs = _SRVS[:10]
    for i, (_, srv) in enumerate(_requests(2_000, 1, lambda _: srvs)):
        engine.record_processed(user, srv, _T0 + i * 30)
    now = _T0 + 2_000 * 30
    whole = engine.snapshot_user(user, now)
    if whole is None:
        raise RuntimeError("the User has values: it must have a snapshot")
    print(
        f"snapshot of a User with 33 windows after 2,000 requests over 17 h: "
        f"{len(encode_snapshot(whole)):,} bytes JSON"
    )
    # What a router writes after a batch: one snapshot per key counted under, built the
    # straightforward way (snapshot_changed + encode_snapshot) and as the router does
    # (encode_changed, the same bytes): two engines fed the same requests, measured batch
    # by batch in turn, at 2,000 and at 60,000 requests/s.
    for step_s, rate in ((_STEP_S, "2,000"), (1 / 60_000, "60,000")):
        engines = [_engine_all_srvs(200, _HUGE) for _ in range(2)]
        requests = _requests(200_000, 200, lambda _: _SRVS)
        names = [_user(n) for n in range(200)]
        batch = 2_000
        now = _T0
        keys = [0, 0]
        size = 0
        spent = [0, 0]
        for start in range(0, len(requests), batch):
            for user, srv in requests[start : start + batch]:
                now += step_s
                for engine in engines:
                    engine.check_and_record(user, srv, dict, now)
            begin = time.process_time_ns()
            for name in names:
                for _, snapshot in engines[0].snapshot_changed(name, now):
                    size += len(encode_snapshot(snapshot))
                    keys[0] += 1
            spent[0] += time.process_time_ns() - begin
            begin = time.process_time_ns()
            for name in names:
                keys[1] += len(engines[1].encode_changed(name, now))
            spent[1] += time.process_time_ns() - begin
        if keys[0] != keys[1]:
            raise RuntimeError(f"{keys} keys: the two ways must write the same keys")
        print(
            f"per-key snapshots after each batch of {batch:,} (200 Users, 129 SRVs, {rate} "
            f"requests/s): {keys[0] / len(requests):.2f} keys a request, {size / keys[0]:,.0f} "
            f"bytes JSON a key; {spent[0] / keys[0] / 1000:.1f} µs a key by snapshot_changed + "
            f"encode_snapshot, {spent[1] / keys[1] / 1000:.1f} µs by encode_changed (the router's)"
        )


def _router(*, adt: bool, state: bool) -> Any:
    """A router's processor as `dccgate bench --checks all` runs it (registered Users,
    replay protection, traffic management active), with the benchmark's ADT values if
    `adt`, and the ADT state store (per-key snapshots, replay changelog) if `state`."""
    from prometheus_client import CollectorRegistry

    from broker.topics import Topics
    from workers.config.codes import ResponseCodes
    from workers.config.settings import Settings
    from workers.duis import DuisValidator
    from workers.router.adt import AdtControl
    from workers.router.adt_state import AdtStateStore
    from workers.router.processor import RouterMetrics, RouterProcessor
    from workers.runtime.metrics import CommonMetrics
    from workers.tools.bench import always_active_traffic, bench_adt_values, bench_users

    topics = Topics.with_prefix("")
    validator = DuisValidator(load_catalogue())
    validator.set_users(bench_users())
    control = AdtControl()
    if adt:
        users, dcc = bench_adt_values(_T0)
        for user, values in users.items():
            control.engine.set_user_values(user, values)
        control.engine.set_dcc_values(dcc)
        control.configured = True
    store = None
    if state:
        kafka = Settings().kafka("127.0.0.1:9", embedded=True)  # never connected
        store = AdtStateStore(kafka, topics.sr_inbound, topics.state_router, control, validator)
    return RouterProcessor(
        topics=topics,
        validator=validator,
        codes=ResponseCodes(),
        metrics=RouterMetrics(CommonMetrics(CollectorRegistry(), version="bench")),
        traffic=always_active_traffic(),
        adt=control,
        adt_state=store,
    ), topics


class _Record:
    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value = key, value
        self.timestamp = int(_T0 * 1000)
        self.headers: tuple[tuple[str, bytes], ...] = ()


def _router_run(
    n: int, *, adt: bool, state: bool, profile: cProfile.Profile | None = None
) -> float:
    """CPU ns per request of one run of n requests through a fresh router."""
    from broker.consumer import TopicPartition
    from broker.producer import OutputBatch
    from workers.tools.bench import make_requests

    processor, topics = _router(adt=adt, state=state)
    batches = []
    requests = make_requests(n)
    for start in range(0, n, 2_000):
        batch: dict[Any, list[Any]] = {}
        for i in range(start, min(n, start + 2_000)):
            key, value = requests[i]
            tp = TopicPartition(topics.sr_inbound, i % 6)
            batch.setdefault(tp, []).append(_Record(tp.topic, tp.partition, i, key, value))
        batches.append(batch)
    gc.collect()
    spent = 0
    accepted = 0
    for b, batch in enumerate(batches):
        now_ms = int(_T0 * 1000) + b * 2_000 * 1_000 // 60_000
        out = OutputBatch(dict.fromkeys(topics.all(), 6))
        if profile is not None:
            profile.enable()
        begin = time.process_time_ns()
        tally = processor.process(batch, out, now_ms)
        processor.after_send(tally, now_ms)
        spent += time.process_time_ns() - begin
        if profile is not None:
            profile.disable()
        accepted += sum(v for (outcome, _), v in tally.decisions.items() if outcome == "accepted")
    if accepted != n:
        raise RuntimeError(f"{n - accepted} of {n} requests not accepted: not the measured path")
    return spent / n


def _router_figures(profile: bool) -> None:
    n = 60_000
    print(f"router, RouterProcessor.process + after_send, {n:,} requests, best of 3 (µs):")
    print("| router | µs per request |")
    print("|---|---|")
    for name, adt, state in (
        ("every check on (registered roles, replay, traffic, ADT, state store)", True, True),
        ("the same without the ADT state store (no snapshots, no replay changelog)", True, False),
        ("without ADT (registered roles, replay, traffic, state store)", False, True),
    ):
        best = min(_router_run(n, adt=adt, state=state) for _ in range(3))
        print(f"| {name} | {best / 1000:.1f} |")
    if profile:
        prof = cProfile.Profile()
        _router_run(n, adt=True, state=True, profile=prof)
        stats = pstats.Stats(prof)
        total = sum(t for _, _, t, _, _ in stats.stats.values())  # type: ignore[attr-defined]
        print(f"\ncProfile, every check on, {n:,} requests: {total:.2f} s of own time")
        print("| function | calls | own time, s | % |")
        print("|---|---|---|---|")
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
        for (path, line, func), (_, calls, own, _, _) in rows[:20]:
            where = f"{path.rsplit('/', 2)[-2:][-1] if '/' in path else path}:{line}"
            print(f"| `{func}` ({where}) | {calls:,} | {own:.3f} | {100 * own / total:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, Users and keys")
    parser.add_argument("--profile", action="store_true", help="cProfile the headline case")
    parser.add_argument(
        "--router", action="store_true", help="only the router with every check on (in memory)"
    )
    args = parser.parse_args(argv)
    if args.router:
        # The collector as a service runs it (workers/runtime/process.py).
        gc.set_threshold(*GC_THRESHOLDS)
        _router_figures(args.profile)
        return 0
    n = 50_000 if args.quick else 200_000
    keys = 5_000 if args.quick else 20_000
    many = 10_000 if args.quick else 100_000
    every_srv = _requests(n, 200, lambda _: _SRVS)
    print(
        f"python {sys.version.split()[0]}, {len(_SRVS)} SRVs, {n:,} requests per run, "
        f"median of {_REPEAT} runs"
    )
    print("| case | ns per request | quarantined per run |")
    print("|---|---|---|")
    largest_body = {"amount": 12.5, "a": 1, "b": 2.5, "c": 3, "d": 4.5}
    router_step = 1 / 60_000
    cases: list[
        tuple[str, Callable[[], AdtEngine], list[Request], bool, dict[str, Any] | None, float]
    ] = [
        (
            "9 windows + 1 value rule, 200 Users x 129 SRVs (check_and_record)",
            lambda: _engine_all_srvs(200, _HUGE),
            every_srv,
            True,
            None,
            _STEP_S,
        ),
        (
            "the same at 60,000 requests/s (a router's rate)",
            lambda: _engine_all_srvs(200, _HUGE),
            every_srv,
            True,
            None,
            router_step,
        ),
        (
            "the same, check + record_processed",
            lambda: _engine_all_srvs(200, _HUGE),
            every_srv,
            False,
            None,
            _STEP_S,
        ),
        *(
            (
                f"9 windows + 1 value rule, {users:,} User{'s' if users > 1 else ''} x 4 SRVs each"
                + (", 60,000 requests/s" if step == router_step else ""),
                lambda users=users: _engine_own_srvs(users),
                _requests(n, users, _own_srvs),
                True,
                None,
                step,
            )
            for users, step in (
                (1, _STEP_S),
                (10_000, _STEP_S),
                (many, _STEP_S),
                (many, router_step),
            )
        ),
        (
            "9 windows + 1 value rule, 200 Users x 4 SRVs each",
            lambda: _engine_own_srvs(200),
            _requests(n, 200, _own_srvs),
            True,
            None,
            _STEP_S,
        ),
        (
            f"the same 200 sending, {many:,} Users with values",
            lambda: _engine_own_srvs(many),
            _requests(n, 200, _own_srvs),
            True,
            None,
            _STEP_S,
        ),
        (
            "9 windows, User over its max (quarantined)",
            lambda: _engine_all_srvs(200, 0),
            every_srv,
            True,
            None,
            _STEP_S,
        ),
        (
            "largest values a User may set: 11 windows + 5 value rules, 64 exceptions",
            lambda: _engine_largest(200),
            every_srv,
            True,
            largest_body,
            _STEP_S,
        ),
        (
            "no rule applies (User without values, SRV without DCC-wide rules)",
            AdtEngine,
            _requests(n, 200, lambda _: ("4.1.1",)),
            True,
            None,
            _STEP_S,
        ),
    ]
    figures = {}
    for name, make, reqs, fused, body, step_s in cases:
        ns, quarantined = _median_ns(make, reqs, fused=fused, body=body, step_s=step_s)
        figures[name] = ns
        print(f"| {name} | {ns:,.0f} | {quarantined:,} |")
    headline, largest = cases[0][0], cases[10][0]
    print(f"\nlargest / 9-window case, from the table: {figures[largest] / figures[headline]:.2f}")
    nine, most = _alternating(
        [
            (cases[0][1], cases[0][2], {"amount": 12.5}),
            (cases[10][1], cases[10][2], largest_body),
        ]
    )
    print(
        f"the same, runs alternating: {most:,.0f} / {nine:,.0f} ns = {most / nine:.2f} "
        "(target <= 2)"
    )
    mem = _memory(keys)
    print()
    print(f"memory, {keys:,} Users x 3 windows (60 buckets each) on (User, 7.2), tracemalloc:")
    print(f"  a User's values, compiled (no key, no window yet): {mem['values']:,.0f} bytes")
    print(f"  the plan of one (User, SRV), its key and 3 empty windows: {mem['plan']:,.0f} bytes")
    print(f"  a window once it has counted (its array): {mem['window']:,.0f} bytes")
    print(f"  a key (User, SRV) with 3 counting windows, arrays only: {mem['key']:,.0f} bytes")
    print(f"  prune() of an idle key, once written, frees: {-mem['pruned']:,.0f} bytes")
    print(f"  a User idle again after prune(): {mem['idle']:,.0f} bytes (its compiled values)")
    _snapshots()
    if args.profile:
        engine = _engine_all_srvs(200, _HUGE)
        body = {"amount": 12.5}
        _run(engine, every_srv, _T0, fused=True, body=body)
        profile = cProfile.Profile()
        profile.enable()
        _run(engine, every_srv, _T0 + n * _STEP_S, fused=True, body=body)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
