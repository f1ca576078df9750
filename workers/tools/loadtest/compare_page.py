"""The HTML page of `dccgate loadtest compare A B`: two saved runs side by side.

Top: which runs, and what makes them hard to compare. Then every metric in A and B with the
change, signed and in percent; throughput, gateway p99 over time and the latency percentile
distribution of both runs overlaid on one chart each (A solid, B dashed); latency per SRV;
the Users, SRVs and rules whose outcomes changed; installs and alerts; each run's thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from workers.tools.loadtest import svg
from workers.tools.loadtest.compare import (
    HEADLINE,
    Comparison,
    MetricChange,
    RunInfo,
    delta_text,
)
from workers.tools.loadtest.htmlparts import empty_note, ms, signed, signed_pct, table
from workers.tools.loadtest.output import encode_json, write_atomically
from workers.tools.loadtest.page import HALF, WIDE, page, utc
from workers.tools.loadtest.report_schema import NOT_ACCEPTED, DiffRow, LoadTestReport

__all__ = ["render_comparison", "write_comparison"]

_A, _B = svg.BLUE, svg.VERMILLION
_TOP = 20


def _section(anchor: str, title: str, inner: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{inner}</section>'


def _runs(c: Comparison) -> str:
    def cell(name: str, info: RunInfo) -> str:
        return (
            f'<section><h2>{name}: {escape(info.scenario)}</h2><p class="meta">'
            f"{escape(info.path)}<br>seed {info.seed} · scale {info.scale:g}x · planned "
            f"{info.duration_s:g} s, ran {info.elapsed_s:.1f} s · started "
            f"{escape(utc(info.started_at_unix_s))}</p></section>"
        )

    notes = ""
    if c.notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in c.notes)
        notes = (
            f'<section class="warning" id="notes"><h2>Read with care</h2><ul>{items}</ul></section>'
        )
    return f'<div class="pair" id="runs">{cell("A", c.a)}{cell("B", c.b)}</div>{notes}'


def _direction(m: MetricChange) -> str:
    """`better`, `worse` or `` for a change, from what the metric means."""
    if not m.delta:
        return ""
    lower_is_better = m.metric.startswith(("p", "e2e_", "max", "mean")) or m.metric in {
        "throttled",
        "quarantined",
        "rejected",
        "deleted",
        "deadletters",
        "installs_failed",
        "unanswered",
        "errors",
        "error_rate",
        "install_failure_rate",
        "throttled_rate",
        "quarantined_rate",
        "rejected_rate",
    }
    higher_is_better = m.metric in {"accepted", "accepted_rate", "throughput", "installs_ok"}
    if lower_is_better:
        return "better" if m.delta < 0 else "worse"
    if higher_is_better:
        return "better" if m.delta > 0 else "worse"
    return ""


def _metric_rows(metrics: Sequence[MetricChange]) -> str:
    rows = []
    for m in metrics:
        if m.a is None and m.b is None:
            continue
        if not m.a and not m.b and not m.metric.startswith(("p", "e2e_")):
            continue
        rows.append(
            f'<tr class="{_direction(m)}"><td class="t">{escape(m.metric)}</td>'
            f'<td class="t note">{escape(m.meaning)}</td><td>{escape(m.a_shown)}</td>'
            f"<td>{escape(m.b_shown)}</td><td>{escape(delta_text(m))}</td></tr>"
        )
    return (
        '<table class="num"><thead><tr><th>metric</th><th class="t">meaning</th><th>A</th>'
        f"<th>B</th><th>change (B - A)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _metrics(c: Comparison) -> str:
    headline = [m for name in HEADLINE for m in c.metrics if m.metric == name]
    rest = [m for m in c.metrics if m.metric not in HEADLINE]
    return (
        f'<section id="metrics"><h2>A and B</h2>{_metric_rows(headline)}'
        f"<details><summary>every other metric</summary>{_metric_rows(rest)}</details>"
        '<p class="note">Metrics that are 0 in both runs are left out. Green: B is better, '
        "vermillion: B is worse (for metrics where that is clear). The names are those of "
        "--threshold (docs/loadtest.md).</p></section>"
    )


def _overlay_time(c: Comparison, a: LoadTestReport, b: LoadTestReport) -> str:
    x_max = max(a.elapsed_s, b.elapsed_s, len(a.buckets) * a.bucket_s, len(b.buckets) * b.bucket_s)

    def series(r: LoadTestReport, field: str) -> list[tuple[float, float | None]]:
        per_s = 1.0 / r.bucket_s
        out: list[tuple[float, float | None]] = []
        for x in r.buckets:
            mid = x.t_s + r.bucket_s / 2
            if field == "sent":
                out.append((mid, x.sent * per_s))
            elif field == "accepted":
                out.append((mid, x.outcomes.get("accepted", 0) * per_s))
            elif field == "not accepted":
                out.append((mid, sum(x.outcomes.get(o, 0) for o in NOT_ACCEPTED) * per_s))
            else:
                out.append((mid, x.gateway_p99_ms))
        return out

    thru_lines = [
        svg.Line(name=f"{side} {field}", colour=colour, dash=dash, points=series(r, field))
        for field, colour in (
            ("sent", svg.BLUE),
            ("accepted", svg.GREEN),
            ("not accepted", svg.ORANGE),
        )
        for side, r, dash in (("A", a, ""), ("B", b, "7 4"))
    ]
    charts = []
    if any(y for line in thru_lines for _, y in line.points):
        chart = svg.time_chart(
            title="Throughput, A and B",
            width=WIDE,
            height=280,
            x_max=x_max,
            bucket_s=min(a.bucket_s, b.bucket_s),
            lines=thru_lines,
            y_label="per second",
        )
        legend = svg.legend([(ln.name, ln.colour, ln.dash) for ln in thru_lines])
        charts.append(
            f'<section id="throughput"><h2>Throughput over time, A (solid) and B (dashed)</h2>'
            f"{legend}{chart}</section>"
        )
    else:
        charts.append(empty_note("throughput", "Throughput", "neither run sent anything."))
    p99 = [
        svg.Line(name=f"{side} gateway p99", colour=colour, dash=dash, points=series(r, "p99"))
        for side, r, colour, dash in (("A", a, _A, ""), ("B", b, _B, "7 4"))
    ]
    pct = [
        (f"{side} {kind}", colour, dash, [(p.percentile, p.value_ms) for p in s.distribution])
        for side, r, colour in (("A", a, _A), ("B", b, _B))
        for kind, s, dash in (
            ("gateway", r.gateway_latency, ""),
            ("end to end", r.e2e_latency, "7 4"),
        )
        if s.distribution
    ]
    pair = []
    if any(y is not None for line in p99 for _, y in line.points):
        chart = svg.time_chart(
            title="Gateway p99 over time, A and B",
            width=HALF,
            height=260,
            x_max=x_max,
            bucket_s=min(a.bucket_s, b.bucket_s),
            lines=p99,
            y_label="latency (ms)",
        )
        legend = svg.legend([(ln.name, ln.colour, ln.dash) for ln in p99])
        pair.append(
            f'<section id="p99-time"><h2>Gateway p99 over time</h2>{legend}{chart}</section>'
        )
    if pct:
        chart = svg.percentile_chart(
            title="Latency by percentile, A and B", width=HALF, height=260, series=pct
        )
        legend = svg.legend([(name, colour, dash) for name, colour, dash, _ in pct])
        pair.append(
            f'<section id="percentiles"><h2>Latency by percentile</h2>{legend}{chart}</section>'
        )
    if not pair:
        charts.append(empty_note("latency", "Latency", "neither run had answers."))
    else:
        charts.append(f'<div class="pair">{"".join(pair)}</div>')
    return "".join(charts)


def _srv_latency(a: LoadTestReport, b: LoadTestReport) -> str:
    rows_a = {r.srv: r for r in a.srv_latency}
    rows_b = {r.srv: r for r in b.srv_latency}
    srvs = sorted(
        {*rows_a, *rows_b},
        key=lambda s: (
            -((rows_a[s].count if s in rows_a else 0) + (rows_b[s].count if s in rows_b else 0))
        ),
    )
    if not srvs:
        return empty_note("srv-latency", "Latency per SRV", "not recorded in either run.")
    missing = [side for side, r in (("A", a), ("B", b)) if not r.srv_latency and r.totals.answered]
    note = (
        f'<p class="note">Not recorded in {" and ".join(missing)} (a report of an older '
        "format).</p>"
        if missing
        else ""
    )
    rows: list[list[object]] = []
    for srv in srvs[:_TOP]:
        ra, rb = rows_a.get(srv), rows_b.get(srv)
        row: list[object] = [srv, ra.count if ra else 0, rb.count if rb else 0]
        for field in ("p50_ms", "p99_ms", "p999_ms"):
            va = getattr(ra, field) if ra else None
            vb = getattr(rb, field) if rb else None
            change = (
                f"{signed(round(vb - va, 1), ' ms')} ({signed_pct(va, vb)})"
                if va is not None and vb is not None
                else "—"
            )
            row += [ms(va), ms(vb), change]
        rows.append(row)
    headers = ["SRV", "answers A", "answers B"]
    headers += [f"{p} {side}" for p in ("p50", "p99", "p99.9") for side in ("A", "B", "Δ")]
    return _section(
        "srv-latency", "Gateway latency per SRV", table(headers, rows, cls="num") + note
    )


def _label_rows(title: str, anchor: str, rows: Sequence[DiffRow], what: str) -> str:
    changed = [r for r in rows if any(r.delta.values())][:_TOP]
    if not changed:
        return empty_note(anchor, title, "the same in both runs.")
    keys = [k for k in ("sent", "accepted", *NOT_ACCEPTED) if any(r.delta.get(k) for r in changed)]
    body = [
        [
            r.label,
            *(
                v
                for k in keys
                for v in (r.base.get(k, 0), r.proposed.get(k, 0), signed(r.delta.get(k, 0)))
            ),
        ]
        for r in changed
    ]
    headers = [what, *(f"{k} {side}" for k in keys for side in ("A", "B", "Δ"))]
    note = '<p class="note">Only the counts that changed; all of them are in compare.json.</p>'
    return _section(anchor, title, table(headers, body, cls="num") + note)


def _small_diff(
    title: str, anchor: str, rows: Sequence[DiffRow], keys: Sequence[str], what: str
) -> str:
    changed = [r for r in rows if any(r.base.get(k) or r.proposed.get(k) for k in keys)]
    if not changed:
        return empty_note(anchor, title, "none in either run.")
    body = [
        [
            r.label,
            *(
                v
                for k in keys
                for v in (r.base.get(k, 0), r.proposed.get(k, 0), signed(r.delta.get(k, 0)))
            ),
        ]
        for r in changed
    ]
    headers = [what, *(f"{k} {side}" for k in keys for side in ("A", "B", "Δ"))]
    return _section(anchor, title, table(headers, body, cls="num"))


def _thresholds(a: LoadTestReport, b: LoadTestReport) -> str:
    if not a.thresholds and not b.thresholds:
        return ""
    rows = []
    for side, r in (("A", a), ("B", b)):
        for t in r.thresholds:
            rows.append([side, t.expression, t.shown, "pass" if t.passed else "FAIL"])
    numbers = table(["run", "threshold", "measured", "result"], rows)
    return _section("thresholds", "Thresholds of each run", numbers)


def render_comparison(c: Comparison, a: LoadTestReport, b: LoadTestReport) -> str:
    """The whole HTML page of a comparison."""
    title = f"dccgate load test: A against B ({a.scenario} / {b.scenario})"
    d = c.diff
    body = [
        f"<h1>{escape(title)}</h1>",
        _runs(c),
        _metrics(c),
        _thresholds(a, b),
        _overlay_time(c, a, b),
        _srv_latency(a, b),
        _label_rows("Users whose outcomes changed", "users", d.by_user, "User"),
        _label_rows("SRVs whose outcomes changed", "srvs", d.by_srv, "SRV"),
        _label_rows("Rules whose outcomes changed", "rules", d.by_rule, "rule"),
        '<div class="pair">',
        _small_diff("Installs per region", "installs", d.installs, ("ok", "failed"), "region"),
        _small_diff(
            "Alerts per code", "alerts", d.alerts, ("suppressed", "storms", "delivered"), "code"
        ),
        "</div>",
        f"<footer>{escape(c.format)} · written by dccgate loadtest compare</footer>",
    ]
    return page(title, "".join(body))


def write_comparison(
    comparison: Comparison, a: LoadTestReport, b: LoadTestReport, directory: Path
) -> tuple[Path, Path]:
    """Write compare.json and compare.html into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "compare.json", directory / "compare.html"
    write_atomically(json_path, encode_json(comparison))
    write_atomically(html_path, render_comparison(comparison, a, b).encode("utf-8"))
    return json_path, html_path
