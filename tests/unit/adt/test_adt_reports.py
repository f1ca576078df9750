"""adt.reports: DCC-wide counts summed across routers, and the documented overshoot bound."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from adt import (
    AdtCountReport,
    AdtEngine,
    AdtValues,
    SrvWindowCount,
    Threshold,
    merge_reports,
)

T0 = 1_700_000_000.0


def report(router: str, at_s: float, *counts: tuple[str, int, int]) -> AdtCountReport:
    return AdtCountReport(
        router_id=router,
        at_s=at_s,
        counts=tuple(SrvWindowCount(srv=s, window_s=w, count=c) for s, w, c in counts),
    )


def test_the_latest_report_of_each_router_is_summed() -> None:
    reports = [
        report("a", T0, ("7.2", 60, 5)),
        report("a", T0 + 1, ("7.2", 60, 7), ("7.2", 3600, 70)),
        report("a", T0 - 1, ("7.2", 60, 100)),  # older than a's latest: ignored
        report("b", T0, ("7.2", 60, 3), ("8.1", 60, 1)),
    ]
    assert merge_reports(reports, T0 + 1, 5) == {
        ("7.2", 60): 10,
        ("7.2", 3600): 70,
        ("8.1", 60): 1,
    }


def test_stale_reports_and_our_own_are_left_out() -> None:
    reports = [
        report("a", T0, ("7.2", 60, 5)),
        report("b", T0 - 10, ("7.2", 60, 3)),  # stopped ten seconds ago
        report("me", T0, ("7.2", 60, 50)),
    ]
    assert merge_reports(reports, T0, 5, exclude_router="me") == {("7.2", 60): 5}
    assert merge_reports([], T0, 5) == {}


def test_reports_travel_as_json() -> None:
    original = report("a", T0, ("7.2", 60, 5))
    data = msgspec.json.encode(original)
    assert msgspec.json.decode(data, type=AdtCountReport) == original


def simulate(routers: int, interval_s: float, delay_s: float, rate_per_s: int, limit: int) -> int:
    """Routers admitting one SRV in lockstep, exchanging reports; return the total admitted."""
    dcc = AdtValues(thresholds=(Threshold(srv="7.2", window_s=3600, max=limit),))
    engines = [AdtEngine(dcc_values=dcc) for _ in range(routers)]
    names = [f"r{i}" for i in range(routers)]
    in_flight: list[tuple[float, AdtCountReport]] = []
    board: dict[str, AdtCountReport] = {}
    next_report = T0
    admitted = 0
    step = 1 / rate_per_s
    for tick in range(int(600 * rate_per_s)):  # ten minutes, well inside the window
        now = T0 + tick * step
        if now >= next_report:
            for engine, name in zip(engines, names, strict=True):
                in_flight.append((now + delay_s, engine.count_report(name, now)))
            next_report += interval_s
        arrived = [r for at, r in in_flight if at <= now]
        if arrived:
            in_flight = [(at, r) for at, r in in_flight if at > now]
            board.update((r.router_id, r) for r in arrived)
            for engine, name in zip(engines, names, strict=True):
                engine.set_peer_counts(
                    merge_reports(board.values(), now, 10 * interval_s, exclude_router=name)
                )
        for i, engine in enumerate(engines):
            user = f"user-{i}"
            if not engine.check(user, "7.2", dict, now).quarantined:
                engine.record_processed(user, "7.2", now)
                admitted += 1
    return admitted


@settings(max_examples=25, deadline=None)
@given(
    routers=st.integers(min_value=1, max_value=6),
    interval_s=st.sampled_from([0.5, 1.0, 2.0]),
    delay_s=st.sampled_from([0.0, 0.2]),
    rate_per_s=st.sampled_from([5, 20]),
    limit=st.integers(min_value=0, max_value=2000),
)
def test_total_overshoot_stays_within_p_times_i_plus_d_times_rate(
    routers: int, interval_s: float, delay_s: float, rate_per_s: int, limit: int
) -> None:
    admitted = simulate(routers, interval_s, delay_s, rate_per_s, limit)
    offered = routers * 600 * rate_per_s
    assert admitted <= offered
    if offered >= limit + routers * 10 * rate_per_s:
        assert admitted >= limit  # the threshold is reached...
    # ...and passed by at most P x (I + D) x rate, plus one request per router per tick.
    bound = routers * (math.ceil((interval_s + delay_s) * rate_per_s) + 1)
    assert admitted <= limit + bound


def test_one_router_alone_never_overshoots() -> None:
    assert simulate(1, 1.0, 0.2, 20, 500) == 500
