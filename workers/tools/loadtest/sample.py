"""A synthetic, seeded run fed straight into a ResultCollector: no gateway, no Kafka.

For previews of the report page, its tests (including the headless-browser one) and the
documentation: it exercises every part of the report (outcomes of every kind, a runaway
User quarantined, a noisy one throttled, installs failing in the North, an alert storm,
dead letters and timeline events). The numbers are made up; the shapes are plausible.
"""

from __future__ import annotations

import random

from workers.tools.loadtest.report_schema import LoadTestReport
from workers.tools.loadtest.results import ResultCollector

__all__ = ["sample_report"]

_REGIONS = ("north", "central", "south")
_SRVS = ("4.1.1", "4.6.1", "4.8.1", "6.15.1", "7.2", "11.1", "4.17")
_STEPS = ("pre_notification", "hub_install", "han_log", "commission", "credentials")


def _user(i: int) -> str:
    return f"90-B3-D5-1F-30-{i // 256:02X}-{i % 256:02X}-00"


def sample_report(
    *, seed: int = 7, duration_s: float = 60.0, rate_per_s: float = 400.0
) -> LoadTestReport:
    """The report of a synthetic run of `duration_s` seconds at about `rate_per_s` requests."""
    rnd = random.Random(seed)
    c = ResultCollector(scenario="sample", seed=seed, scale=1.0, duration_s=duration_s)
    users = [_user(i) for i in range(1, 31)]
    runaway, noisy = users[6], users[2]
    c.event(0.0, "phase", "ramp-up")
    c.event(duration_s * 0.33, "fault", f"runaway User {runaway} loops SRV 7.2")
    c.event(duration_s * 0.5, "throttling", f"{noisy} over its allocation")
    c.event(duration_s * 0.58, "storm", "device 00-DB-12-34-56-78-90-A0 storms 8F35")
    c.event(duration_s * 0.9, "phase", "drain")
    t = 0.0
    while t < duration_s:
        load = 1.0 + 0.6 * (duration_s * 0.4 < t < duration_s * 0.7)
        t += rnd.expovariate(rate_per_s * load)
        user = runaway if t > duration_s * 0.33 and rnd.random() < 0.15 else rnd.choice(users)
        user = noisy if duration_s * 0.5 < t < duration_s * 0.75 and rnd.random() < 0.2 else user
        srv = "7.2" if user == runaway else rnd.choice(_SRVS)
        c.request_sent(t, user, srv)
        gateway_s = rnd.lognormvariate(-6.2, 0.5) * load
        outcome, code, rule = "accepted", "I99", None
        if user == runaway and t > duration_s * 0.4:
            outcome, code, rule = "quarantined", "Q1", f"user:{runaway}:7.2:3600"
        elif user == noisy and duration_s * 0.5 < t < duration_s * 0.75 and rnd.random() < 0.6:
            outcome, code, rule = "throttled", "T1", f"allocation:{noisy}"
        elif rnd.random() < 0.01:
            outcome, code, rule = "rejected", "E102", "duis.counter_not_increasing"
        c.request_answered(t + gateway_s, user, srv, outcome, code, rule, gateway_s)
        if outcome == "accepted":
            region = rnd.choice(_REGIONS)
            e2e_s = gateway_s + rnd.lognormvariate(-1.5, 0.6) * (1.8 if region == "north" else 1)
            c.request_completed(t + e2e_s, user, srv, region, rnd.random() > 0.02, e2e_s)
        if rnd.random() < 0.02:
            region = rnd.choice(_REGIONS)
            ok = rnd.random() > (1 / 6 if region == "north" else 0.04)
            c.install_finished(t, region, ok, None if ok else rnd.choice(_STEPS))
        if rnd.random() < 0.005:
            ok = rnd.random() > 0.05
            c.firmware_finished(t, "central", ok, None if ok else "11.3 activate firmware")
        if rnd.random() < 0.05:
            region, code = rnd.choice(_REGIONS), rnd.choice(("8F1C", "8F36", "AD1"))
            c.alert_raised(t, region, code)
            c.alert_delivered(t + 0.01, region, code, None, 0)
        if rnd.random() < 0.001:
            c.deadlettered(t, rnd.choice(("invalid_json", "invalid_schema")))
    storm_at = duration_s * 0.58
    for i in range(3000):
        c.alert_raised(storm_at + i * 0.004, "north", "8F35")
    for i in range(5):
        c.alert_delivered(storm_at + 0.01 * i, "north", "8F35", None, 0)
    periodic = [1200, 1100, 694]
    for k, count in enumerate(periodic):
        c.alert_delivered(storm_at + 1 + 4 * k, "north", "8F35", "periodic", count)
    c.alert_delivered(storm_at + 14, "north", "8F35", "final", sum(periodic))
    return c.finish(
        duration_s + 0.5,
        gateway=_gateway_metrics(c, runaway, noisy, rate_per_s),
        started_at_unix_s=1_795_000_000.0,
    )


def _gateway_metrics(
    c: ResultCollector, runaway: str, noisy: str, rate_per_s: float
) -> dict[str, object]:
    """What `gateway.scrape_metrics` would have kept from the gateway of such a run."""
    outcomes = c.progress().outcomes
    codes = {"accepted": "I99", "throttled": "T1", "quarantined": "Q1", "rejected": "E102"}
    metrics: dict[str, object] = {
        "dccgate_traffic_active": 0.0,
        "dccgate_traffic_threshold_requests_per_second": 250.0,
        "dccgate_traffic_capacity_requests_per_second": 1000.0,
        "dccgate_traffic_admitted_requests_per_second": rate_per_s * 0.93,
        "dccgate_traffic_activations_total": 1.0,
        "dccgate_traffic_active_seconds_total": 14.87,
        f'dccgate_traffic_user_allocation_requests_per_second{{user="{noisy}"}}': 50.0,
        f'dccgate_traffic_user_allocation_requests_per_second{{user="{runaway}"}}': 100.0,
        f'dccgate_router_user_decisions_total{{outcome="throttled",user="{noisy}"}}': float(
            outcomes.get("throttled", 0)
        ),
        f'dccgate_router_user_decisions_total{{outcome="quarantined",user="{runaway}"}}': float(
            outcomes.get("quarantined", 0)
        ),
        'dccgate_adt_quarantined_total{kind="user_adt",srv="7.2"}': float(
            outcomes.get("quarantined", 0)
        ),
        "dccgate_alerts_active_storms": 0.0,
        'dccgate_consumer_lag_records{partition="0",service="router",topic="dcc.sr.inbound"}': 3.0,
        'dccgate_consumer_lag_records{partition="1",service="router",topic="dcc.sr.inbound"}': 0.0,
    }
    for outcome, code in codes.items():
        key = f'dccgate_router_decisions_total{{code="{code}",outcome="{outcome}"}}'
        metrics[key] = float(outcomes.get(outcome, 0))
    return metrics
