"""Pass/fail thresholds of a load test (`dccgate loadtest --threshold EXPR`), k6-style.

Grammar (whitespace around the operator is allowed, nothing else is):

    threshold := METRIC OP NUMBER [UNIT]
    OP        := "<" | "<=" | ">" | ">=" | "==" | "!="
    NUMBER    := decimal, e.g. 500, 0.01, 1.5 (no sign, no exponent, at most 15 digits)
    UNIT      := "ms" | "s" for a latency (default ms); "%" for a rate (default a fraction
                 0..1); "/s" for a throughput (optional); none for a count

`parse_threshold` checks an expression before the run and says exactly what is wrong;
`evaluate` checks each against the finished report. The metrics are listed in `METRICS`
(docs/loadtest.md, Thresholds).
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from workers.tools.loadtest.report_schema import LatencySummary, LoadTestReport, ThresholdResult

__all__ = [
    "METRICS",
    "Threshold",
    "ThresholdError",
    "evaluate",
    "format_results",
    "metric_value",
    "parse_threshold",
]

Kind = Literal["latency", "rate", "count", "throughput"]

_MAX_CHARS = 120
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_SHAPE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|>=|==|!=|<|>|=)\s*"
    r"(?P<number>[0-9]{1,15}(?:\.[0-9]{1,15})?|\.[0-9]{1,15})\s*(?P<unit>[A-Za-z%/]*)\s*$"
)
_UNITS: dict[Kind, dict[str, float]] = {
    "latency": {"": 1.0, "ms": 1.0, "s": 1000.0},
    "rate": {"": 1.0, "%": 0.01},
    "count": {"": 1.0},
    "throughput": {"": 1.0, "/s": 1.0},
}
_UNIT_HELP: dict[Kind, str] = {
    "latency": "a latency takes ms (the default) or s, e.g. p99<500ms or p99<0.5s",
    "rate": "a rate is a fraction 0..1 or a percentage, e.g. error_rate<0.01 or error_rate<1%",
    "count": "a count takes no unit, e.g. quarantined==0",
    "throughput": "a throughput is per second, e.g. throughput>=900 or throughput>=900/s",
}


class ThresholdError(ValueError):
    """A threshold expression that cannot be used; the message shows the grammar or the fix."""


class Threshold(msgspec.Struct, frozen=True, kw_only=True):
    """One parsed threshold: `metric OP limit`, the limit in the metric's base unit (ms for a
    latency, a fraction for a rate, per second for a throughput)."""

    expression: str
    metric: str
    op: str
    limit: float


def _latency(field: str, which: str) -> Callable[[LoadTestReport], float | None]:
    def get(report: LoadTestReport) -> float | None:
        summary: LatencySummary = getattr(report, which)
        value: float | None = getattr(summary, field)
        return value

    return get


def _outcome(name: str) -> Callable[[LoadTestReport], float | None]:
    return lambda r: float(r.totals.outcomes.get(name, 0))


def _share(name: str) -> Callable[[LoadTestReport], float | None]:
    return lambda r: (
        r.totals.outcomes.get(name, 0) / r.totals.answered if r.totals.answered else None
    )


def _total(field: str) -> Callable[[LoadTestReport], float | None]:
    return lambda r: float(getattr(r.totals, field))


def _errors(report: LoadTestReport) -> int:
    t = report.totals
    unanswered = max(t.sent - t.answered, 0)
    return unanswered + t.outcomes.get("rejected", 0) + t.outcomes.get("other", 0) + t.deadletters


def _per_s(count: Callable[[LoadTestReport], int]) -> Callable[[LoadTestReport], float | None]:
    return lambda r: count(r) / r.elapsed_s if r.elapsed_s > 0 else None


def _install_failure_rate(report: LoadTestReport) -> float | None:
    done = report.totals.installs_ok + report.totals.installs_failed
    return report.totals.installs_failed / done if done else None


def _build() -> dict[str, tuple[Kind, str, Callable[[LoadTestReport], float | None]]]:
    metrics: dict[str, tuple[Kind, str, Callable[[LoadTestReport], float | None]]] = {}
    for prefix, which, what in (
        ("", "gateway_latency", "gateway latency"),
        ("e2e_", "e2e_latency", "end-to-end latency"),
    ):
        for name, field in (
            ("p50", "p50_ms"),
            ("p90", "p90_ms"),
            ("p99", "p99_ms"),
            ("p99.9", "p999_ms"),
            ("max", "max_ms"),
            ("mean", "mean_ms"),
        ):
            metrics[prefix + name] = ("latency", f"{what} {name}", _latency(field, which))
    for name in ("accepted", "throttled", "quarantined", "rejected", "released", "deleted"):
        metrics[name] = ("count", f"answers {name}", _outcome(name))
        metrics[f"{name}_rate"] = ("rate", f"share of answers {name}", _share(name))
    for name, field, what in (
        ("sent", "sent", "requests sent"),
        ("answered", "answered", "requests answered"),
        ("deadletters", "deadletters", "records dead-lettered"),
        ("installs_ok", "installs_ok", "installs completed"),
        ("installs_failed", "installs_failed", "installs failed"),
        ("alerts_raised", "alerts_raised", "alerts raised"),
        ("alerts_delivered", "alerts_delivered", "alert records delivered"),
        ("alerts_suppressed", "alerts_suppressed", "alerts suppressed by storm protection"),
        ("storms", "storms", "alert storms ended (final copies)"),
    ):
        metrics[name] = ("count", what, _total(field))
    metrics["unanswered"] = (
        "count",
        "requests sent and never answered",
        lambda r: float(max(r.totals.sent - r.totals.answered, 0)),
    )
    metrics["errors"] = (
        "count",
        "unanswered + rejected + unknown outcomes + dead letters",
        lambda r: float(_errors(r)),
    )
    metrics["error_rate"] = (
        "rate",
        "errors / requests sent",
        lambda r: _errors(r) / r.totals.sent if r.totals.sent else None,
    )
    metrics["install_failure_rate"] = ("rate", "failed / finished installs", _install_failure_rate)
    metrics["throughput"] = (
        "throughput",
        "answers per second over the run",
        _per_s(lambda r: r.totals.answered),
    )
    metrics["sent_rate"] = (
        "throughput",
        "requests sent per second over the run",
        _per_s(lambda r: r.totals.sent),
    )
    return metrics


METRICS = _build()
"""name -> (kind, meaning, value of a report) for every metric a threshold may name."""


def parse_threshold(expression: str) -> Threshold:
    """Parse one `--threshold` expression.

    Raises:
        ThresholdError: the expression does not follow the grammar, names an unknown metric,
            or gives a unit the metric does not take; the message says which and shows an
            example.
    """
    shown = expression if len(expression) <= 60 else expression[:57] + "..."
    if len(expression) > _MAX_CHARS:
        raise ThresholdError(f"threshold {shown!r} is longer than {_MAX_CHARS} characters")
    match = _SHAPE.match(expression)
    if match is None:
        raise ThresholdError(
            f"threshold {shown!r} is not METRIC OP NUMBER[UNIT] with OP one of "
            "< <= > >= == != (e.g. p99<500ms, quarantined==0, error_rate<0.01)"
        )
    metric, op, number, unit = match.group("metric", "op", "number", "unit")
    if op == "=":
        raise ThresholdError(f"threshold {shown!r}: use == to compare, not =")
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ThresholdError(
            f"threshold {shown!r}: unknown metric {metric!r}{hint} "
            "(docs/loadtest.md, Thresholds, lists them)"
        )
    kind = METRICS[metric][0]
    factor = _UNITS[kind].get(unit)
    if factor is None:
        raise ThresholdError(
            f"threshold {shown!r}: {metric} does not take {unit!r}; {_UNIT_HELP[kind]}"
        )
    limit = float(number) * factor
    if not math.isfinite(limit):
        raise ThresholdError(f"threshold {shown!r}: the number is out of range")
    return Threshold(expression=expression.strip(), metric=metric, op=op, limit=limit)


def metric_value(metric: str, report: LoadTestReport) -> float | None:
    """The value of `metric` in `report` in its base unit; None when the run has none (no
    latency recorded, nothing sent)."""
    return METRICS[metric][2](report)


def evaluate(thresholds: Sequence[Threshold], report: LoadTestReport) -> list[ThresholdResult]:
    """Check each threshold against the report; a metric without a value fails."""
    results = []
    for t in thresholds:
        actual = metric_value(t.metric, report)
        passed = actual is not None and _OPS[t.op](actual, t.limit)
        results.append(
            ThresholdResult(
                expression=t.expression,
                metric=t.metric,
                op=t.op,
                limit=t.limit,
                actual=actual,
                passed=passed,
                shown=show_value(t.metric, actual),
            )
        )
    return results


def show_value(metric: str, value: float | None) -> str:
    """A metric's value for people: `35.8 ms`, `1.2%`, `1,916`, `448.1/s`, or `no data`."""
    if value is None:
        return "no data"
    kind = METRICS[metric][0] if metric in METRICS else "count"
    if kind == "latency":
        return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"
    if kind == "rate":
        return f"{100 * value:.2f}%"
    if kind == "throughput":
        return f"{value:,.1f}/s"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def format_results(results: Sequence[ThresholdResult]) -> str:
    """The pass/fail lines of the terminal summary."""
    if not results:
        return ""
    failed = sum(not r.passed for r in results)
    lines = [f"thresholds: {len(results) - failed} passed, {failed} failed"]
    width = max(len(r.expression) for r in results)
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        lines.append(f"  {mark}  {r.expression:<{width}}  {r.metric} = {r.shown}")
    return "\n".join(lines) + "\n"
