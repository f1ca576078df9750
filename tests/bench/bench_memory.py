"""Resident memory of a router and an alert worker holding a large state (issue 17 item 6).

A plain script, not a test (STYLE.md rule 19): it asserts nothing and prints figures for
docs/benchmarks.md. Run from the repository root:

    .venv/bin/python tests/bench/bench_memory.py                # about 3 minutes of CPU
    .venv/bin/python tests/bench/bench_memory.py --quick        # a tenth of the state
    .venv/bin/python tests/bench/bench_memory.py --tracemalloc  # and what Python allocated

Each part runs in a process of its own (so one part's memory is not in the other's figure)
and fills the state the way the service does, through the service's own `process` on
in-memory records in batches of 2,000 (each batch's outputs are dropped, as the loop drops
them once the broker acknowledged them):

- **router**, every check on: 10,000 registered Users, each with ADT values like a real
  User's (a threshold over a minute, an hour and a day on each of the 4 SRVs it sends and
  on "*", value rules on 2.2 and 11.3) plus DCC-wide thresholds on every SRV, traffic
  management active (nobody throttled), replay protection on, the ADT state store writing
  its per-key snapshots; 1,000,000 accepted requests, each to a device of its own, so the
  anti-replay memory ends with 1,000,000 (User, device) pairs and every User's ADT windows
  are in use;
- **alert worker**, every check on (`workers.tools.bench.alerts_all_checks`: storm policy,
  exclusions, regional capacity, MP102): 1,000,000 alerts, each from a device of its own,
  inside one storm window, so storm protection ends tracking 1,000,000 (device, code) keys
  (its default bound, `max_keys`).

Figures: the process's resident set (VmRSS, and its peak VmHWM, from /proc/self/status)
after start-up (imports, the catalogue), after configuration (Users, ADT values, policies:
for the router mostly the 10,000 Users' compiled ADT values), and after the state is
filled (each after a full `gc.collect`); the last difference is what the state costs.
With `--tracemalloc`, also the bytes Python allocated for it (tracemalloc slows the fill
down several times). Resident size includes what the allocator keeps after freeing, so it
is the figure to size a container with.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator

import orjson
from prometheus_client import CollectorRegistry

from adt import AdtValues, Threshold, ValueRule
from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.topics import Topics
from workers.alerts import AlertProcessor
from workers.alerts.metrics import AlertMetrics
from workers.config.codes import ResponseCodes
from workers.config.settings import Settings
from workers.duis import DuisValidator, load_catalogue
from workers.router.adt import AdtControl
from workers.router.adt_state import AdtStateStore
from workers.router.processor import RouterMetrics, RouterProcessor
from workers.runtime.metrics import CommonMetrics
from workers.tools.bench import ADT_WINDOWS_S, alerts_all_checks, always_active_traffic

_TOPICS = Topics.with_prefix("")
_BATCH = 2_000
_PARTITIONS = 6
_T0_MS = 1_700_000_000_000
_HUGE = 1_000_000_000
_SRVS_PER_USER = 4
_BODIES: dict[str, dict[str, object]] = {
    "2.2": {"amount": 125.5},
    "11.3": {"activation_datetime": "2026-01-02T03:04:05Z"},
}


class _Record:
    """A consumed record as the loop hands it to `process` (`broker.consumer.Record`)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = _T0_MS
        self.key: bytes | None = key
        self.value: bytes | None = value
        self.headers: tuple[tuple[str, bytes], ...] = ()


def _eui(n: int, prefix: str) -> str:
    raw = f"{prefix}{n:0{16 - len(prefix)}X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _resident() -> dict[str, float]:
    gc.collect()
    return {"rss_mib": _status_kib("VmRSS") / 1024, "peak_mib": _status_kib("VmHWM") / 1024}


def _batches(
    n: int, make: Callable[[int], tuple[bytes, bytes]], topic: str
) -> Iterator[dict[TopicPartition, list[Record]]]:
    for start in range(0, n, _BATCH):
        records: dict[TopicPartition, list[Record]] = {}
        for i in range(start, min(n, start + _BATCH)):
            key, value = make(i)
            tp = TopicPartition(topic, i % _PARTITIONS)
            records.setdefault(tp, []).append(_Record(topic, tp.partition, i, key, value))
        yield records


def _router_part(requests: int, users: int) -> dict[str, object]:
    start = _resident()
    rng = random.Random(1)
    catalogue = load_catalogue()
    by_role: dict[str, list[tuple[str, int]]] = {}
    for entry in catalogue.values():
        for role in entry.roles:
            by_role.setdefault(role, []).append((entry.srv, min(entry.allowed_command_variants)))
    roles = sorted(r for r, srvs in by_role.items() if len(srvs) >= _SRVS_PER_USER)
    plan: list[tuple[str, str, list[tuple[str, int]]]] = []
    for u in range(users):
        role = rng.choice(roles)
        plan.append((_eui(0x90B3D51F000000 + u, ""), role, rng.sample(by_role[role], 4)))
    settings = Settings()
    validator = DuisValidator(catalogue, replay_pairs_per_user=settings.replay_pairs_per_user)
    validator.set_users({user: [role] for user, role, _ in plan})
    adt = AdtControl()
    rules = (
        ValueRule(srv="2.2", field="amount", min=0, max=100_000),
        ValueRule(srv="11.3", field="activation_datetime", max_days_ahead=3_650),
    )
    for user, _, srvs in plan:
        names = sorted({srv for srv, _ in srvs} | {"*"})
        adt.engine.set_user_values(
            user,
            AdtValues(
                thresholds=tuple(
                    Threshold(srv=s, window_s=w, max=_HUGE) for s in names for w in ADT_WINDOWS_S
                ),
                value_rules=rules,
            ),
        )
    adt.engine.set_dcc_values(
        AdtValues(
            thresholds=tuple(
                Threshold(srv=s, window_s=w, max=_HUGE)
                for s in sorted(catalogue)
                for w in ADT_WINDOWS_S
            )
        )
    )
    adt.configured = True
    kafka = settings.kafka("127.0.0.1:9", embedded=True)  # never connected: no restore here
    state = AdtStateStore(kafka, _TOPICS.sr_inbound, _TOPICS.state_router, adt, validator)
    processor = RouterProcessor(
        topics=_TOPICS,
        validator=validator,
        codes=ResponseCodes(),
        metrics=RouterMetrics(CommonMetrics(CollectorRegistry(), version="bench")),
        traffic=always_active_traffic(),
        adt=adt,
        adt_state=state,
    )

    def make(i: int) -> tuple[bytes, bytes]:
        user, role, srvs = plan[i % users]
        srv, cv = srvs[(i // users) % len(srvs)]
        target = _eui(i, "00DB")
        doc = {
            "request_id": f"{user}:{target}:{_T0_MS + i}",
            "user_role": role,
            "srv": srv,
            "command_variant": cv,
            "body": _BODIES.get(srv, {"note": "bench"}),
        }
        return user.encode(), orjson.dumps(doc)

    def fill() -> dict[str, int]:
        outcomes = {"accepted": 0, "other": 0}
        for n, batch in enumerate(_batches(requests, make, _TOPICS.sr_inbound)):
            # 60,000 requests a second: the whole run spans about 17 s of ADT time.
            now_ms = _T0_MS + n * _BATCH * 1_000 // 60_000
            out = OutputBatch(dict.fromkeys(_TOPICS.all(), _PARTITIONS))
            tally = processor.process(batch, out, now_ms)
            processor.after_send(tally, now_ms)
            accepted = sum(
                n for (outcome, _), n in tally.decisions.items() if outcome == "accepted"
            )
            outcomes["accepted"] += accepted
            outcomes["other"] += sum(len(b) for b in batch.values()) - accepted
        return outcomes

    result = _measure(fill)
    result.update(
        rss_start_mib=round(start["rss_mib"], 1),
        part="router",
        requests=requests,
        users=users,
        replay_pairs=len(validator),
    )
    return result


def _alerts_part(devices: int) -> dict[str, object]:
    start = _resident()
    processor = AlertProcessor(
        topics=_TOPICS, metrics=AlertMetrics(CommonMetrics(CollectorRegistry(), version="b"))
    )
    alerts_all_checks(processor, _T0_MS / 1000)
    processor.set_changelog(_TOPICS.state_alerts)
    codes = ("8F1D", "8F35", "8F36", "8F43", "8F84", "AD1")
    supplier, dno = _eui(0x90B3D51F300001, ""), _eui(0x90B3D51F300002, "")

    def make(i: int) -> tuple[bytes, bytes]:
        device = _eui(i, "00DB")
        doc = {
            "device_id": device,
            "alert_code": codes[i % len(codes)],
            "recipients": [supplier, dno] if i % 2 else [supplier],
            "region": ("north", "central", "south")[i % 3],
            "raised_at_ms": _T0_MS + i,
            "payload": "AAECAwQFBgcICQ==",
        }
        return device.encode(), orjson.dumps(doc)

    def fill() -> dict[str, int]:
        for n, batch in enumerate(_batches(devices, make, _TOPICS.alerts_inbound)):
            # 10,000 alerts a second: the whole run spans 100 s, inside one storm window.
            now_ms = _T0_MS + n * _BATCH // 10
            out = OutputBatch(dict.fromkeys(_TOPICS.all(), _PARTITIONS))
            tally = processor.process(batch, out, now_ms)
            processor.after_send(tally, now_ms)
        return {"tracked_keys": processor.guard.tracked_keys}

    result = _measure(fill)
    result.update(rss_start_mib=round(start["rss_mib"], 1), part="alerts", alerts=devices)
    return result


def _measure(fill: Callable[[], dict[str, int]]) -> dict[str, object]:
    traced = "--tracemalloc" in sys.argv
    before = _resident()
    if traced:
        tracemalloc.start()
    started = time.process_time()
    counts = fill()
    cpu_s = time.process_time() - started
    python_mib = None
    if traced:
        gc.collect()
        python_mib = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
    after = _resident()
    return {
        **counts,
        "rss_before_mib": round(before["rss_mib"], 1),
        "rss_after_mib": round(after["rss_mib"], 1),
        "state_rss_mib": round(after["rss_mib"] - before["rss_mib"], 1),
        "peak_mib": round(after["peak_mib"], 1),
        "python_allocated_mib": None if python_mib is None else round(python_mib, 1),
        "fill_cpu_s": round(cpu_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the state")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace allocations")
    parser.add_argument("--part", choices=["router", "alerts"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    if args.part == "router":
        print(json.dumps(_router_part(1_000_000 // scale, 10_000 // scale)))
        return
    if args.part == "alerts":
        print(json.dumps(_alerts_part(1_000_000 // scale)))
        return
    for part in ("router", "alerts"):
        command = [sys.executable, __file__, "--part", part]
        command += [a for a in ("--quick", "--tracemalloc") if getattr(args, a[2:])]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result))
        if part == "router":
            print(
                f"router: {result['requests']:,} requests of {result['users']:,} Users, "
                f"{result['replay_pairs']:,} replay pairs; resident {result['rss_start_mib']} "
                f"MiB at start, {result['rss_before_mib']} MiB configured -> "
                f"{result['rss_after_mib']} MiB "
                f"(+{result['state_rss_mib']} MiB, peak {result['peak_mib']} MiB)"
            )
        else:
            print(
                f"alerts: {result['alerts']:,} alerts, {result['tracked_keys']:,} tracked keys; "
                f"resident {result['rss_start_mib']} MiB at start, {result['rss_before_mib']} "
                "MiB configured -> "
                f"{result['rss_after_mib']} MiB (+{result['state_rss_mib']} MiB, peak "
                f"{result['peak_mib']} MiB)"
            )
        if result["python_allocated_mib"] is not None:
            print(f"        Python allocations held: {result['python_allocated_mib']} MiB")


if __name__ == "__main__":
    main()
