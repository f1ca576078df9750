"""A simulated clock for SECMP0067 traffic management across several routers.

Runs pure `TrafficManager`s the way workers/router/load_exchange.py drives them: each router
publishes `local_report` every `report_s` (0.25 s), reports reach the peers after `delay_s`,
and each router calls `update_view(merge_reports(...))` every `view_s` (0.1 s), the routers'
phases staggered. Users send at constant rates (with optional jitter), each owned by one
router. Time advances in ticks of `tick_s`; nothing reads a clock.

Used by tests/unit/throttling/test_traffic.py, and runnable to print the figures recorded in
docs/traffic-management.md:

    .venv/bin/python -m tests.unit.throttling.traffic_sim
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from throttling.traffic import (
    Allocation,
    LoadReport,
    TrafficManager,
    TrafficPolicy,
    merge_reports,
)

START_S = 1_795_000_000.0


@dataclass(frozen=True, kw_only=True)
class SimUser:
    """One User: `rate_per_s` from `start_s` to `stop_s` (seconds after the start), owned by
    router `router`."""

    name: str
    rate_per_s: float
    router: int = 0
    start_s: float = 0.0
    stop_s: float = math.inf


@dataclass(kw_only=True)
class SimResult:
    """What the simulation measured (times are seconds after the start)."""

    duration_s: float
    admitted_at: dict[str, list[float]] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    # (start, end) of each episode of router 0 (end: the run's end while still active).
    episodes: list[tuple[float, float]] = field(default_factory=list)
    activations: list[int] = field(default_factory=list)

    def admitted(self, user: str, start_s: float, end_s: float) -> int:
        """Requests of `user` admitted in [start_s, end_s)."""
        return sum(1 for t in self.admitted_at.get(user, ()) if start_s <= t < end_s)

    def rate(self, user: str, start_s: float, end_s: float) -> float:
        """`user`'s admitted rate over [start_s, end_s), requests per second."""
        return self.admitted(user, start_s, end_s) / (end_s - start_s)

    def total_rate(self, start_s: float, end_s: float) -> float:
        """The system admitted rate over [start_s, end_s), requests per second."""
        return sum(self.rate(user, start_s, end_s) for user in self.admitted_at)


def simulate(
    policy: TrafficPolicy,
    allocations: Mapping[str, Allocation],
    users: Sequence[SimUser],
    *,
    routers: int,
    duration_s: float,
    report_s: float = 0.25,
    view_s: float = 0.1,
    delay_s: float = 0.02,
    tick_s: float = 0.001,
    jitter: float = 0.0,
    seed: int = 0,
    phases: Sequence[float] | None = None,
    send_every_s: float = 0.0,
) -> SimResult:
    """Simulate `routers` routers for `duration_s` seconds; see the module docstring.

    jitter: each tick a User sends rate * tick * (1 + jitter * u), u uniform in [-1, 1]
    (0: evenly spaced). phases: each router's offset of its report and view timers, in
    [0, 1) of an interval (default: evenly staggered). send_every_s: Users send what they
    owe in batches this often, all at one time (0: every tick), as a client that sends a
    batch every 50 ms does; the router decides a batch with one timestamp.
    """
    rng = random.Random(seed)
    managers = [TrafficManager(policy, allocations, peer_id=f"r{p}") for p in range(routers)]
    if phases is None:
        phases = [p / routers for p in range(routers)]
    next_report = [START_S + phases[p] * report_s for p in range(routers)]
    next_view = [START_S + phases[p] * view_s for p in range(routers)]
    # Reports in flight: (delivery time, report); each router keeps the latest per peer.
    in_flight: list[tuple[float, LoadReport]] = []
    latest: list[dict[str, LoadReport]] = [{} for _ in range(routers)]
    owed = dict.fromkeys((u.name for u in users), 0.0)
    result = SimResult(
        duration_s=duration_s,
        admitted_at={u.name: [] for u in users},
        throttled=dict.fromkeys((u.name for u in users), 0),
    )
    episode_start: float | None = None
    ticks = round(duration_s / tick_s)
    send_every = max(1, round(send_every_s / tick_s))
    for k in range(ticks):
        now = START_S + k * tick_s
        elapsed = k * tick_s
        # Deliver the reports due by now.
        if in_flight:
            due = [r for at, r in in_flight if at <= now + 1e-9]
            if due:
                in_flight = [(at, r) for at, r in in_flight if at > now + 1e-9]
                for report in due:
                    for p in range(routers):
                        latest[p][report.peer_id] = report
        for p, manager in enumerate(managers):
            if now >= next_report[p] - 1e-9:
                report = manager.local_report(now)
                latest[p][report.peer_id] = report  # its own at once
                in_flight.append((now + delay_s, report))
                next_report[p] += report_s
            if now >= next_view[p] - 1e-9:
                manager.update_view(merge_reports(latest[p], now, 3 * report_s))
                next_view[p] += view_s
        active = managers[0].active
        if active and episode_start is None:
            episode_start = elapsed
        elif not active and episode_start is not None:
            result.episodes.append((episode_start, elapsed))
            episode_start = None
        for user in users:
            if not user.start_s <= elapsed < user.stop_s:
                continue
            spread = 1.0 + jitter * (2.0 * rng.random() - 1.0) if jitter else 1.0
            owed[user.name] += user.rate_per_s * tick_s * spread
            if k % send_every:
                continue
            manager = managers[user.router]
            while owed[user.name] >= 1.0:
                owed[user.name] -= 1.0
                if manager.decide(user.name, "4.1.1", now).allowed:
                    manager.record_admitted(user.name, "4.1.1", now)
                    result.admitted_at[user.name].append(elapsed)
                else:
                    result.throttled[user.name] += 1
    if episode_start is not None:
        result.episodes.append((episode_start, duration_s))
    result.activations = [m.activations_total for m in managers]
    return result


def noisy_neighbour(
    policy: TrafficPolicy | None = None, *, routers: int = 3, stop_a_s: float = 20.0
) -> tuple[TrafficPolicy, dict[str, Allocation], list[SimUser]]:
    """The scenario of issue 19: T 1,000/s, C 1,500/s; A at 1,500/s, allocation 200/s burst
    50, from 1 s to `stop_a_s`; B and C at 250/s within their 300/s. A on router 0, B on
    router 1 and C on router 2 (modulo `routers`). A's fair share is 1,000 - 500 = 500/s.

    The burst of 50 covers what A sends at once when limited to 500/s in batches every
    50 ms (25): a smaller one holds A below its share (the GCRA admits at most a burst per
    batch, all decided at one time).
    """
    if policy is None:
        policy = TrafficPolicy(
            capacity_per_s=1500.0,
            operating_threshold_per_s=1000.0,
            default_allocation=Allocation(rate_per_s=1e12, burst=1_000_000),
        )
    allocations = {
        "A": Allocation(rate_per_s=200.0, burst=50),
        "B": Allocation(rate_per_s=300.0, burst=50),
        "C": Allocation(rate_per_s=300.0, burst=50),
    }
    users = [
        SimUser(name="A", rate_per_s=1500.0, router=0, start_s=1.0, stop_s=stop_a_s),
        SimUser(name="B", rate_per_s=250.0, router=1 % routers),
        SimUser(name="C", rate_per_s=250.0, router=2 % routers),
    ]
    return policy, allocations, users


def main() -> None:
    """Print the noisy-neighbour figures for docs/traffic-management.md."""
    duration_s, stop_a_s = 30.0, 20.0
    window = (5.0, stop_a_s)
    print("noisy neighbour, simulated: T 1000/s, A 1500/s (allocation 200/s, fair share 500/s),")
    print(
        f"B and C 250/s; A from 1 s to {stop_a_s:.0f} s; "
        f"rates over {window[0]:.0f}-{window[1]:.0f} s;"
    )
    print("reports every 0.25 s delivered in 0.1 s, views every 0.1 s; arrivals: 'even' one at a")
    print("time with +-50% jitter, '50ms' in batches every 50 ms decided at one time")
    print(
        "rule 1      routers  arrivals  A/s    A vs 500  total/s  vs 1000  A/s 1-20 s  episodes"
        "  off_after_s"
    )
    base, _, _ = noisy_neighbour()
    rules = {
        "strict": base.__replace__(exit_margin_ratio=0.0, exit_hold_s=0.0),
        "hysteresis": base,
    }
    for rule, policy in rules.items():
        for routers in (1, 2, 3, 4, 8):
            for arrivals, send_every_s in (("even", 0.0), ("50ms", 0.05)):
                _, allocations, users = noisy_neighbour(routers=routers, stop_a_s=stop_a_s)
                r = simulate(
                    policy,
                    allocations,
                    users,
                    routers=routers,
                    duration_s=duration_s,
                    jitter=0.5,
                    delay_s=0.1,
                    send_every_s=send_every_s,
                )
                a = r.rate("A", *window)
                total = r.total_rate(*window)
                last_off = max((e for _, e in r.episodes), default=0.0) - stop_a_s
                print(
                    f"{rule:10s}  {routers:7d}  {arrivals:8s}  {a:5.0f}  {a / 500 - 1:+8.1%}  "
                    f"{total:7.0f}  {total / 1000 - 1:+7.1%}  {r.rate('A', 1.0, stop_a_s):10.0f}"
                    f"  {len(r.episodes):8d}  {last_off:11.2f}"
                )


if __name__ == "__main__":
    main()
