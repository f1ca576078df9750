"""The results collector: counts, bucketing, percentiles, bounded tables, the finished report."""

from __future__ import annotations

import pickle

import pytest

from workers.tools.loadtest.results import OTHERS, ResultCollector


def _collector(**kwargs: object) -> ResultCollector:
    args: dict[str, object] = {"scenario": "unit", "seed": 1, "scale": 1.0, "duration_s": 10.0}
    args.update(kwargs)
    return ResultCollector(**args)  # type: ignore[arg-type]


def test_counts_per_outcome_user_srv_rule_and_code() -> None:
    c = _collector()
    for i in range(10):
        c.request_sent(0.1 * i, "U1", "4.1.1")
    c.request_sent(0.5, "U2", "7.2")
    for _ in range(7):
        c.request_answered(1.0, "U1", "4.1.1", "accepted", "I99", None, 0.002)
    c.request_answered(1.0, "U1", "4.1.1", "throttled", "T1", "alloc:U1", 0.002)
    c.request_answered(1.0, "U1", "4.1.1", "throttled", "T1", "alloc:U1", 0.002)
    c.request_answered(1.0, "U1", "4.1.1", "mystery", "X9", None, 0.002)
    c.request_answered(1.1, "U2", "7.2", "quarantined", "Q1", "user:U2:7.2:3600", 0.003)

    report = c.finish(2.0, gateway={})
    totals = report.totals
    assert (totals.sent, totals.answered) == (11, 11)
    assert totals.outcomes["accepted"] == 7
    assert totals.outcomes["throttled"] == 2
    assert totals.outcomes["quarantined"] == 1
    assert totals.outcomes["other"] == 1
    assert totals.response_codes == {"I99": 7, "T1": 2, "X9": 1, "Q1": 1}
    users = {row.label: row for row in report.by_user}
    assert users["U1"].sent == 10
    assert users["U1"].answered == 10
    assert users["U1"].outcomes == {"accepted": 7, "throttled": 2, "other": 1}
    assert users["U2"].outcomes == {"quarantined": 1}
    assert [row.label for row in report.by_srv] == ["4.1.1", "7.2"]
    rules = {row.label: row.outcomes for row in report.by_rule}
    assert rules == {"alloc:U1": {"throttled": 2}, "user:U2:7.2:3600": {"quarantined": 1}}


def test_progress_follows_the_calls() -> None:
    c = _collector()
    c.request_sent(0.2, "U1", "4.1.1")
    c.request_answered(0.4, "U1", "4.1.1", "accepted", "I99", None, 0.2)
    c.request_completed(1.4, "U1", "4.1.1", "south", True, 1.2)
    c.install_finished(2.5, "north", False, "commission")
    c.install_finished(2.6, "south", True, None)
    c.alert_raised(3.0, "north", "8F35")
    c.alert_delivered(3.1, "north", "8F35", None, 0)
    p = c.progress()
    assert (p.elapsed_s, p.sent, p.answered, p.completed) == (3.1, 1, 1, 1)
    assert p.outcomes["accepted"] == 1
    assert (p.installs_ok, p.installs_failed) == (1, 1)
    assert (p.alerts_raised, p.alerts_delivered) == (1, 1)


def test_time_buckets() -> None:
    c = _collector(bucket_s=0.5, duration_s=3.0)
    c.request_sent(0.0, "U", "1")
    c.request_sent(0.49, "U", "1")
    c.request_sent(0.5, "U", "1")
    c.request_sent(-0.2, "U", "1")  # before the start (runner clock): first bucket
    c.request_completed(2.9, "U", "1", "south", False, 0.1)
    c.event(1.2, "storm", "device D started storming")
    report = c.finish(3.0, gateway={})
    assert report.bucket_s == 0.5
    assert [b.t_s for b in report.buckets] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [b.sent for b in report.buckets] == [3, 1, 0, 0, 0, 0]
    assert report.buckets[5].completed == 1
    assert report.buckets[2].events == {"storm": 1}
    assert report.totals.completed_failed == 1


def test_a_run_past_its_plan_grows_buckets_up_to_the_cap() -> None:
    c = _collector(duration_s=4.0, bucket_s=1.0, max_buckets=8)
    c.request_sent(5.5, "U", "1")
    c.request_sent(1e6, "U", "1")  # far past the cap: counted in the last bucket
    report = c.finish(1e6, gateway={})
    assert len(report.buckets) == 8
    assert report.buckets[5].sent == 1
    assert report.buckets[7].sent == 1


def test_bucket_width_doubles_to_fit_a_long_run() -> None:
    c = _collector(duration_s=3600.0, bucket_s=1.0, max_buckets=2000)
    assert c.bucket_s == 4.0


def test_gateway_latency_percentiles_of_a_known_distribution() -> None:
    # Latencies 1, 2, ..., 10,000 ms, once each: p50 = 5,000 ms, p99 = 9,900 ms, max 10 s.
    c = _collector()
    for ms in range(1, 10_001):
        c.request_answered(1.0, "U", "1", "accepted", "I99", None, ms / 1000.0)
    summary = c.finish(2.0, gateway={}).gateway_latency
    assert summary.count == 10_000
    assert summary.p50_ms == pytest.approx(5000, rel=1e-3)
    assert summary.p90_ms == pytest.approx(9000, rel=1e-3)
    assert summary.p99_ms == pytest.approx(9900, rel=1e-3)
    assert summary.p999_ms == pytest.approx(9990, rel=1e-3)
    assert summary.max_ms == 10_000.0
    assert summary.mean_ms == pytest.approx(5000.5, rel=1e-3)
    assert summary.hdr.startswith("HISTFAAA")
    assert summary.distribution[0].percentile == 0.0
    assert summary.distribution[-1].percentile == 100.0
    assert summary.distribution[-1].value_ms == pytest.approx(10_000, rel=1e-3)


def test_latency_over_time_per_bucket() -> None:
    c = _collector(duration_s=2.0)
    for i in range(100):
        c.request_answered(0.5, "U", "1", "accepted", "I99", None, 0.001 * (i + 1))
        c.request_completed(1.5, "U", "1", "north", True, 0.1 * (i + 1))
    first, second = c.finish(2.0, gateway={}).buckets
    assert first.gateway_p50_ms == pytest.approx(50, rel=0.01)
    assert first.gateway_p99_ms == pytest.approx(99, rel=0.01)
    assert first.e2e_p50_ms is None
    assert second.gateway_p99_ms is None
    assert second.e2e_p99_ms == pytest.approx(9900, rel=0.01)


def test_top_n_users_and_an_others_row() -> None:
    c = _collector(top_n=3)
    for user in range(10):
        for _ in range(100 - user):  # U0 sends most
            c.request_answered(1.0, f"U{user}", "1", "accepted", "I99", None, 0.001)
    c.request_answered(1.0, "U9", "1", "throttled", "T1", "alloc", 0.001)  # a small loud one
    rows = c.finish(2.0, gateway={}).by_user
    assert [row.label for row in rows] == ["U0", "U1", "U2", "U9", OTHERS]
    others = rows[-1]
    assert others.folded == 6
    assert others.answered == sum(100 - u for u in range(3, 9))
    assert sum(row.answered for row in rows) == sum(100 - u for u in range(10)) + 1


def test_labels_past_the_cap_fold_into_others() -> None:
    c = _collector(max_labels=5, top_n=100)
    for user in range(8):
        c.request_sent(0.0, f"U{user}", "1")
    c.deadlettered(0.0, "invalid_json")
    report = c.finish(1.0, gateway={})
    assert [row.label for row in report.by_user] == [*(f"U{u}" for u in range(5)), OTHERS]
    assert report.by_user[-1].sent == 3
    assert report.totals.labels_folded == 3
    assert report.totals.users_seen == 5


def test_a_long_label_is_clipped_and_still_counted_in_one_row() -> None:
    c = _collector()
    user = "U" * 5000
    for _ in range(3):
        c.request_sent(0.0, user, "1")
    (row,) = c.finish(1.0, gateway={}).by_user
    assert row.sent == 3
    assert len(row.label) == 200


def test_installs_per_region_with_failed_steps() -> None:
    c = _collector()
    for _ in range(5):
        c.install_finished(1.0, "north", True, None)
    c.install_finished(1.0, "north", False, "commission")
    c.install_finished(2.0, "north", False, "commission")
    c.install_finished(2.0, "north", False, "han_log")
    c.install_finished(2.0, "south", False, None)
    report = c.finish(3.0, gateway={})
    north, south = report.installs
    assert (north.region, north.ok, north.failed) == ("north", 5, 3)
    assert north.failed_steps == {"commission": 2, "han_log": 1}
    assert south.failed_steps == {"unknown": 1}
    assert (report.totals.installs_ok, report.totals.installs_failed) == (5, 4)
    assert report.buckets[2].installs_failed == 3


def test_alert_storm_accounting_counts_copies_once_per_alert() -> None:
    c = _collector()
    for _ in range(20):
        c.alert_raised(1.0, "north", "8F35")
    for recipient in range(2):
        primary = recipient == 0
        for _ in range(5):
            c.alert_delivered(1.0, "north", "8F35", None, 0, primary=primary)
        c.alert_delivered(2.0, "north", "8F35", "periodic", 8, primary=primary)
        c.alert_delivered(3.0, "north", "8F35", "periodic", 5, primary=primary)
        c.alert_delivered(5.0, "north", "8F35", "final", 13, primary=primary)
    report = c.finish(6.0, gateway={})
    (row,) = report.alerts
    assert (row.raised, row.delivered) == (20, 16)
    assert (row.forwarded_at_once, row.periodic_copies, row.final_copies) == (5, 2, 1)
    assert row.suppressed == 13
    # docs/alerts.md: received = forwarded at once + periodic copies + their counts.
    assert row.raised == row.forwarded_at_once + row.periodic_copies + row.suppressed
    assert (report.totals.alerts_suppressed, report.totals.storms) == (13, 1)


def test_dead_letters_and_events() -> None:
    c = _collector(max_events=2)
    c.deadlettered(0.1, "invalid_json")
    c.deadlettered(0.2, "invalid_json")
    c.deadlettered(0.3, "no_recipients")
    for i in range(3):
        c.event(float(i), "throttling", f"U1 throttled ({i})")
    report = c.finish(4.0, gateway={})
    assert report.deadletters == {"invalid_json": 2, "no_recipients": 1}
    assert report.totals.deadletters == 3
    assert [e.detail for e in report.events] == ["U1 throttled (0)", "U1 throttled (1)"]
    assert (report.totals.events, report.totals.events_dropped) == (3, 1)
    assert report.buckets[2].events == {"throttling": 1}


def test_wall_clock_times_are_parameters() -> None:
    c = _collector(duration_s=60.0)
    report = c.finish(61.5, gateway={"router": "gw1"}, started_at_unix_s=1_795_000_000.0)
    assert report.started_at_unix_s == 1_795_000_000.0
    assert report.finished_at_unix_s == 1_795_000_061.5
    assert report.elapsed_s == 61.5
    assert report.gateway == {"router": "gw1"}
    assert c.finish(1.0, gateway={}).started_at_unix_s is None


def test_an_empty_run() -> None:
    report = _collector(duration_s=0.0).finish(0.0, gateway={})
    assert report.buckets == []
    assert report.totals.sent == 0
    assert report.gateway_latency.count == 0
    assert report.gateway_latency.p99_ms is None
    assert report.by_user == []


@pytest.mark.parametrize(
    "kwargs",
    [{"bucket_s": 0.0}, {"bucket_s": float("nan")}, {"duration_s": -1.0}, {"top_n": 0}],
)
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|>="):
        _collector(**kwargs)


def _calls(seed: int, n: int) -> list[tuple[str, tuple[object, ...]]]:
    """A seeded mix of every kind of call the runner makes, over 30 s, in time order."""
    import random

    rng = random.Random(seed)
    users = [f"U{i}" for i in range(6)]
    calls: list[tuple[str, tuple[object, ...]]] = []
    for _ in range(n):
        t = rng.random() * 30
        user, srv = rng.choice(users), rng.choice(["4.1.1", "7.2", "11.3"])
        region = rng.choice(["north", "central", "south"])
        kind = rng.randrange(9)
        if kind == 0:
            calls.append(("request_sent", (t, user, srv)))
        elif kind == 1:
            outcome = rng.choice(["accepted", "throttled", "quarantined", "odd"])
            code, rule = f"C{rng.randrange(4)}", rng.choice([None, f"rule{rng.randrange(3)}"])
            calls.append(("request_answered", (t, user, srv, outcome, code, rule, rng.random())))
        elif kind == 2:
            ok = rng.random() < 0.8
            calls.append(("request_completed", (t, user, srv, region, ok, rng.random() * 3)))
        elif kind == 3:
            ok = rng.random() < 0.8
            flow = rng.choice(["install_finished", "firmware_finished"])
            step = None if ok else rng.choice(["commission", "join gas"])
            calls.append((flow, (t, region, ok, step)))
        elif kind == 4:
            calls.append(("alert_raised", (t, region, rng.choice(["8F35", "AD1"]))))
        elif kind == 5:
            copy = rng.choice([None, "periodic", "final"])
            calls.append(("alert_delivered", (t, region, "8F35", copy, rng.randrange(100))))
        elif kind == 6:
            calls.append(("deadlettered", (t, rng.choice(["json", "schema"]))))
        else:
            calls.append(("event", (t, rng.choice(["storm", "fault"]), f"e{rng.random()}")))
    return sorted(calls, key=lambda call: call[1][0])  # type: ignore[arg-type,return-value]


def test_merging_shards_gives_the_report_of_one_collector() -> None:
    calls = _calls(3, 20_000)
    whole = _collector(duration_s=30.0, max_events=50)
    parts = [_collector(duration_s=30.0, max_events=50) for _ in range(3)]
    for n, (name, args) in enumerate(calls):
        getattr(whole, name)(*args)
        getattr(parts[n % 3], name)(*args)
    merged = _collector(duration_s=30.0, max_events=50)
    for part in parts:
        merged.merge(pickle.loads(pickle.dumps(part)))  # as a shard process hands it over
    a = whole.finish(31.0, gateway={})
    b = merged.finish(31.0, gateway={})
    assert b.totals == a.totals
    assert b.buckets == a.buckets
    assert (b.by_user, b.by_srv, b.by_rule) == (a.by_user, a.by_srv, a.by_rule)
    assert (b.installs, b.alerts, b.completions) == (a.installs, a.alerts, a.completions)
    assert b.firmware == a.firmware
    assert a.firmware
    assert (b.gateway_latency, b.e2e_latency) == (a.gateway_latency, a.e2e_latency)
    assert b.deadletters == a.deadletters
    # the runner's calls come in time order, so both keep the run's first 50 entries
    assert b.events == a.events
    assert len(a.events) == 50


def test_merging_is_refused_across_bucket_widths() -> None:
    with pytest.raises(ValueError, match="buckets"):
        _collector(duration_s=10.0).merge(_collector(duration_s=100_000.0))


def test_firmware_campaign_meters_per_region_apart_from_installs() -> None:
    c = _collector()
    c.install_finished(1.0, "north", True, None)
    c.firmware_finished(1.5, "north", True, None)
    c.firmware_finished(1.6, "north", False, "11.3 activate firmware")
    c.firmware_finished(1.7, "south", True, None)
    report = c.finish(2.0, gateway={})
    assert (report.totals.installs_ok, report.totals.installs_failed) == (1, 0)
    assert (report.totals.firmware_ok, report.totals.firmware_failed) == (2, 1)
    rows = {row.region: row for row in report.firmware}
    assert (rows["north"].ok, rows["north"].failed) == (1, 1)
    assert rows["north"].failed_steps == {"11.3 activate firmware": 1}
    assert (rows["south"].ok, rows["south"].failed) == (1, 0)
    assert [row.region for row in report.installs] == ["north"]
