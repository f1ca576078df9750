"""The curated "gateway under test": the gateway's metrics in tables people read."""

from __future__ import annotations

import math

import pytest

from workers.tools.loadtest.gateway_table import curate, human, parse_series
from workers.tools.loadtest.page import render_report
from workers.tools.loadtest.results import ResultCollector

RUNAWAY = "90-B3-D5-1F-30-0A-00-00"
OTHER = "90-B3-D5-1F-30-02-00-00"

# What scrape_metrics kept at the end of a runaway-user run (abridged).
METRICS: dict[str, object] = {
    "dccgate_traffic_active": 1.0,
    "dccgate_traffic_threshold_requests_per_second": 250.0,
    "dccgate_traffic_capacity_requests_per_second": 1000.0,
    "dccgate_traffic_admitted_requests_per_second": 103.91008770828907,
    "dccgate_traffic_activations_total": 1.0,
    "dccgate_traffic_active_seconds_total": 19.991810083389282,
    "dccgate_traffic_oversubscribed": 0.0,
    'dccgate_traffic_episode_duration_seconds_bucket{le="0.5"}': 0.0,
    f'dccgate_traffic_user_allocation_requests_per_second{{user="{RUNAWAY}"}}': 50.0,
    f'dccgate_traffic_user_allocation_requests_per_second{{user="{OTHER}"}}': 200.0,
    f'dccgate_traffic_user_rate_requests_per_second{{user="{RUNAWAY}"}}': 44.20319128651264,
    'dccgate_router_decisions_total{code="I99",outcome="accepted"}': 3135.0,
    'dccgate_router_decisions_total{code="T1",outcome="throttled"}': 3925.0,
    'dccgate_router_decisions_total{code="E2",outcome="rejected"}': 0.0,
    f'dccgate_router_user_decisions_total{{outcome="accepted",user="{RUNAWAY}"}}': 150.0,
    f'dccgate_router_user_decisions_total{{outcome="throttled",user="{RUNAWAY}"}}': 3925.0,
    f'dccgate_router_user_decisions_total{{outcome="quarantined",user="{RUNAWAY}"}}': 1916.0,
    'dccgate_adt_quarantined_total{kind="user_adt",srv="7.2"}': 1916.0,
    (
        "dccgate_adt_user_nearest_threshold_ratio"
        f'{{rule="user:{RUNAWAY}:7.2:3600",user="{RUNAWAY}"}}'
    ): 1.0,
    "dccgate_alerts_active_storms": 2.0,
    "dccgate_alerts_held": 0.0,
    'dccgate_consumer_lag_records{partition="0",service="router",topic="dcc.sr.inbound"}': 12.0,
    'dccgate_consumer_lag_records{partition="1",service="router",topic="dcc.sr.inbound"}': 30.0,
    "not a series {": 1.0,
    "dccgate_traffic_weird": "text",
}


def test_parse_series() -> None:
    assert parse_series("x") == ("x", {})
    assert parse_series('x{a="1",b="two words"}') == ("x", {"a": "1", "b": "two words"})
    assert parse_series('x{a="say \\"hi\\""}') == ("x", {"a": 'say "hi"'})
    assert parse_series("not a series {") is None


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (8.845337791594455, "", "8.85"),
        (103.91008770828907, "req/s", "103.9 req/s"),
        (1000.0, "req/s", "1,000 req/s"),
        (3925.0, "", "3,925"),
        (0.04, "", "0.04"),
        (19.99, "s", "20.0 s"),
        (125.0, "s", "2.1 min"),
        (7200.0, "s", "2.0 h"),
        (math.inf, "", "inf"),
    ],
)
def test_numbers_for_people(value: float, unit: str, shown: str) -> None:
    assert human(value, unit) == shown


def test_curate_picks_the_facts() -> None:
    c = curate(METRICS)
    traffic = {f.name: f.value for f in c.traffic}
    assert traffic == {
        "traffic management": "throttling active",
        "operating threshold": "250 req/s",
        "capacity": "1,000 req/s",
        "admitted rate": "103.9 req/s",
        "throttling episodes": "1",
        "time throttling": "20.0 s",
    }
    runaway, other = sorted(c.users, key=lambda u: u.user != RUNAWAY)
    assert (runaway.allocation, runaway.rate) == ("50 req/s", "44.2 req/s")
    assert runaway.decisions == {"accepted": 150, "throttled": 3925, "quarantined": 1916}
    assert (other.allocation, other.rate, other.decisions) == ("200 req/s", "—", {})
    assert [(f.name, f.value, f.note) for f in c.decisions] == [
        ("throttled", "3,925", "response code T1"),
        ("accepted", "3,135", "response code I99"),
    ]
    assert ("quarantined (user adt)", "1,916", "SRV 7.2") in [
        (f.name, f.value, f.note) for f in c.quarantine
    ]
    assert [(f.name, f.value) for f in c.alerts] == [("storms active at the end", "2")]
    ((lag),) = c.lag
    assert (lag.name, lag.value) == ("router on dcc.sr.inbound", "42 records")
    assert lag.note == "2 partitions, at most 30 behind"
    assert c.series == len(METRICS)
    assert curate({}).empty()


def test_the_page_shows_tables_not_series() -> None:
    report = ResultCollector(scenario="g", seed=1, scale=1.0, duration_s=1.0).finish(
        1.0, gateway=METRICS
    )
    html = render_report(report)
    start = html.index('<section id="gateway">')
    section = html[start : html.index("</section>", start)]
    for heading in (
        "Traffic management",
        "Per User",
        "Decisions",
        "Quarantine (ADT)",
        "Storm protection",
        "Consumer lag",
    ):
        assert f"<h3>{heading}</h3>" in section, heading
    assert "dccgate_" not in section.replace("dccgate_consumer_lag_records", "")
    assert "8.845" not in section
    assert "103.91008770828907" not in section
    assert f"{len(METRICS)} series, all in report.json" in section
