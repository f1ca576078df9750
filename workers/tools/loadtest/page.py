"""The HTML page of a load-test report: one self-contained file, inline CSS and SVG.

Read top to bottom: the verdict (requests and what became of them, p99 latency, installs,
alerts) and the thresholds, then throughput with the event timeline under it on the same
time axis, response codes and errors over time, latency over time, the HDR percentile
distribution and latency per SRV, outcomes per User / SRV / rule, installs, alerts, dead
letters, the gateway under test and the event list. A section with nothing to show is one
line saying so. Every string from the run is escaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from workers.tools.loadtest import svg
from workers.tools.loadtest.htmlparts import empty_note, table
from workers.tools.loadtest.htmlparts import ms as _ms
from workers.tools.loadtest.htmlparts import pct as _pct
from workers.tools.loadtest.page_sections import (
    codes_over_time,
    gateway_under_test,
    srv_latency,
    threshold_section,
    timeline,
)
from workers.tools.loadtest.report_schema import (
    OUTCOMES,
    InstallRow,
    LatencySummary,
    LoadTestReport,
    OutcomeRow,
)

__all__ = ["CSS", "page", "render_report", "table", "throughput", "utc"]

WIDE = 1180
HALF = 580
_EVENTS_SHOWN = 200

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; background: #f4f5f7; color: #1d2330; }
main { max-width: 1220px; margin: 0 auto; padding: 20px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; }
.meta { color: #545b68; margin: 0 0 16px; }
section, .tile { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; }
section { padding: 14px 18px; margin: 0 0 16px; }
.tiles { display: grid; grid-template-columns: repeat(5, 1fr); gap: 10px; margin: 0 0 16px; }
.tile { padding: 10px 12px; border-left: 6px solid #0072B2; }
.tile .k { color: #545b68; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .v { font-size: 24px; font-weight: 650; }
.tile .s { color: #545b68; font-size: 12px; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
h3 { font-size: 14px; margin: 12px 0 2px; color: #303644; }
.empty { color: #545b68; margin: 0 0 12px; padding: 6px 12px; border-left: 4px solid #dde1e7; }
.pair > .empty { align-self: start; }
#thresholds.passed { border-left: 6px solid #009E73; }
#thresholds.failed { border-left: 6px solid #D55E00; }
tr.pass .verdict-cell { color: #00704f; font-weight: 650; }
tr.fail .verdict-cell { color: #b34700; font-weight: 650; }
tr.better td:last-child { color: #00704f; font-weight: 600; }
tr.worse td:last-child { color: #b34700; font-weight: 600; }
td.t code { white-space: pre-wrap; }
.pair > section { margin: 0 0 16px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: #303644; }
svg text.label { font-weight: 600; }
svg text.nodata { font-size: 16px; fill: #7b8190; }
svg .plot { fill: #fbfbfc; stroke: #e3e6eb; }
svg .grid { stroke: #e3e6eb; }
svg .axis, svg .tick { stroke: #545b68; }
svg .line { fill: none; stroke-width: 2.2; stroke-linejoin: round; }
svg .area { stroke: none; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 16px; padding: 0;
  margin: 4px 0 8px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 14px; height: 12px; border-radius: 2px; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums;
  display: block; overflow-x: auto; max-width: 100%; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e6e8ec; text-align: right; }
th:first-child, td:first-child, td.t, th.t { text-align: left; }
td { white-space: nowrap; }
td.t { white-space: normal; overflow-wrap: break-word; }
th { white-space: nowrap; }
table.num th, table.num td { padding: 3px 6px; }
td:first-child, td.t:first-child { white-space: nowrap; }
th { color: #545b68; font-weight: 600; }
details > summary { cursor: pointer; color: #0a5a8a; }
.note { color: #545b68; font-size: 12px; }
.warning { border-left: 6px solid #E69F00; }
.changes li { margin: 4px 0; }
.changes li.main-effect { font-size: 15px; }
footer { color: #7b8190; font-size: 12px; text-align: center; margin: 8px 0 24px; }
"""


def utc(unix_s: float | None) -> str:
    """Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, or an em dash."""
    if unix_s is None:
        return "—"
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tile(key: str, value: str, sub: str = "", colour: str = svg.BLUE) -> str:
    return (
        f'<div class="tile" style="border-left-color:{colour}"><div class="k">{escape(key)}</div>'
        f'<div class="v">{escape(value)}</div><div class="s">{escape(sub)}</div></div>'
    )


def _verdict(report: LoadTestReport) -> str:
    t = report.totals
    answered = t.answered
    tiles = [
        _tile("requests sent", f"{t.sent:,}", f"{answered:,} answered ({_pct(answered, t.sent)})"),
    ]
    for outcome in ("accepted", "throttled", "quarantined", "rejected"):
        count = t.outcomes.get(outcome, 0)
        tiles.append(
            _tile(
                outcome,
                _pct(count, answered),
                f"{count:,} of the answers",
                svg.OUTCOME_COLOURS[outcome],
            )
        )
    g, e = report.gateway_latency, report.e2e_latency
    tiles.append(_tile("gateway p99", _ms(g.p99_ms), f"p50 {_ms(g.p50_ms)}, max {_ms(g.max_ms)}"))
    tiles.append(
        _tile("end-to-end p99", _ms(e.p99_ms), f"p50 {_ms(e.p50_ms)}, {e.count:,} answers", svg.SKY)
    )
    per_region = "; ".join(
        f"{row.region} {row.ok:,}/{row.failed:,} ({_pct(row.failed, row.ok + row.failed)} failed)"
        for row in report.installs
    )
    tiles.append(
        _tile(
            "installs ok / failed",
            f"{t.installs_ok:,} / {t.installs_failed:,}",
            per_region or "no installs",
            svg.VERMILLION if t.installs_failed else svg.GREEN,
        )
    )
    tiles.append(
        _tile(
            "alerts suppressed",
            f"{t.alerts_suppressed:,}",
            f"{t.alerts_raised:,} raised, {t.alerts_delivered:,} delivered, {t.storms} storms",
            svg.PURPLE,
        )
    )
    tiles.append(
        _tile(
            "dead letters",
            f"{t.deadletters:,}",
            f"{len(report.deadletters)} reasons",
            svg.BLACK if t.deadletters else svg.GREY,
        )
    )
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _throughput(report: LoadTestReport) -> str:
    if not any(x.sent or x.answered or x.completed for x in report.buckets):
        return throughput(report, WIDE)
    return (
        '<section id="throughput"><h2>Throughput over time, and events</h2>'
        f"{throughput(report, WIDE)}"
        '<p class="note">Requests sent per second (line), the gateway\'s answers per second by '
        "outcome (stacked areas), end-to-end answers of the simulated devices (dashed). Under it, "
        "on the same time axis: bars for periods (throttling and quarantine per User, storms per "
        "region and alert code, from the first answer or copy to the last), triangles for "
        "one-off events at their exact time. Hover for details.</p>"
        "</section>"
    )


def throughput(report: LoadTestReport, width: int) -> str:
    """Legend, throughput chart and the event timeline under it, `width` pixels wide."""
    b, per_s = report.buckets, 1.0 / report.bucket_s
    x_max = max(report.elapsed_s, len(b) * report.bucket_s)
    mid = [(bucket.t_s + report.bucket_s / 2) for bucket in b]
    present = [o for o in (*OUTCOMES, "other") if any(x.outcomes.get(o) for x in b)]
    stacks = [
        svg.Stack(
            name=f"answered: {o}",
            colour=svg.OUTCOME_COLOURS[o],
            values=[x.outcomes.get(o, 0) * per_s for x in b],
        )
        for o in present
    ]
    lines = [
        svg.Line(
            name="sent",
            colour=svg.BLUE,
            points=[(m, x.sent * per_s) for m, x in zip(mid, b, strict=True)],
        ),
        svg.Line(
            name="completed end to end",
            colour=svg.BLACK,
            dash="6 4",
            points=[(m, x.completed * per_s) for m, x in zip(mid, b, strict=True)],
        ),
    ]
    chart = svg.time_chart(
        title="Throughput over time",
        width=width,
        height=300,
        x_max=x_max,
        bucket_s=report.bucket_s,
        lines=lines,
        stacks=stacks,
        y_label="messages per second",
    )
    entries = [("sent", svg.BLUE, ""), ("completed end to end", svg.BLACK, "6 4")]
    entries += [(f"answered: {o}", svg.OUTCOME_COLOURS[o], "area") for o in present]
    if not any(x.sent or x.answered or x.completed for x in b):
        return empty_note("throughput-none", "Throughput", "nothing was sent or answered.") + (
            timeline(report, width)
        )
    return f"{svg.legend(entries)}{chart}{timeline(report, width)}"


def _latency_over_time(report: LoadTestReport) -> str:
    if not report.gateway_latency.count and not report.e2e_latency.count:
        return empty_note("latency-time", "Latency over time", "no answers to measure.")
    b = report.buckets
    x_max = max(report.elapsed_s, len(b) * report.bucket_s)
    mid = [x.t_s + report.bucket_s / 2 for x in b]
    charts = []
    for title, p50, p99, count in (
        ("Gateway latency over time", "gateway_p50_ms", "gateway_p99_ms", report.gateway_latency),
        ("End-to-end latency over time", "e2e_p50_ms", "e2e_p99_ms", report.e2e_latency),
    ):
        if not count.count:
            charts.append(empty_note(p50, title, "no answers of this kind."))
            continue
        lines = [
            svg.Line(
                name="p50",
                colour=svg.BLUE,
                points=[(m, getattr(x, p50)) for m, x in zip(mid, b, strict=True)],
            ),
            svg.Line(
                name="p99",
                colour=svg.VERMILLION,
                dash="7 3",
                points=[(m, getattr(x, p99)) for m, x in zip(mid, b, strict=True)],
            ),
        ]
        chart = svg.time_chart(
            title=title,
            width=HALF,
            height=260,
            x_max=x_max,
            bucket_s=report.bucket_s,
            lines=lines,
            y_label="latency (ms)",
        )
        legend = svg.legend([("p50", svg.BLUE, ""), ("p99", svg.VERMILLION, "7 3")])
        charts.append(f"<section><h2>{escape(title)}</h2>{legend}{chart}</section>")
    return f'<div class="pair" id="latency-time">{"".join(charts)}</div>'


def _percentiles(report: LoadTestReport) -> str:
    g, e = report.gateway_latency, report.e2e_latency
    if not g.count and not e.count:
        return empty_note("percentiles", "Latency percentiles", "no answers to measure.")
    series = [
        (name, colour, dash, [(p.percentile, p.value_ms) for p in s.distribution])
        for name, colour, dash, s in (
            ("gateway", svg.BLUE, "", g),
            ("end to end", svg.ORANGE, "7 3", e),
        )
        if s.distribution
    ]
    chart = svg.percentile_chart(
        title="Latency by percentile", width=HALF, height=300, series=series
    )
    legend = svg.legend([(name, colour, dash) for name, colour, dash, _ in series])

    def row(name: str, s: LatencySummary) -> list[object]:
        return [
            name,
            s.count,
            *(
                _ms(v).removesuffix(" ms")
                for v in (s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms)
            ),
        ]

    numbers = table(
        ["latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max", "mean"],
        [row("gateway", g), row("end to end", e)],
        cls="num",
    )
    return (
        '<div class="pair" id="percentiles"><section><h2>Latency percentiles (HDR histogram)</h2>'
        f"{legend}{chart}</section><section><h2>Latency summary</h2>{numbers}"
        '<p class="note">From HDR histograms with three significant figures (0.1% error). '
        "Gateway latency: from the request sent to the gateway's answer on "
        "dcc.user.responses. End to end: to the simulated device's answer. The encoded "
        "histograms are in report.json (<code>hdr</code>) for any HdrHistogram tool.</p>"
        "</section></div>"
    )


def _outcome_section(
    title: str, anchor: str, rows: Sequence[OutcomeRow], what: str, empty: str = "no answers."
) -> str:
    if not any(r.answered for r in rows):
        return empty_note(anchor, title, empty)
    present = [o for o in (*OUTCOMES, "other") if any(r.outcomes.get(o) for r in rows)]
    bars = [
        svg.Bar(
            label=r.label if not r.folded else f"others ({r.folded} {what})",
            segments=[(o, float(r.outcomes.get(o, 0))) for o in present],
        )
        for r in rows
    ]
    chart = svg.hbar_chart(
        title=title, width=HALF, bars=bars, colours=svg.OUTCOME_COLOURS, x_label="answers"
    )
    legend = svg.legend([(o, svg.OUTCOME_COLOURS[o], "area") for o in present])
    numbers = table(
        [what[:-1] if what.endswith("s") else what, "sent", "answered", *present],
        [
            [b.label, r.sent, r.answered, *(r.outcomes.get(o, 0) for o in present)]
            for b, r in zip(bars, rows, strict=True)
        ],
    )
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2>{legend}{chart}'
        f"<details><summary>numbers</summary>{numbers}</details></section>"
    )


def _flow_chart(rows: list[InstallRow], title: str, noun: str) -> str:
    bars = [
        svg.Bar(
            label=r.region,
            segments=[("ok", float(r.ok)), ("failed", float(r.failed))],
            note=f"{_pct(r.failed, r.ok + r.failed)} failed",
        )
        for r in rows
    ]
    colours = {"ok": svg.GREEN, "failed": svg.VERMILLION}
    chart = svg.hbar_chart(
        title=title, width=HALF, bars=bars, colours=colours, x_label=noun, right=96
    )
    steps = table(
        ["region", "failed step", noun],
        [[r.region, step, n] for r in rows for step, n in r.failed_steps.items()],
        empty=f"No {noun} failed.",
    )
    return f"{chart}<h2>Where failed {escape(noun)} stopped</h2>{steps}"


def _installs(report: LoadTestReport) -> str:
    if not report.installs and not report.completions:
        return empty_note("installs", "Installs per region", "no installs or device answers.")
    if not report.installs:
        completions = table(
            ["region", "device answers ok", "failed"],
            [[r.region, r.ok, r.failed] for r in report.completions],
        )
        return (
            '<section id="installs"><h2>Device answers per region</h2>'
            f'{completions}<p class="note">No installs in this run.</p></section>'
        )
    legend = svg.legend([("completed", svg.GREEN, "area"), ("failed", svg.VERMILLION, "area")])
    completions = table(
        ["region", "device answers ok", "failed"],
        [[r.region, r.ok, r.failed] for r in report.completions],
    )
    chart = _flow_chart(report.installs, "Installs per region", "installs")
    return (
        f'<section id="installs"><h2>Installs per region</h2>{legend}{chart}'
        f"<h2>Device answers per region</h2>{completions}</section>"
    )


def _firmware(report: LoadTestReport) -> str:
    """Only for a run with a firmware campaign."""
    if not report.firmware:
        return ""
    legend = svg.legend([("activated", svg.GREEN, "area"), ("failed", svg.VERMILLION, "area")])
    chart = _flow_chart(report.firmware, "Firmware updates per region", "meters")
    return f'<section id="firmware"><h2>Firmware campaign per region</h2>{legend}{chart}</section>'


def _alerts(report: LoadTestReport) -> str:
    if not report.alerts:
        return empty_note("alerts", "Alerts and storms", "no device alerts in this run.")
    by_code: dict[str, list[int]] = {}
    for r in report.alerts:
        sums = by_code.setdefault(r.alert_code, [0, 0, 0])
        sums[0] += r.forwarded_at_once
        sums[1] += r.periodic_copies + r.final_copies
        sums[2] += r.suppressed
    bars = [
        svg.Bar(
            label=code,
            segments=[
                ("forwarded at once", float(s[0])),
                ("storm copies", float(s[1])),
                ("suppressed", float(s[2])),
            ],
        )
        for code, s in sorted(by_code.items(), key=lambda kv: -sum(kv[1]))[:20]
    ]
    colours = {"forwarded at once": svg.GREEN, "storm copies": svg.BLUE, "suppressed": svg.PURPLE}
    chart = svg.hbar_chart(
        title="Alerts per code", width=HALF, bars=bars, colours=colours, x_label="alerts"
    )
    legend = svg.legend([(name, colour, "area") for name, colour in colours.items()])
    numbers = table(
        ["region", "code", "raised", "delivered", "at once", "periodic", "final", "suppressed"],
        [
            [
                r.region,
                r.alert_code,
                r.raised,
                r.delivered,
                r.forwarded_at_once,
                r.periodic_copies,
                r.final_copies,
                r.suppressed,
            ]
            for r in report.alerts
        ],
    )
    return (
        f'<section id="alerts"><h2>Alerts and storms</h2>{legend}{chart}'
        '<p class="note">Per alert (first recipient): forwarded at once, storm copies (periodic '
        "and final, header dccgate-storm-copy), and suppressed: the sum of "
        "throttled_alert_count over periodic copies. Delivered counts every record on "
        f"dcc.alerts.outbound, one per recipient.</p><details><summary>numbers</summary>"
        f"{numbers}</details></section>"
    )


def _codes_and_dead(report: LoadTestReport) -> str:
    t = report.totals
    if not t.response_codes and not report.deadletters:
        return empty_note(
            "codes", "Response codes and dead letters", "no answers, no dead letters."
        )
    codes = table(
        ["response code", "answers", "share"],
        [[code, n, _pct(n, t.answered)] for code, n in t.response_codes.items()],
        empty="No answers.",
    )
    dead = (
        table(["dead-letter reason", "records"], list(report.deadletters.items()))
        if report.deadletters
        else '<p class="note">No record was dead-lettered.</p>'
    )
    return (
        f'<section id="codes"><h2>Response codes</h2>{codes}<h2>Dead letters</h2>{dead}</section>'
    )


def _events(report: LoadTestReport) -> str:
    t = report.totals
    if not report.events:
        return empty_note("events", "Events", "none recorded.")
    events = table(
        ["t (s)", "kind", "detail"],
        [[f"{e.t_s:.2f}", e.kind, e.detail] for e in report.events[:_EVENTS_SHOWN]],
    )
    more = len(report.events) - _EVENTS_SHOWN + t.events_dropped
    more_note = f'<p class="note">{more:,} more events not listed.</p>' if more > 0 else ""
    return f'<section id="events"><h2>Events</h2>{events}{more_note}</section>'


def render_report(report: LoadTestReport) -> str:
    """The whole HTML page of one run."""
    title = f"dccgate load test: {report.scenario}"
    meta = (
        f"seed {report.seed} · scale {report.scale:g}x · planned {report.duration_s:g} s, ran "
        f"{report.elapsed_s:.1f} s · {report.bucket_s:g} s buckets · started "
        f"{utc(report.started_at_unix_s)} · finished {utc(report.finished_at_unix_s)}"
    )
    body = [
        f'<h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p>',
        _verdict(report),
        threshold_section(report),
        _throughput(report),
        codes_over_time(report, WIDE),
        _latency_over_time(report),
        _percentiles(report),
        srv_latency(report),
        '<div class="pair">',
        _outcome_section("Outcomes per User", "users", report.by_user, "Users"),
        _outcome_section("Outcomes per SRV", "srvs", report.by_srv, "SRVs"),
        "</div>",
        '<div class="pair">',
        _outcome_section(
            "Outcomes per rule",
            "rules",
            report.by_rule,
            "rules",
            "no answer named a rule (nothing was throttled, quarantined or rejected by one).",
        ),
        _installs(report),
        _firmware(report),
        "</div>",
        _alerts(report),
        gateway_under_test(report),
        '<div class="pair">',
        _codes_and_dead(report),
        _events(report),
        "</div>",
        f"<footer>{escape(report.format)} · written by dccgate loadtest</footer>",
    ]
    return page(title, "".join(body))


def page(title: str, body: str) -> str:
    """A complete HTML document around `body` (already escaped)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
