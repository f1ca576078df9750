"""`dccgate loadtest compare A B`: two saved runs side by side.

A and B are what `dccgate loadtest --report DIR` saved: the directory, or its report.json.
Any two runs can be compared (a before and after of a code change, two scales, two
configurations); a note says when they differ in scenario, seed, scale or duration. The
result: `compare.json` (the Struct `Comparison`) and `compare.html`, written by
`compare_page.write_comparison` into the output directory, and a terminal summary of the
headline metrics with their change.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from workers.tools.loadtest.htmlparts import signed_pct
from workers.tools.loadtest.report import load_report
from workers.tools.loadtest.report_schema import LoadTestReport, WhatIfDiff
from workers.tools.loadtest.thresholds import METRICS, metric_value, show_value
from workers.tools.loadtest.whatif import compare as diff_runs

__all__ = [
    "COMPARE_FORMAT",
    "Comparison",
    "MetricChange",
    "RunInfo",
    "build_comparison",
    "load_run",
    "summary_lines",
]

COMPARE_FORMAT = "dccgate.loadtest.compare/1"

HEADLINE = (
    "sent",
    "answered",
    "throughput",
    "accepted",
    "throttled",
    "quarantined",
    "rejected",
    "error_rate",
    "p50",
    "p90",
    "p99",
    "p99.9",
    "max",
    "e2e_p50",
    "e2e_p99",
    "installs_ok",
    "installs_failed",
    "alerts_suppressed",
    "storms",
    "deadletters",
)
"""The metrics of the terminal summary, in its order (the page shows every metric)."""


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Which run a side is: where it was read from and what it ran."""

    path: str
    scenario: str
    seed: int
    scale: float
    duration_s: float
    elapsed_s: float
    started_at_unix_s: float | None = None


class MetricChange(msgspec.Struct, frozen=True, kw_only=True):
    """One metric of the thresholds' catalogue in both runs (base units: ms, a fraction,
    per second, a count); `delta` = b - a and `change_pct` relative to a (null: not
    defined, a is 0 or a side has no value)."""

    metric: str
    meaning: str
    a: float | None
    b: float | None
    delta: float | None
    change_pct: float | None
    a_shown: str
    b_shown: str


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """compare.json: the two runs, every metric's change, and the per-User/SRV/rule/region/
    alert-code differences (`diff`, the what-if's `WhatIfDiff`: base is A, proposed is B)."""

    format: str = COMPARE_FORMAT
    a: RunInfo
    b: RunInfo
    notes: list[str] = msgspec.field(default_factory=list)
    metrics: list[MetricChange] = msgspec.field(default_factory=list)
    diff: WhatIfDiff


def load_run(path: Path) -> LoadTestReport:
    """A saved run: a directory holding report.json, or the report.json itself.

    Raises:
        ReportError: nothing readable there; the message says what to pass.
    """
    return load_report(path / "report.json" if path.is_dir() else path)


def _info(path: Path, report: LoadTestReport) -> RunInfo:
    return RunInfo(
        path=str(path),
        scenario=report.scenario,
        seed=report.seed,
        scale=report.scale,
        duration_s=report.duration_s,
        elapsed_s=report.elapsed_s,
        started_at_unix_s=report.started_at_unix_s,
    )


def _change(metric: str, a: LoadTestReport, b: LoadTestReport) -> MetricChange:
    va, vb = metric_value(metric, a), metric_value(metric, b)
    delta = vb - va if va is not None and vb is not None else None
    change_pct = 100.0 * delta / abs(va) if delta is not None and va else None
    return MetricChange(
        metric=metric,
        meaning=METRICS[metric][1],
        a=va,
        b=vb,
        delta=delta,
        change_pct=change_pct,
        a_shown=show_value(metric, va),
        b_shown=show_value(metric, vb),
    )


def build_comparison(
    a: LoadTestReport, b: LoadTestReport, path_a: Path, path_b: Path
) -> Comparison:
    """Line the two runs up: every metric, and the per-label differences."""
    diff = diff_runs(a, b)
    notes = [
        f"{name.removesuffix('_s')} differs: {getattr(a, name)} in A, {getattr(b, name)} in B"
        for name in ("scenario", "seed", "scale", "duration_s")
        if getattr(a, name) != getattr(b, name)
    ]
    if a.totals.sent != b.totals.sent:
        notes.append(
            f"the runs sent different traffic ({a.totals.sent:,} and {b.totals.sent:,} "
            "requests): compare rates and shares as well as counts"
        )
    return Comparison(
        a=_info(path_a, a),
        b=_info(path_b, b),
        notes=notes,
        metrics=[_change(metric, a, b) for metric in METRICS],
        diff=diff,
    )


def delta_text(change: MetricChange) -> str:
    """The change for people: `+12.3 ms (+4.1%)`, `-1,204 (-38.0%)`, `no change`."""
    if change.delta is None:
        return "—"
    if change.delta == 0:
        return "no change"
    kind = METRICS[change.metric][0]
    if kind == "rate":
        text = f"{100 * change.delta:+.2f} points"
    else:
        text = show_value(change.metric, abs(change.delta))
        text = ("+" if change.delta > 0 else "-") + text
    return f"{text} ({signed_pct(change.a, change.b)})"


def summary_lines(comparison: Comparison) -> str:
    """The terminal summary: the runs, notes, and the headline metrics with their change."""
    a, b = comparison.a, comparison.b
    lines = [
        f"A: {a.path}  ({a.scenario}, seed {a.seed}, scale {a.scale:g}x, {a.elapsed_s:.1f} s)",
        f"B: {b.path}  ({b.scenario}, seed {b.seed}, scale {b.scale:g}x, {b.elapsed_s:.1f} s)",
    ]
    lines += [f"note: {note}" for note in comparison.notes]
    by_name = {m.metric: m for m in comparison.metrics}
    rows = [by_name[name] for name in HEADLINE if name in by_name]
    rows = [m for m in rows if m.a or m.b or METRICS[m.metric][0] == "latency"]
    width = max((len(m.metric) for m in rows), default=0)
    a_width = max((len(m.a_shown) for m in rows), default=0)
    b_width = max((len(m.b_shown) for m in rows), default=0)
    lines.append(f"{'metric':<{width}}  {'A':>{a_width}}  {'B':>{b_width}}  change")
    for m in rows:
        lines.append(
            f"{m.metric:<{width}}  {m.a_shown:>{a_width}}  {m.b_shown:>{b_width}}  {delta_text(m)}"
        )
    return "\n".join(lines) + "\n"
