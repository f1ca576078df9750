"""Sections of the load-test report page beyond the charts of page.py: the event timeline
(periods as spans, one-off events as markers), response codes and errors over time, latency
per SRV, the thresholds, and the curated "gateway under test".

Each returns the section's HTML, or the one line saying there is nothing to show.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

from workers.tools.loadtest import svg
from workers.tools.loadtest.gateway_table import Curated, Fact, curate
from workers.tools.loadtest.htmlparts import empty_note, ms, table
from workers.tools.loadtest.report_schema import OUTCOMES, LoadTestReport, Span

__all__ = [
    "codes_over_time",
    "gateway_under_test",
    "srv_latency",
    "threshold_section",
    "timeline",
    "timeline_rows",
]

_SPAN_ROWS = 16
_CODES_DRAWN = 6
_SPARE_COLOURS = (svg.BLUE, svg.YELLOW, svg.SKY, svg.GREY)
_CODE_OUTCOME = {"I": "accepted", "T": "throttled", "E": "rejected"}
_Q_OUTCOME = {"Q4": "released", "Q5": "deleted"}
_SPAN_COLOURS = {"throttled": svg.ORANGE, "quarantined": svg.PURPLE, "storm": svg.VERMILLION}
_SPAN_NOUN = {
    "throttled": "answers throttled",
    "quarantined": "answers quarantined",
    "storm": "storm copies",
}
_MARKER_NAMES = {
    "throttling": "first throttled (per User)",
    "quarantine": "first quarantined (per User)",
    "storm": "storm: first copy (per device)",
    "fault": "fault starts",
    "phase": "phase",
    "unfinished": "unfinished at the end",
}


def _outcome_of(code: str) -> str:
    """The outcome a response code stands for (docs/contract.md), or ''."""
    if code in _Q_OUTCOME:
        return _Q_OUTCOME[code]
    return "quarantined" if code.startswith("Q") else _CODE_OUTCOME.get(code[:1], "")


def code_colours(codes: list[str]) -> dict[str, str]:
    """A colour per response code: the first code of an outcome (docs/contract.md: I99
    accepted, E* rejected, T1 throttled, Q1-Q3 quarantined, Q4 released, Q5 deleted) takes
    the outcome's colour, further ones a spare colour, so no two codes look the same."""
    taken: set[str] = set()
    colours: dict[str, str] = {}
    spare = 0
    for code in codes:
        colour = svg.OUTCOME_COLOURS.get(_outcome_of(code))
        if colour is None or colour in taken:
            colour = _SPARE_COLOURS[spare % len(_SPARE_COLOURS)]
            spare += 1
        taken.add(colour)
        colours[code] = colour
    return colours


def x_max(report: LoadTestReport) -> float:
    """The right end of every time axis of a report."""
    return max(report.elapsed_s, len(report.buckets) * report.bucket_s)


def timeline_rows(report: LoadTestReport) -> tuple[list[svg.Span], int]:
    """Rows of the timeline: one per (kind, label) of the spans, the longest-lasting first
    (at most 16; the count of rows left out is returned too), then one per event kind."""
    grouped: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in report.spans:
        grouped[(span.kind, span.label)].append(span)
    order = sorted(grouped.items(), key=lambda kv: (-sum(s.count for s in kv[1]), kv[0]))
    rows = []
    for (kind, label), spans in order[:_SPAN_ROWS]:
        noun = _SPAN_NOUN.get(kind, "records")
        rows.append(
            svg.Span(
                label=f"{kind}: {label}",
                colour=_SPAN_COLOURS.get(kind, svg.event_colour(kind)),
                periods=[
                    (
                        s.start_s,
                        max(s.end_s, s.start_s),
                        f"{kind} {label}: {s.start_s:.1f} s to {s.end_s:.1f} s, {s.count:,} {noun}",
                    )
                    for s in spans
                ],
            )
        )
    by_kind: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for event in report.events:
        by_kind[event.kind].append((event.t_s, f"{event.t_s:.2f} s: {event.detail}"))
    for kind in sorted(by_kind):
        rows.append(
            svg.Span(
                label=_MARKER_NAMES.get(kind, kind),
                colour=svg.event_colour(kind),
                markers=by_kind[kind],
            )
        )
    return rows, max(len(order) - _SPAN_ROWS, 0)


def timeline(report: LoadTestReport, width: int) -> str:
    """The event timeline under the throughput chart, or one line when there was none."""
    rows, left_out = timeline_rows(report)
    if not rows:
        return (
            '<p class="empty" id="timeline-none">No throttling, quarantine, storm or fault '
            "events in this run.</p>"
        )
    chart = svg.span_timeline(title="Events", width=width, x_max=x_max(report), rows=rows)
    more = (
        f'<p class="note">{left_out:,} more throttling, quarantine or storm rows are in '
        "report.json (<code>spans</code>).</p>"
        if left_out
        else ""
    )
    return f'<div id="timeline">{chart}{more}</div>'


def codes_over_time(report: LoadTestReport, width: int) -> str:
    """Response codes per second (stacked) and errors per second (lines) over the run."""
    b = report.buckets
    per_s = 1.0 / report.bucket_s
    totals = report.totals.response_codes
    order = {o: i for i, o in enumerate(OUTCOMES)}
    drawn = sorted(list(totals)[:_CODES_DRAWN], key=lambda c: order.get(_outcome_of(c), 99))
    rest = [c for c in totals if c not in drawn]
    errors = any(x.deadletters or x.completed_failed or x.outcomes.get("rejected") for x in b)
    title = "Response codes and errors over time"
    if not totals and not errors:
        return empty_note("codes-time", title, "no answers.")
    if not any(x.codes for x in b) and not errors:
        return empty_note("codes-time", title, "not recorded in this report (an older format).")
    colours = code_colours(drawn)
    stacks = [
        svg.Stack(
            name=f"code {code}",
            colour=colours[code],
            values=[x.codes.get(code, 0) * per_s for x in b],
        )
        for code in drawn
    ]
    if rest:
        stacks.append(
            svg.Stack(
                name="other codes",
                colour=svg.GREY,
                values=[sum(n for c, n in x.codes.items() if c not in drawn) * per_s for x in b],
            )
        )
    mid = [x.t_s + report.bucket_s / 2 for x in b]
    lines = [
        svg.Line(name=name, colour=colour, dash=dash, points=list(zip(mid, values, strict=True)))
        for name, colour, dash, values in (
            ("rejected", svg.VERMILLION, "", [x.outcomes.get("rejected", 0) * per_s for x in b]),
            ("device failures", svg.BLACK, "6 4", [x.completed_failed * per_s for x in b]),
            ("dead letters", svg.BLUE, "2 3", [x.deadletters * per_s for x in b]),
        )
        if any(values)
    ]
    chart = svg.time_chart(
        title="Response codes and errors over time",
        width=width,
        height=240,
        x_max=x_max(report),
        bucket_s=report.bucket_s,
        lines=lines,
        stacks=stacks,
        y_label="per second",
    )
    legend = svg.legend(
        [(s.name, s.colour, "area") for s in stacks]
        + [(ln.name, ln.colour, ln.dash or "") for ln in lines]
    )
    return (
        f'<section id="codes-time"><h2>Response codes and errors over time</h2>{legend}{chart}'
        '<p class="note">The gateway\'s answers per second by response code (stacked); '
        "lines: rejected answers, failed device answers and dead-lettered records per "
        "second.</p></section>"
    )


def srv_latency(report: LoadTestReport) -> str:
    """The table of gateway latency percentiles per SRV."""
    if not report.srv_latency:
        why = (
            "not recorded in this report (an older format)."
            if report.totals.answered
            else ("no answers.")
        )
        return empty_note("srv-latency", "Latency per SRV", why)
    rows = [
        [r.srv, r.count, ms(r.p50_ms), ms(r.p90_ms), ms(r.p99_ms), ms(r.p999_ms), ms(r.max_ms)]
        for r in report.srv_latency
    ]
    numbers = table(["SRV", "answers", "p50", "p90", "p99", "p99.9", "max"], rows, cls="num")
    return (
        f'<section id="srv-latency"><h2>Gateway latency per SRV</h2>{numbers}'
        '<p class="note">From the request sent to the gateway\'s answer, per SRV (HDR, 3 '
        "significant figures); the most answered first.</p></section>"
    )


def threshold_section(report: LoadTestReport) -> str:
    """The `--threshold` results; nothing at all when none was given."""
    if not report.thresholds:
        return ""
    failed = sum(not t.passed for t in report.thresholds)
    rows = "".join(
        f'<tr class="{"pass" if t.passed else "fail"}"><td class="t"><code>{escape(t.expression)}'
        f'</code></td><td class="t">{escape(t.shown)}</td><td class="t verdict-cell">'
        f"{'✓ pass' if t.passed else '✗ fail'}</td></tr>"
        for t in report.thresholds
    )
    head = (
        f"{failed} of {len(report.thresholds)} thresholds failed"
        if failed
        else f"all {len(report.thresholds)} thresholds passed"
    )
    return (
        f'<section id="thresholds" class="{"failed" if failed else "passed"}">'
        f"<h2>Thresholds: {escape(head)}</h2><table><thead><tr><th>threshold</th>"
        f"<th>measured</th><th>result</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _facts(facts: list[Fact]) -> list[list[object]]:
    return [[f.name, f.value, f.note] for f in facts]


def gateway_under_test(report: LoadTestReport) -> str:
    """The gateway's own view at the end of the run, curated (gateway_table.py)."""
    c: Curated = curate(report.gateway)
    if c.empty():
        return empty_note(
            "gateway",
            "Gateway under test",
            "its metrics were not read (give --admin-url, or use --embedded).",
        )
    parts = []
    if c.traffic:
        parts.append(
            "<h3>Traffic management</h3>" + table(["what", "value", "note"], _facts(c.traffic))
        )
    if c.users:
        outcomes = [o for o in OUTCOMES if any(u.decisions.get(o) for u in c.users)]
        parts.append(
            "<h3>Per User</h3>"
            + table(
                ["User", "allocation", "rate at the end", *outcomes],
                [
                    [u.user, u.allocation, u.rate, *(u.decisions.get(o, 0) for o in outcomes)]
                    for u in c.users
                ],
                cls="num",
            )
        )
    if c.decisions:
        parts.append("<h3>Decisions</h3>" + table(["outcome", "count", ""], _facts(c.decisions)))
    if c.quarantine:
        parts.append(
            "<h3>Quarantine (ADT)</h3>" + table(["what", "value", "note"], _facts(c.quarantine))
        )
    if c.alerts:
        parts.append(
            "<h3>Storm protection</h3>" + table(["what", "value", "note"], _facts(c.alerts))
        )
    parts.append(
        "<h3>Consumer lag</h3>"
        + table(
            ["service and topic", "lag", ""],
            _facts(c.lag),
            empty="not reported by this gateway (dccgate_consumer_lag_records).",
        )
    )
    return (
        f'<section id="gateway"><h2>Gateway under test</h2><div class="facts">{"".join(parts)}'
        f'</div><p class="note">The gateway\'s own metrics at the end of the run '
        f"({c.series:,} series, all in report.json under <code>gateway</code>).</p></section>"
    )
