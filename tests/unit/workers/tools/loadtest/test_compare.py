"""`dccgate loadtest compare A B`: the metrics side by side, the page, the command."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec
import pytest

from workers.tools.loadtest.compare import (
    COMPARE_FORMAT,
    Comparison,
    build_comparison,
    delta_text,
    load_run,
    summary_lines,
)
from workers.tools.loadtest.compare_page import write_comparison
from workers.tools.loadtest.report import write_report
from workers.tools.loadtest.report_schema import LoadTestReport
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.sample import sample_report
from workers.tools.loadtest.terminal import run_compare

HOSTILE = '<script>alert("x")</script>'


def _run(throttled: int, latency_s: float, seed: int = 1) -> LoadTestReport:
    c = ResultCollector(scenario="unit", seed=seed, scale=1.0, duration_s=10.0)
    for i in range(100):
        c.request_sent(i * 0.1, "U1", "4.1.1")
        outcome = "throttled" if i < throttled else "accepted"
        c.request_answered(
            i * 0.1, "U1", "4.1.1", outcome, "T1" if i < throttled else "I99", None, latency_s
        )
    return c.finish(10.0, gateway={})


def test_metrics_side_by_side_with_signed_change_and_percent() -> None:
    a, b = _run(10, 0.100), _run(25, 0.050)
    c = build_comparison(a, b, Path("a"), Path("b"))
    metrics = {m.metric: m for m in c.metrics}
    assert (metrics["throttled"].a, metrics["throttled"].b) == (10, 25)
    assert metrics["throttled"].delta == 15
    assert metrics["throttled"].change_pct == pytest.approx(150.0)
    assert delta_text(metrics["throttled"]) == "+15 (+150.0%)"
    assert delta_text(metrics["accepted"]) == "-15 (-16.7%)"
    assert metrics["p99"].change_pct == pytest.approx(-50.0, abs=0.2)
    assert delta_text(metrics["p99"]).startswith("-50.0 ms (-50.0%")
    assert delta_text(metrics["throttled_rate"]) == "+15.00 points (+150.0%)"
    assert delta_text(metrics["sent"]) == "no change"
    assert metrics["e2e_p99"].delta is None
    assert delta_text(metrics["e2e_p99"]) == "—"
    assert c.notes == []
    assert c.diff.totals.delta["throttled"] == 15


def test_notes_say_what_differs() -> None:
    a = _run(10, 0.1, seed=1)
    b = msgspec.structs.replace(_run(10, 0.1, seed=2), scale=2.0)
    notes = build_comparison(a, b, Path("a"), Path("b")).notes
    assert "seed differs: 1 in A, 2 in B" in notes
    assert "scale differs: 1.0 in A, 2.0 in B" in notes


def test_terminal_summary_is_a_plain_table() -> None:
    text = summary_lines(build_comparison(_run(10, 0.1), _run(25, 0.05), Path("x"), Path("y")))
    lines = text.splitlines()
    assert lines[0].startswith("A: x  (unit, seed 1, scale 1x, 10.0 s)")
    assert lines[2].split() == ["metric", "A", "B", "change"]
    throttled = next(line for line in lines if line.startswith("throttled "))
    assert throttled.split() == ["throttled", "10", "25", "+15", "(+150.0%)"]
    assert "e2e_p99" in text  # latency rows stay, with a dash when there is none
    assert "installs_ok" not in text  # 0 in both
    assert "{" not in text
    assert "'" not in text


def test_the_page(tmp_path: Path) -> None:
    a = sample_report(seed=1, duration_s=10.0, rate_per_s=100.0)
    b = sample_report(seed=2, duration_s=10.0, rate_per_s=150.0)
    b = msgspec.structs.replace(b, scenario=HOSTILE)
    comparison = build_comparison(a, b, tmp_path / HOSTILE, tmp_path / "b")
    json_path, html_path = write_comparison(comparison, a, b, tmp_path / "out")
    assert msgspec.json.decode(json_path.read_bytes(), type=Comparison).format == COMPARE_FORMAT
    html = html_path.read_text()
    assert "<script" not in html
    for anchor in (
        "runs",
        "notes",
        "metrics",
        "throughput",
        "p99-time",
        "percentiles",
        "srv-latency",
        "users",
    ):
        assert f'id="{anchor}"' in html, anchor
    assert 'aria-label="Throughput, A and B"' in html
    assert "A sent" in html
    assert "B sent" in html
    assert "no data" not in html
    assert 'class="better"' in html or 'class="worse"' in html


def _args(*runs: str, report: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(scenario="compare", runs=list(runs), report=report)


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_report(_run(10, 0.1), tmp_path / "before")
    json_b, _ = write_report(_run(20, 0.1), tmp_path / "after")
    out = tmp_path / "cmp"
    # A directory and a report.json both name a saved run.
    assert run_compare(_args(str(tmp_path / "before"), str(json_b), report=out)) == 0
    assert (out / "compare.html").exists()
    assert (out / "compare.json").exists()
    captured = capsys.readouterr()
    assert "throttled" in captured.out
    assert "+10 (+100.0%)" in captured.out
    assert "compare.html" in captured.err

    assert run_compare(_args(str(tmp_path / "before"))) == 2
    assert "give two saved runs" in capsys.readouterr().err
    assert run_compare(_args("a", "b", "c")) == 2
    assert run_compare(_args(str(tmp_path / "missing"), str(json_b), report=out)) == 1
    assert "cannot read the load-test report" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{" + b"[" * 10_000)
    assert run_compare(_args(str(bad), str(json_b), report=out)) == 1
    assert "is not a dccgate load-test report" in capsys.readouterr().err
    # Valid JSON an attacker could write: nesting deeper than Python's stack, a zero bucket.
    good = json_b.read_text()
    deep = tmp_path / "deep.json"
    deep.write_text(
        good.replace('"gateway": {', '"gateway": {"x": ' + "[" * 100_000 + "]" * 100_000 + ",", 1)
    )
    assert run_compare(_args(str(deep), str(json_b), report=out)) == 1
    assert "is not a dccgate load-test report" in capsys.readouterr().err
    zero = tmp_path / "zero.json"
    zero.write_text(good.replace('"bucket_s": 1.0', '"bucket_s": 0.0', 1))
    assert run_compare(_args(str(zero), str(json_b), report=out)) == 1
    assert "bucket_s 0.0" in capsys.readouterr().err


def test_load_run_takes_a_directory_or_a_file(tmp_path: Path) -> None:
    report = _run(1, 0.1)
    json_path, _ = write_report(report, tmp_path / "r")
    assert load_run(tmp_path / "r") == report == load_run(json_path)
