"""`dccgate bench`: the router's (or, with `--service alerts`, the alert worker's)
throughput against a plain aiokafka pass-through loop.

Both read the same input topic on the same broker, each with its own consumer group, taking
turns (`--repeat` runs each, medians reported, because a shared 2-core machine is noisy). The
pass-through loop is what an operator would write with aiokafka alone: fetch a batch, send
every record unchanged to another topic (same partition), await the acks, commit. The
service then does its real work on the same records. The clock starts at each loop's first
record, so group-join time is not counted. This is a benchmark, not a test: it asserts
nothing and prints figures for docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec
import orjson
from prometheus_client import CollectorRegistry

from adt import AdtValues, Threshold, ValueRule
from broker.embedded import EmbeddedBroker
from broker.producer import BatchProducer
from broker.security import check_access
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics
from broker.transactions import resolve_exactly_once
from throttling import (
    REGIONS,
    Allocation,
    CorrelationPolicy,
    RegionalPolicy,
    RegionCapacity,
    StormParams,
    StormPolicy,
    SystemView,
    TrafficManager,
    TrafficPolicy,
)
from workers.alerts import KNOWN_ALERT_CODES, AlertProcessor, AlertService
from workers.config.settings import Settings
from workers.duis import load_catalogue
from workers.gateway import dccgate_version
from workers.router.load_exchange import new_peer_id
from workers.router.service import RouterService, build_router
from workers.router.traffic import TrafficControl
from workers.runtime.loop import LoopStatus
from workers.runtime.metrics import CommonMetrics
from workers.tools.passthrough import passthrough

__all__ = [
    "BENCH_EXCLUSIONS",
    "BenchRun",
    "alerts_all_checks",
    "always_active_traffic",
    "bench_adt_values",
    "bench_router",
    "bench_run",
    "bench_users",
    "make_alerts",
    "make_requests",
    "produce_records",
    "run_bench",
    "time_router",
]

_USERS = 200
_BODY: dict[str, object] = {"note": "bench"}
# The fields the benchmark's value rules read (SEC G6 (b)(ii)), inside their limits.
_BODIES: dict[str, dict[str, object]] = {
    "2.2": {"note": "bench", "amount": 125.5},
    "11.3": {"note": "bench", "activation_datetime": "2026-01-02T03:04:05Z"},
}
ADT_WINDOWS_S = (60, 3_600, 86_400)
"""The count windows of the benchmark's ADT values: a minute, an hour, a day."""


def _eui(n: int, prefix: str) -> str:
    raw = f"{prefix}{n:0{16 - len(prefix)}X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def _srvs_by_role() -> dict[str, list[tuple[str, int]]]:
    by_role: dict[str, list[tuple[str, int]]] = {}
    for entry in load_catalogue().values():
        cv = min(entry.allowed_command_variants)
        for role in entry.roles:
            by_role.setdefault(role, []).append((entry.srv, cv))
    return by_role


def _users(rng: random.Random, roles: list[str]) -> list[tuple[str, str]]:
    return [(_eui(0x90B3D51F300000 + i, ""), rng.choice(roles)) for i in range(_USERS)]


def bench_users(*, seed: int = 1) -> dict[str, list[str]]:
    """The Users of `make_requests(seed=seed)` with the role each sends in, to register."""
    return {user: [role] for user, role in _users(random.Random(seed), sorted(_srvs_by_role()))}


def make_requests(n: int, *, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """`n` (key, value) Service Requests like a day's mixed traffic: 200 Users, random
    devices, eligible SRVs with valid command variants, counters increasing per pair."""
    rng = random.Random(seed)
    by_role = _srvs_by_role()
    users = _users(rng, sorted(by_role))
    out = []
    for i in range(n):
        user_id, role = users[rng.randrange(_USERS)]
        srv, cv = rng.choice(by_role[role])
        target = _eui(rng.randrange(1 << 40), "00DB")
        rid = f"{user_id}:{target}:{1_700_000_000_000 + i}"
        doc = {
            "request_id": rid,
            "user_role": role,
            "srv": srv,
            "command_variant": cv,
            "body": _BODIES.get(srv, _BODY),
            "region": ("north", "central", "south")[i % 3],
        }
        out.append((user_id.encode(), orjson.dumps(doc)))
    return out


def make_alerts(n: int, *, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """`n` (key, value) device alerts like a busy hour: 100,000 devices raising well-known
    codes in the three regions, half to two recipients (supplier and network operator),
    and 5% from 20 devices in a storm."""
    rng = random.Random(seed)
    codes = sorted(KNOWN_ALERT_CODES)
    supplier, dno = _eui(0x90B3D51F300001, ""), _eui(0x90B3D51F300002, "")
    out = []
    for i in range(n):
        if rng.random() < 0.05:
            device, code = _eui(rng.randrange(20), "00DC"), "8F1F"
        else:
            device, code = _eui(rng.randrange(100_000), "00DB"), rng.choice(codes)
        doc = {
            "device_id": device,
            "alert_code": code,
            "recipients": [supplier, dno] if i % 2 else [supplier],
            "region": REGIONS[i % 3],
            "raised_at_ms": 1_700_000_000_000 + i,
            "payload": "AAECAwQFBgcICQ==",
        }
        out.append((device.encode(), orjson.dumps(doc)))
    return out


async def produce_records(
    kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]
) -> None:
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for start in range(0, len(records), 20_000):
            batch = producer.batch()
            for key, value in records[start : start + 20_000]:
                batch.add(topic, key, value)
            await producer.send(batch)


def always_active_traffic() -> TrafficControl:
    """Traffic management active from the first view (T = 0) with allocations no User
    reaches: every request takes the active decision path and is counted, none throttled."""
    control = TrafficControl(new_peer_id())
    control.manager = TrafficManager(
        TrafficPolicy(
            capacity_per_s=10_000_000,
            operating_threshold_per_s=0,
            default_allocation=Allocation(rate_per_s=1_000_000, burst=1_000),
        ),
        peer_id=control.peer_id,
    )
    # Active now, not only after the first exchange of load on dcc.load: the in-memory
    # benchmarks (tests/bench/bench_adt.py --router) have no exchange.
    control.manager.update_view(SystemView(at_s=time.time(), admitted_per_s=0.0))
    return control


def bench_adt_values(now_s: float) -> tuple[dict[str, AdtValues], AdtValues]:
    """ADT values like a real deployment's, none of them reached by the benchmark: per User,
    a threshold on every SRV it sends and on "*", each over a minute, an hour and a day, and
    value rules on 2.2 (an amount) and 11.3 (an activation date, SECMP0007); DCC-wide, a
    threshold per SRV over the same three windows. Each request meets 9 count windows."""
    del now_s  # the values do not depend on the time; the argument keeps the signature honest
    by_role = _srvs_by_role()
    huge = 1_000_000_000
    rules = (
        ValueRule(srv="2.2", field="amount", min=0, max=100_000),
        ValueRule(srv="11.3", field="activation_datetime", max_days_ahead=3_650),
    )
    users = {}
    for user, roles in bench_users().items():
        srvs = sorted({srv for role in roles for srv, _ in by_role[role]} | {"*"})
        thresholds = tuple(
            Threshold(srv=srv, window_s=w, max=huge) for srv in srvs for w in ADT_WINDOWS_S
        )
        users[user] = AdtValues(thresholds=thresholds, value_rules=rules)
    every_srv = sorted(load_catalogue())
    dcc = AdtValues(
        thresholds=tuple(
            Threshold(srv=srv, window_s=w, max=huge) for srv in every_srv for w in ADT_WINDOWS_S
        )
    )
    return users, dcc


async def bench_router(
    settings: Settings, kafka: KafkaSettings, *, traffic: bool, adt: bool
) -> RouterService:
    """A router as the benchmark runs it, on a consumer group and a state topic of its own
    (restoring the replay memory an earlier run wrote would refuse every request as a
    replay, E102, and measure the rejection path): the benchmark's Users registered in
    their roles, replay protection on; with `traffic`, traffic management active for every
    request (nobody throttled); with `adt`, ADT values like a real deployment's."""
    group = f"bench-router-{uuid.uuid4().hex[:8]}"
    state = f"{settings.topics.state_router}.{group}"
    spec = next(
        s
        for s in settings.topics.specs(partitions=settings.partitions)
        if s.name == settings.topics.state_router
    )
    await ensure_topics(kafka, [msgspec.structs.replace(spec, name=state)])
    metrics = CommonMetrics(CollectorRegistry(), version=dccgate_version())
    loop = build_router(
        settings,
        kafka,
        metrics,
        group_id=group,
        state_topic=state,
        traffic=always_active_traffic() if traffic else None,
    )
    if loop.validator is not None:  # the benchmark's Users, registered in their roles
        loop.validator.set_users(bench_users())
    if adt and loop.adt is not None:
        users, dcc = bench_adt_values(time.time())
        for user, values in users.items():
            loop.adt.engine.set_user_values(user, values)
        loop.adt.engine.set_dcc_values(dcc)
        loop.adt.configured = True
    return loop


async def time_router(
    settings: Settings, kafka: KafkaSettings, n: int, *, traffic: bool, adt: bool = False
) -> float:
    """Seconds from the router's first batch to the commit of the n-th record."""
    loop = await bench_router(settings, kafka, traffic=traffic, adt=adt)
    return await _timed(loop.run, loop.status, n)


async def _timed(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], status: LoopStatus, n: int
) -> float:
    """Run a service until it has committed `n` records; seconds from the start of its
    first batch's decisions (after the assignment's restore of its state, which the
    pass-through has none of) to the commit of the last."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        while status.records < n:
            if task.done():
                task.result()
                raise RuntimeError("the service stopped before the input was processed")
            await asyncio.sleep(0.002)
        first = status.first_batch_started
        last = status.last_batch_done
        if first is None or last is None:
            raise RuntimeError("the service reported no batch")
        return last - first
    finally:
        stop.set()
        await task


BENCH_EXCLUSIONS = ("8F3F", "8F75")
"""The codes `alerts_all_checks` excludes from storm protection: tamper detected and strong
magnetic field, which a supplier wants every time."""

_WATCHED_DEVICES = 10_000


def alerts_all_checks(processor: AlertProcessor, now_s: float) -> None:
    """Turn on everything an alert worker in production has, none of it reached by
    `make_alerts`' input except the storm it is meant to catch: a storm policy with code
    groups (battery codes, firmware codes, the default for the rest), two excluded codes
    (`BENCH_EXCLUSIONS`), regional capacity for the three regions far above the input rate
    with high-priority codes, and the MP102 rule on, watching 10,000 devices that were just
    sent 11.3 (devices outside the input, so every outage alert is looked up and none is
    held: a held alert would hold its offset back past the end of the run)."""
    battery = StormParams(window_s=600, max_alerts=10, period_s=600)
    firmware = StormParams(window_s=3_600, max_alerts=5, period_s=1_800)
    processor.guard.set_policy(
        StormPolicy(
            default=StormParams(window_s=600, max_alerts=10, period_s=600),
            per_code={
                "8F1F": battery,
                "8F73": battery,
                "8F1C": firmware,
                "8F72": firmware,
                "8F89": firmware,
                "8F8A": firmware,
            },
        )
    )
    processor.set_exclusions(BENCH_EXCLUSIONS, version=1)
    unlimited = RegionCapacity(rate_per_s=10_000_000, burst=10_000_000)
    processor.set_capacity(
        RegionalPolicy(
            regions=dict.fromkeys(REGIONS, unlimited), high_priority_codes=frozenset({"AD1"})
        )
    )
    processor.set_mp102(CorrelationPolicy(enabled=True))
    for n in range(_WATCHED_DEVICES):
        processor.note_firmware_activation(_eui(n, "00DD"), now_s)


async def _alerts(run: BenchRun, n: int, *, regional: bool, everything: bool = False) -> float:
    """Seconds from the alert worker's first batch to the commit of the n-th record; with
    `regional`, regional capacity on for the three regions, far above the input rate
    (every alert passes the gate, none waits); with `everything`, every check on
    (`alerts_all_checks`). Each run gets a storm changelog of its own, so it does not
    restore the storms of the run before."""
    group = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    topics = msgspec.structs.replace(run.topics, state_alerts=f"{run.topics.state_alerts}.{group}")
    specs = run.topics.specs(partitions=run.settings.partitions)
    spec = next(s for s in specs if s.name == run.topics.state_alerts)
    await ensure_topics(run.kafka, [msgspec.structs.replace(spec, name=topics.state_alerts)])
    metrics = CommonMetrics(CollectorRegistry(), version=dccgate_version())
    service = AlertService(topics=topics, kafka=run.kafka, metrics=metrics, group_id=group)
    if regional:
        unlimited = RegionCapacity(rate_per_s=10_000_000, burst=10_000_000)
        service.processor.set_capacity(RegionalPolicy(regions=dict.fromkeys(REGIONS, unlimited)))
    if everything:
        alerts_all_checks(service.processor, time.time())
    return await _timed(service.run, service.status, n)


class BenchRun(msgspec.Struct, frozen=True, kw_only=True):
    """Where one benchmark runs: its settings, topics and broker."""

    settings: Settings
    kafka: KafkaSettings
    topics: Topics
    passthrough_out: str
    bootstrap: str
    embedded: bool


@contextlib.asynccontextmanager
async def bench_run(settings: Settings) -> AsyncIterator[BenchRun]:
    """The embedded broker (unless `settings.bootstrap`) and a fresh set of topics."""
    broker = None
    if settings.bootstrap is None:
        broker = EmbeddedBroker()
        await broker.start()
        bootstrap, embedded = broker.bootstrap, True
    else:
        bootstrap, embedded = settings.bootstrap, False
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        run_settings = msgspec.structs.replace(settings, topic_prefix=prefix)
        kafka = run_settings.kafka(bootstrap, embedded=embedded)
        await check_access(
            kafka.bootstrap,
            kafka.security,
            client_id=kafka.client_id,
            timeout_ms=kafka.request_timeout_ms,
        )
        # --exactly-once: the routers and alert workers measured run with transactions
        # (auto: where the broker has them); the pass-through never does.
        kafka = await resolve_exactly_once(kafka, settings.exactly_once, embedded=embedded)
        topics = run_settings.topics
        specs = topics.specs(partitions=settings.partitions)
        pt_out = f"{prefix}passthrough.out"
        specs.append(
            specs[0].__class__(
                name=pt_out, partitions=settings.partitions, replication_factor=1, configs={}
            )
        )
        await ensure_topics(kafka, specs)
        yield BenchRun(
            settings=run_settings,
            kafka=kafka,
            topics=topics,
            passthrough_out=pt_out,
            bootstrap=bootstrap,
            embedded=embedded,
        )
    finally:
        if broker is not None:
            await broker.stop()


async def bench(
    settings: Settings, *, messages: int, repeat: int = 3, checks: str = "all"
) -> dict[str, object]:
    """Run the loops on the same `messages` records, alternating, `repeat` times each
    (each run with a consumer group of its own); return the medians and every sample.
    With `checks="all"` (the default) also the router with every check a production router
    has on: registered Users and roles, replay protection, traffic management active, ADT
    values like a real deployment's (`bench_adt_values`)."""
    async with bench_run(settings) as run:
        kafka, topics, pt_out = run.kafka, run.topics, run.passthrough_out
        run_settings, bootstrap, embedded = run.settings, run.bootstrap, run.embedded
        records = make_requests(messages)
        t0 = time.perf_counter()
        await produce_records(kafka, topics.sr_inbound, records)
        produce_s = time.perf_counter() - t0
        pt_rates: list[float] = []
        router_rates: list[float] = []
        traffic_rates: list[float] = []
        all_rates: list[float] = []
        for _ in range(repeat):
            pt_rates.append(
                messages / await passthrough(kafka, topics.sr_inbound, pt_out, messages)
            )
            router_rates.append(
                messages / await time_router(run_settings, kafka, messages, traffic=False)
            )
            traffic_rates.append(
                messages / await time_router(run_settings, kafka, messages, traffic=True)
            )
            if checks == "all":
                all_rates.append(
                    messages
                    / await time_router(run_settings, kafka, messages, traffic=True, adt=True)
                )
        pt_rate = statistics.median(pt_rates)
        router_rate = statistics.median(router_rates)
        traffic_rate = statistics.median(traffic_rates)
        result: dict[str, object] = {
            "messages": messages,
            "bootstrap": bootstrap,
            "embedded_broker": embedded,
            "exactly_once": kafka.exactly_once,
            "partitions": settings.partitions,
            "max_poll_records": kafka.max_poll_records,
            "input_produce_msgs_per_s": round(messages / produce_s),
            "passthrough_msgs_per_s": round(pt_rate),
            "router_msgs_per_s": round(router_rate),
            "ratio": round(router_rate / pt_rate, 3),
            "repeat": repeat,
            "passthrough_samples": [round(r) for r in pt_rates],
            "router_samples": [round(r) for r in router_rates],
            "router_traffic_msgs_per_s": round(traffic_rate),
            "traffic_ratio": round(traffic_rate / pt_rate, 3),
            "router_traffic_samples": [round(r) for r in traffic_rates],
            "checks": checks,
            "python": sys.version.split()[0],
            "version": dccgate_version(),
        }
        if all_rates:
            all_rate = statistics.median(all_rates)
            result["router_all_checks_msgs_per_s"] = round(all_rate)
            result["all_checks_ratio"] = round(all_rate / pt_rate, 3)
            result["router_all_checks_samples"] = [round(r) for r in all_rates]
        return result


async def bench_alerts(
    settings: Settings, *, messages: int, repeat: int = 3, checks: str = "all"
) -> dict[str, object]:
    """The alert worker against the pass-through loop on the same `messages` alerts
    (`make_alerts`), alternating, `repeat` times each: plain, with regional capacity on,
    and with `checks="all"` (the default) with every check on (`alerts_all_checks`).
    Returns the medians and every sample."""
    async with bench_run(settings) as run:
        records = make_alerts(messages)
        t0 = time.perf_counter()
        await produce_records(run.kafka, run.topics.alerts_inbound, records)
        produce_s = time.perf_counter() - t0
        samples: dict[str, list[float]] = {
            "passthrough": [],
            "alerts": [],
            "regional": [],
            "all": [],
        }
        for _ in range(repeat):
            samples["passthrough"].append(
                messages
                / await passthrough(
                    run.kafka, run.topics.alerts_inbound, run.passthrough_out, messages
                )
            )
            for name, regional in (("alerts", False), ("regional", True)):
                seconds = await _alerts(run, messages, regional=regional)
                samples[name].append(messages / seconds)
            if checks == "all":
                seconds = await _alerts(run, messages, regional=True, everything=True)
                samples["all"].append(messages / seconds)
        pt_rate = statistics.median(samples["passthrough"])
        rate = statistics.median(samples["alerts"])
        regional_rate = statistics.median(samples["regional"])
        result: dict[str, object] = {
            "service": "alerts",
            "messages": messages,
            "bootstrap": run.bootstrap,
            "embedded_broker": run.embedded,
            "exactly_once": run.kafka.exactly_once,
            "partitions": settings.partitions,
            "max_poll_records": run.kafka.max_poll_records,
            "input_produce_msgs_per_s": round(messages / produce_s),
            "passthrough_msgs_per_s": round(pt_rate),
            "alerts_msgs_per_s": round(rate),
            "ratio": round(rate / pt_rate, 3),
            "alerts_regional_msgs_per_s": round(regional_rate),
            "regional_ratio": round(regional_rate / pt_rate, 3),
            "repeat": repeat,
            "passthrough_samples": [round(r) for r in samples["passthrough"]],
            "alerts_samples": [round(r) for r in samples["alerts"]],
            "alerts_regional_samples": [round(r) for r in samples["regional"]],
            "checks": checks,
            "python": sys.version.split()[0],
            "version": dccgate_version(),
        }
        if samples["all"]:
            all_rate = statistics.median(samples["all"])
            result["alerts_all_checks_msgs_per_s"] = round(all_rate)
            result["all_checks_ratio"] = round(all_rate / pt_rate, 3)
            result["alerts_all_checks_samples"] = [round(r) for r in samples["all"]]
        return result


def run_bench(
    settings: Settings,
    *,
    messages: int,
    repeat: int,
    as_json: bool,
    service: str = "router",
    checks: str = "all",
) -> int:
    """CLI wrapper: print the figures (and a last JSON line with --json)."""
    if messages < 1000:
        sys.stderr.write("dccgate bench: --messages must be at least 1000\n")
        return 2
    from workers.runtime.process import run

    if repeat < 1:
        sys.stderr.write("dccgate bench: --repeat must be at least 1\n")
        return 2
    if service == "alerts":
        result = run(bench_alerts(settings, messages=messages, repeat=repeat, checks=checks))
        print(
            f"messages            {result['messages']} alerts x {repeat} runs each, "
            "alternating; medians:\n"
            f"pass-through        {result['passthrough_msgs_per_s']:>10} msg/s  "
            "(aiokafka: getmany, send each, gather acks, commit)\n"
            f"alert worker        {result['alerts_msgs_per_s']:>10} msg/s  "
            "(decode, storm protection, 1.5 outputs per alert, storm changelog, commit)\n"
            f"ratio               {result['ratio']:>10}\n"
            f"alerts + regional   {result['alerts_regional_msgs_per_s']:>10} msg/s  "
            "(every alert through the regional gate, none waiting)\n"
            f"ratio with regional {result['regional_ratio']:>10}\n"
            f"samples             pass-through {result['passthrough_samples']}, "
            f"alerts {result['alerts_samples']}, with regional "
            f"{result['alerts_regional_samples']}"
        )
        if "alerts_all_checks_msgs_per_s" in result:
            print(
                f"alerts, all checks  {result['alerts_all_checks_msgs_per_s']:>10} msg/s  "
                "(storm policy with code groups, exclusions, regional capacity, MP102 on)\n"
                f"ratio, all checks   {result['all_checks_ratio']:>10}   (target >= 0.8)\n"
                f"samples, all checks {result['alerts_all_checks_samples']}"
            )
        if as_json:
            print(orjson.dumps(result).decode())
        return 0
    result = run(bench(settings, messages=messages, repeat=repeat, checks=checks))
    print(
        f"messages            {result['messages']} x {repeat} runs each, alternating; medians:\n"
        f"pass-through        {result['passthrough_msgs_per_s']:>10} msg/s  "
        "(aiokafka: getmany, send each, gather acks, commit)\n"
        f"router              {result['router_msgs_per_s']:>10} msg/s  "
        "(decode, DUIS validation, forward + answer, acks, commit)\n"
        f"ratio               {result['ratio']:>10}   (target >= 0.8)\n"
        f"router + traffic    {result['router_traffic_msgs_per_s']:>10} msg/s  "
        "(SECMP0067 active for every request, nobody throttled)\n"
        f"ratio with traffic  {result['traffic_ratio']:>10}\n"
        f"samples             pass-through {result['passthrough_samples']}, "
        f"router {result['router_samples']}, with traffic {result['router_traffic_samples']}"
    )
    if "router_all_checks_msgs_per_s" in result:
        print(
            f"router, all checks  {result['router_all_checks_msgs_per_s']:>10} msg/s  "
            "(registered roles, replay, traffic, 9 ADT windows + value rules per request)\n"
            f"ratio, all checks   {result['all_checks_ratio']:>10}   (target >= 0.8)\n"
            f"samples, all checks {result['router_all_checks_samples']}"
        )
    if as_json:
        print(orjson.dumps(result).decode())
    return 0
