"""report.json round trip, strict reading, the HTML page (escaping, empty runs) and the what-if."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from workers.tools.loadtest.page import render_report
from workers.tools.loadtest.report import compare, load_report, write_report, write_whatif
from workers.tools.loadtest.report_schema import REPORT_FORMAT, LoadTestReport, ReportError
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.sample import sample_report

HOSTILE = '<script>alert("x")</script>'


def _collector(name: str = "unit") -> ResultCollector:
    return ResultCollector(scenario=name, seed=3, scale=0.5, duration_s=5.0)


def _hostile_report() -> LoadTestReport:
    c = _collector(f"scenario {HOSTILE}")
    c.request_sent(0.1, HOSTILE, f"srv{HOSTILE}")
    c.request_answered(0.2, HOSTILE, f"srv{HOSTILE}", "throttled", f"T{HOSTILE}", HOSTILE, 0.1)
    c.install_finished(0.3, HOSTILE, False, HOSTILE)
    c.alert_raised(0.4, "north", HOSTILE)
    c.alert_delivered(0.5, "north", HOSTILE, "periodic", 3)
    c.deadlettered(0.6, HOSTILE)
    c.event(0.7, HOSTILE, HOSTILE)
    return c.finish(1.0, gateway={HOSTILE: HOSTILE})


def test_json_round_trip(tmp_path: Path) -> None:
    report = sample_report(duration_s=10.0, rate_per_s=100.0)
    json_path, html_path = write_report(report, tmp_path / "out")
    assert (json_path.name, html_path.name) == ("report.json", "report.html")
    assert load_report(json_path) == report
    raw = msgspec.json.decode(json_path.read_bytes())
    assert raw["format"] == REPORT_FORMAT
    assert raw["gateway_latency"]["p99_ms"] > 0
    assert not list(tmp_path.glob("out/.*.tmp"))


def test_load_report_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ReportError, match=r"cannot read .*nope\.json.*dccgate loadtest --report"):
        load_report(missing)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": "dccgate.loadtest.report/1", "seed": "seven"}')
    with pytest.raises(ReportError, match=r"garbage\.json is not a dccgate load-test report"):
        load_report(garbage)
    future = tmp_path / "future.json"
    report = msgspec.structs.replace(_collector().finish(1.0, gateway={}), format="x/9")
    future.write_bytes(msgspec.json.encode(report))
    with pytest.raises(ReportError, match=r"report format 'x/9'"):
        load_report(future)


def test_every_string_from_the_wire_is_escaped() -> None:
    html = render_report(_hostile_report())
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # The page loads nothing: no script, no remote reference of any kind.
    assert not re.search(r"(src|href)=", html)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


def test_an_empty_run_has_no_empty_boxes(tmp_path: Path) -> None:
    report = ResultCollector(scenario="empty", seed=0, scale=1.0, duration_s=0.0).finish(
        0.0, gateway={}
    )
    _, html_path = write_report(report, tmp_path)
    html = html_path.read_text()
    # No chart at all: every section with nothing to show is one line saying so.
    assert "no data" not in html
    assert "<svg" not in html
    for line in (
        "<b>Throughput</b>: nothing was sent or answered.",
        "No throttling, quarantine, storm or fault events in this run.",
        "<b>Response codes and errors over time</b>: no answers.",
        "<b>Latency over time</b>: no answers to measure.",
        "<b>Latency percentiles</b>: no answers to measure.",
        "<b>Latency per SRV</b>: no answers.",
        "<b>Outcomes per User</b>: no answers.",
        "<b>Outcomes per rule</b>: no answer named a rule",
        "<b>Installs per region</b>: no installs or device answers.",
        "<b>Alerts and storms</b>: no device alerts in this run.",
        "<b>Gateway under test</b>: its metrics were not read",
        "<b>Events</b>: none recorded.",
    ):
        assert line in html, line
    assert html.count('class="empty"') >= 12


def test_a_run_without_answers_still_draws_what_it_has() -> None:
    c = _collector()
    for i in range(50):
        c.request_sent(i * 0.1, "U1", "4.1.1")
    html = render_report(c.finish(5.0, gateway={}))
    assert "<polyline" in html  # the sent line
    assert 'aria-label="Throughput over time"' in html
    assert "<b>Latency over time</b>: no answers to measure." in html


def test_periods_are_spans_and_one_off_events_markers() -> None:
    c = _collector()
    for t in (1.0, 1.5, 2.0, 4.5):  # one period: each within SPAN_GAP_S of the last
        c.request_answered(t, "U1", "7.2", "throttled", "T1", "allocation", 0.01)
    c.request_answered(9.0, "U1", "7.2", "throttled", "T1", "allocation", 0.01)  # a second one
    c.request_answered(2.0, "U2", "7.2", "quarantined", "Q1", "adt", 0.01)
    # A storm's copies come a storm period apart; its final copy ends it.
    c.alert_delivered(3.0, "north", "8F1F", "periodic", 5)
    c.alert_delivered(13.0, "north", "8F1F", "periodic", 5)
    c.alert_delivered(14.0, "north", "8F1F", "final", 0)
    c.alert_delivered(15.0, "north", "8F1F", "periodic", 1)
    c.request_answered(2.0, "U2", "4.1.1", "accepted", "I99", None, 0.01)  # no span
    c.event(1.0, "throttling", "User U1 first throttled")
    report = c.finish(16.0, gateway={})
    spans = [(s.kind, s.label, s.start_s, s.end_s, s.count) for s in report.spans]
    assert spans == [
        ("throttled", "U1", 1.0, 4.5, 4),
        ("quarantined", "U2", 2.0, 2.0, 1),
        ("storm", "north 8F1F", 3.0, 14.0, 3),
        ("throttled", "U1", 9.0, 9.0, 1),
        ("storm", "north 8F1F", 15.0, 15.0, 1),
    ]
    html = render_report(report)
    assert html.count('class="span"') == 5
    assert html.count('class="marker"') == 1
    assert "throttled U1: 1.0 s to 4.5 s, 4 answers throttled" in html
    assert "1.00 s: User U1 first throttled" in html


def test_spans_of_shards_merge_into_the_spans_of_one_collector() -> None:
    whole, left, right = _collector(), _collector(), _collector()
    for i, t in enumerate((0.5, 1.0, 2.0, 3.5, 8.0, 8.5)):
        whole.request_answered(t, "U1", "7.2", "throttled", "T1", None, 0.01)
        (left if i % 2 else right).request_answered(t, "U1", "7.2", "throttled", "T1", None, 0.01)
    left.merge(right)
    assert left.finish(9.0, gateway={}).spans == whole.finish(9.0, gateway={}).spans


def test_latency_per_srv_and_codes_per_bucket() -> None:
    c = _collector()
    for i in range(1, 1001):
        c.request_answered(0.5, "U1", "4.1.1", "accepted", "I99", None, i / 1000)
    for _ in range(10):
        c.request_answered(1.5, "U1", "7.2", "rejected", "E2", None, 0.5)
    c.request_completed(1.6, "U1", "4.1.1", "north", False, 0.7)
    c.deadlettered(1.7, "bad_json")
    report = c.finish(2.0, gateway={})
    first, second = report.srv_latency
    assert (first.srv, first.count, second.srv, second.count) == ("4.1.1", 1000, "7.2", 10)
    # Two significant figures per SRV, as per time bucket: within 1%.
    assert first.p50_ms == pytest.approx(500, rel=0.01)
    assert first.p99_ms == pytest.approx(990, rel=0.01)
    assert first.p999_ms == pytest.approx(999, rel=0.01)
    assert second.p50_ms == pytest.approx(500, rel=0.01)
    b0, b1 = report.buckets[:2]
    assert b0.codes == {"I99": 1000}
    assert (b1.codes, b1.completed_failed, b1.deadletters) == ({"E2": 10}, 1, 1)
    html = render_report(report)
    assert 'id="srv-latency"' in html
    assert f"<td>{first.p99_ms:,.1f} ms</td>" in html
    assert 'aria-label="Response codes and errors over time"' in html
    assert "code E2" in html
    assert "device failures" in html
    assert "dead letters" in html


def test_long_names_are_wrapped_not_clipped() -> None:
    c = _collector()
    rule = "user:90-B3-D5-1F-30-0A-00-00:7.2:3600"
    c.request_answered(0.5, "U1", "7.2", "quarantined", "Q1", rule, 0.01)
    html = render_report(c.finish(1.0, gateway={}))
    # Each part of the rule id is there, on lines of its own, and nothing starts with "…".
    assert ">user:90-B3-D5-1F-30-0A-00-00:</tspan>" in html
    assert ">7.2:3600</tspan>" in html
    assert "…" not in html


def test_thresholds_are_shown() -> None:
    from workers.tools.loadtest.thresholds import evaluate, parse_threshold

    report = sample_report(duration_s=10.0, rate_per_s=100.0)
    checks = [parse_threshold("p99<10s"), parse_threshold("quarantined==0")]
    html = render_report(msgspec.structs.replace(report, thresholds=evaluate(checks, report)))
    assert "Thresholds: 1 of 2 thresholds failed" in html
    assert '<tr class="pass"><td class="t"><code>p99&lt;10s</code>' in html
    assert '<tr class="fail"><td class="t"><code>quarantined==0</code>' in html


def test_compare_finds_what_the_proposal_throttles() -> None:
    def run(throttle_u2: bool) -> LoadTestReport:
        c = _collector()
        for i in range(100):
            user = "U1" if i % 2 else "U2"
            c.request_sent(i * 0.05, user, "4.1.1")
            throttled = throttle_u2 and user == "U2" and i >= 50
            outcome, code = ("throttled", "T1") if throttled else ("accepted", "I99")
            rule = "allocation:U2" if throttled else None
            c.request_answered(i * 0.05, user, "4.1.1", outcome, code, rule, 0.01)
        for i in range(10 if throttle_u2 else 4):
            c.alert_delivered(1.0, "north", "8F35", "periodic", 2 + i)
        return c.finish(5.0, gateway={"allocation_U2": 1 if throttle_u2 else None})

    base, proposed = run(False), run(True)
    diff = compare(base, proposed)
    assert diff.comparable
    assert diff.notes == []
    assert diff.totals.delta["throttled"] == 25
    assert diff.totals.delta["accepted"] == -25
    assert diff.by_user[0].label == "U2"
    assert diff.by_user[0].delta["throttled"] == 25
    assert diff.by_user[1].delta.get("throttled", 0) == 0
    assert [r.label for r in diff.by_rule] == ["allocation:U2"]
    assert diff.by_rule[0].base == {}
    (alerts,) = diff.alerts
    assert alerts.delta["suppressed"] == sum(range(2, 12)) - sum(range(2, 6))


def test_compare_says_when_runs_are_not_comparable() -> None:
    base = _collector("a").finish(1.0, gateway={})
    proposed = ResultCollector(scenario="b", seed=4, scale=0.5, duration_s=5.0).finish(
        1.0, gateway={}
    )
    diff = compare(base, proposed)
    assert not diff.comparable
    assert diff.notes[0].startswith("scenario differs")
    assert any(n.startswith("seed differs") for n in diff.notes)


def test_write_whatif(tmp_path: Path) -> None:
    base, proposed = sample_report(seed=1, duration_s=10.0), sample_report(seed=1, duration_s=10.0)
    hostile = _hostile_report()
    json_path, html_path = write_whatif(compare(base, hostile), base, hostile, tmp_path)
    assert json_path.name == "whatif.json"
    html = html_path.read_text()
    assert "<script" not in html
    assert "These runs are not comparable" in html
    _, html_path = write_whatif(compare(base, proposed), base, proposed, tmp_path / "same")
    assert "No request or alert would be treated differently." in html_path.read_text()


def test_what_would_change_leads_with_the_main_effect(tmp_path: Path) -> None:
    def run(quarantine_from: int) -> LoadTestReport:
        c = _collector()
        for i in range(300):
            c.request_sent(i * 0.01, "RUNAWAY", "7.2")
            outcome = "quarantined" if i >= quarantine_from else "accepted"
            c.request_answered(i * 0.01, "RUNAWAY", "7.2", outcome, "Q1", None, 0.01)
        for _ in range(20):
            c.install_finished(1.0, "north", True, None)
        c.install_finished(2.0, "north", quarantine_from > 100, "8.11")
        return c.finish(5.0, gateway={})

    # The proposal processes 50 of the loop's requests instead of 150 (a lower ADT).
    base, proposed = run(150), run(50)
    _, html_path = write_whatif(compare(base, proposed), base, proposed, tmp_path)
    html = html_path.read_text()
    changes = html[html.index('<ul class="changes">') : html.index("</ul>", html.index("changes"))]
    assert changes.index("Main effect: <b>100 fewer requests accepted") < changes.index(
        "100 more requests quarantined"
    )
    assert "1 more installs failed" in changes
    # No raw dump of the gateway's facts on the what-if page.
    assert "dccgate_" not in html
