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


def test_an_empty_run_renders_no_data(tmp_path: Path) -> None:
    report = ResultCollector(scenario="empty", seed=0, scale=1.0, duration_s=0.0).finish(
        0.0, gateway={}
    )
    _, html_path = write_report(report, tmp_path)
    html = html_path.read_text()
    assert html.count("no data") >= 8
    assert "Throughput over time" in html


def test_a_run_without_answers_still_draws_what_it_has() -> None:
    c = _collector()
    for i in range(50):
        c.request_sent(i * 0.1, "U1", "4.1.1")
    html = render_report(c.finish(5.0, gateway={}))
    assert "<polyline" in html  # the sent line
    assert "Gateway latency over time: no data" in html


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
