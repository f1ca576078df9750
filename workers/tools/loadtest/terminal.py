"""What `dccgate loadtest` prints at the end: the run's counts in words and numbers (no
Python reprs), the latency percentiles, the thresholds' pass/fail lines; and the
`dccgate loadtest compare A B` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from workers.tools.loadtest.htmlparts import ms
from workers.tools.loadtest.report_schema import LatencySummary, LoadTestReport, ReportError
from workers.tools.loadtest.thresholds import (
    Threshold,
    ThresholdError,
    evaluate,
    format_results,
    parse_threshold,
)

__all__ = [
    "THRESHOLD_FAILED_EXIT",
    "ThresholdError",
    "apply_thresholds",
    "counts",
    "latency_line",
    "parse_thresholds",
    "run_compare",
    "summary_text",
]

THRESHOLD_FAILED_EXIT = 99
"""Exit code of a run whose thresholds failed (k6's); 1 is an error, 2 a usage error."""


def counts(mapping: Mapping[str, int]) -> str:
    """`{'n24': 157, 'steady': 1369}` as `n24 157, steady 1,369` (the largest first)."""
    items = sorted(mapping.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{key} {value:,}" for key, value in items) or "none"


def latency_line(name: str, s: LatencySummary) -> str:
    """`gateway latency  p50 35.8 ms  p90 53.9 ms  p99 430 ms  p99.9 871 ms  max 932 ms`."""
    if not s.count:
        return f"{name:<21} no answers"
    return (
        f"{name:<21} p50 {ms(s.p50_ms)}  p90 {ms(s.p90_ms)}  p99 {ms(s.p99_ms)}  "
        f"p99.9 {ms(s.p999_ms)}  max {ms(s.max_ms)}  ({s.count:,} answers)"
    )


def summary_text(s: dict[str, Any], report: LoadTestReport | None, names: dict[str, str]) -> str:
    """The run's counts (`s`, the runner's stats) and, with the report, its percentiles."""
    lines = [
        f"{s['sent']:,} requests sent ({s['resent']:,} resent), {s['answered']:,} answered, "
        f"{s['completed']:,} answered by devices, {s['elapsed_s']:.1f} s"
    ]
    if report is not None:
        lines.append(latency_line("gateway latency", report.gateway_latency))
        lines.append(latency_line("end-to-end latency", report.e2e_latency))
    lines.append("outcomes per User:")
    for user, outcomes in s["by_user"].items():
        lines.append(f"  {user}  {names.get(user, ''):<24} {counts(outcomes)}")
    for region, c in s["installs"].items():
        ok, failed = c.get("ok", 0), c.get("failed", 0)
        share = f"{failed / (ok + failed):.1%}" if ok + failed else "-"
        lines.append(f"installs {region:<8} {ok:,} ok, {failed:,} failed ({share})")
    if s["failed_steps"]:
        lines.append(f"failed steps: {counts(s['failed_steps'])}")
    if s["firmware"]:
        lines.append(f"firmware meters: {counts(s['firmware'])}")
    if s["alerts_raised"]:
        raised, delivered = s["alerts_raised"], s["alerts_delivered"]
        lines.append(
            f"alerts raised {sum(raised.values()):,} ({counts(raised)}), delivered "
            f"{sum(delivered.values()):,} ({counts(delivered)})"
        )
        lines.append(
            f"storm copies {s['storm_copies']:,}, reporting {s['suppressed_reported']:,} "
            "alerts suppressed"
        )
    lines.append(
        f"dead letters {s['deadlettered']:,}, unanswered {s['unanswered']:,}, "
        f"unfinished flows {s['unfinished_flows']:,}"
    )
    return "\n".join(lines) + "\n"


def parse_thresholds(expressions: Sequence[str] | None) -> list[Threshold]:
    """Every `--threshold`, parsed before the run.

    Raises:
        ThresholdError: the first bad expression, with what is wrong.
    """
    return [parse_threshold(e) for e in expressions or ()]


def apply_thresholds(
    thresholds: Sequence[Threshold], report: LoadTestReport
) -> tuple[LoadTestReport, bool]:
    """Check the thresholds against the report: the report carrying the results (for
    report.json and the page), and whether every one passed. Prints the pass/fail lines."""
    if not thresholds:
        return report, True
    results = evaluate(thresholds, report)
    sys.stdout.write(format_results(results))
    return msgspec.structs.replace(report, thresholds=results), all(r.passed for r in results)


def run_compare(args: argparse.Namespace) -> int:
    """`dccgate loadtest compare A B [--report DIR]`: the exit code."""
    from workers.tools.loadtest.compare import build_comparison, load_run, summary_lines
    from workers.tools.loadtest.compare_page import write_comparison

    runs: list[str] = list(getattr(args, "runs", None) or ())
    if len(runs) != 2:
        sys.stderr.write(
            "dccgate loadtest compare: give two saved runs, A and B: the directories "
            "`--report DIR` wrote, or their report.json (e.g. dccgate loadtest compare "
            "before/ after/)\n"
        )
        return 2
    path_a, path_b = Path(runs[0]), Path(runs[1])
    try:
        a, b = load_run(path_a), load_run(path_b)
    except ReportError as exc:
        sys.stderr.write(f"dccgate loadtest compare: {exc}\n")
        return 1
    comparison = build_comparison(a, b, path_a, path_b)
    sys.stdout.write(summary_lines(comparison))
    directory = args.report or Path("compare-report")
    paths = write_comparison(comparison, a, b, directory)
    sys.stderr.write(f"comparison: {', '.join(str(p) for p in paths)}\n")
    return 0
