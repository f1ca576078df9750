"""The HTML page of a what-if: the current and the proposed run side by side, and the change.

Top: what would be throttled, quarantined, rejected or suppressed under the proposal that is
not now (and the reverse), in numbers and in words. Then both runs' throughput and events
next to each other, the Users, SRVs and rules whose outcomes change, installs and alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from workers.tools.loadtest import svg
from workers.tools.loadtest.gateway_table import curate
from workers.tools.loadtest.page import HALF, page, table, throughput
from workers.tools.loadtest.report_schema import (
    NOT_ACCEPTED,
    OUTCOMES,
    DiffRow,
    LoadTestReport,
    WhatIfDiff,
)

__all__ = ["render_whatif"]

_TOP = 15


def _signed(value: float, unit: str = "") -> str:
    if value == 0:
        return "0" + unit
    text = f"{value:+,.1f}" if isinstance(value, float) else f"{value:+,}"
    return text + unit


def _changed(rows: Sequence[DiffRow]) -> list[DiffRow]:
    return [r for r in rows if any(r.delta.get(k, 0) for k in NOT_ACCEPTED)]


def _verdict(diff: WhatIfDiff) -> str:
    t = diff.totals
    rows: list[list[object]] = []
    for key in (
        "sent",
        "answered",
        *OUTCOMES,
        "alerts_suppressed",
        "storms",
        "installs_ok",
        "installs_failed",
        "deadletters",
    ):
        base, proposed = t.base.get(key, 0), t.proposed.get(key, 0)
        if key in ("released", "deleted") and not (base or proposed):
            continue
        rows.append([key.replace("_", " "), base, proposed, _signed(proposed - base)])
    for latency in diff.latency:
        for p in ("p50", "p99"):
            base_ms, proposed_ms = latency.base_ms.get(p), latency.proposed_ms.get(p)
            change = (
                _signed(round(proposed_ms - base_ms, 1), " ms")
                if base_ms is not None and proposed_ms is not None
                else "—"
            )
            rows.append([f"{latency.kind} latency {p} (ms)", base_ms, proposed_ms, change])
    return table(["", "current", "proposed", "change"], rows, cls="verdict")


def _by_user(diff: WhatIfDiff, key: str) -> str:
    movers = sorted(diff.by_user, key=lambda r: -abs(r.delta.get(key, 0)))
    return ", ".join(f"{r.label} {_signed(r.delta[key])}" for r in movers[:5] if r.delta.get(key))


def _effects(diff: WhatIfDiff) -> list[tuple[float, str]]:
    """Every change worth saying, with its size: the share of the current run's answers
    (installs, alerts) it moves, or the relative change of a latency."""
    t = diff.totals
    answered = max(t.base.get("answered", 0), 1)
    installs = max(t.base.get("installs_ok", 0) + t.base.get("installs_failed", 0), 1)
    effects: list[tuple[float, str]] = []
    for outcome in ("accepted", *NOT_ACCEPTED):
        change = t.delta.get(outcome, 0)
        if not change:
            continue
        base = t.base.get(outcome, 0)
        word = "more" if change > 0 else "fewer"
        what = (
            "requests accepted (forwarded to devices)"
            if outcome == "accepted"
            else f"requests {outcome}"
        )
        effects.append(
            (
                abs(change) / answered,
                f"<b>{abs(change):,} {word} {escape(what)}</b> ({base:,} now, "
                f"{t.proposed.get(outcome, 0):,} proposed); by User: "
                f"{escape(_by_user(diff, outcome))}.",
            )
        )
    for key, what in (
        ("installs_ok", "installs completed"),
        ("installs_failed", "installs failed"),
    ):
        change = t.delta.get(key, 0)
        if change:
            word = "more" if change > 0 else "fewer"
            effects.append((abs(change) / installs, f"<b>{abs(change):,} {word} {what}</b>."))
    suppressed = t.delta.get("alerts_suppressed", 0)
    if suppressed:
        codes = ", ".join(
            f"{r.label} {_signed(r.delta.get('suppressed', 0))}"
            for r in diff.alerts[:5]
            if r.delta.get("suppressed")
        )
        word = "more" if suppressed > 0 else "fewer"
        effects.append(
            (
                abs(suppressed) / max(t.base.get("alerts_raised", 0), 1),
                f"<b>{abs(suppressed):,} {word} alerts suppressed</b> by storm protection; by "
                f"alert code: {escape(codes)}.",
            )
        )
    for latency in diff.latency:
        before, after = latency.base_ms.get("p99"), latency.proposed_ms.get("p99")
        if before and after and abs(after - before) / before >= 0.1:
            word = "higher" if after > before else "lower"
            effects.append(
                (
                    abs(after - before) / before,
                    f"<b>{latency.kind} p99 latency {word}</b>: {before:,.1f} ms now, "
                    f"{after:,.1f} ms proposed.",
                )
            )
    return sorted(effects, key=lambda e: -e[0])


def _sentences(diff: WhatIfDiff) -> str:
    effects = _effects(diff)
    if not effects:
        return '<ul class="changes"><li>No request or alert would be treated differently.</li></ul>'
    items = [f'<li class="main-effect">Main effect: {effects[0][1]}</li>']
    items += [f"<li>{text}</li>" for _, text in effects[1:]]
    return (
        f'<ul class="changes">{"".join(items)}</ul><p class="note">Ordered by the size of the '
        "change: the share of the current run's answers, installs or alerts it moves, or a "
        "latency's relative change.</p>"
    )


def _pair_bars(title: str, rows: Sequence[DiffRow], what: str) -> str:
    rows = _changed(rows)[:_TOP]
    present = [
        o for o in (*OUTCOMES, "other") if any(r.base.get(o) or r.proposed.get(o) for r in rows)
    ]
    bars = []
    for r in rows:
        for side, counts in (("now", r.base), ("proposed", r.proposed)):
            bars.append(
                svg.Bar(
                    label=f"{r.label} · {side}",
                    segments=[(o, float(counts.get(o, 0))) for o in present],
                )
            )
    chart = svg.hbar_chart(
        title=title, width=HALF, bars=bars, colours=svg.OUTCOME_COLOURS, x_label="answers"
    )
    legend = svg.legend([(o, svg.OUTCOME_COLOURS[o], "area") for o in present])
    numbers = table(
        [what, *(f"{o} {side}" for o in NOT_ACCEPTED for side in ("now", "proposed", "Δ"))],
        [
            [
                r.label,
                *(
                    v
                    for o in NOT_ACCEPTED
                    for v in (r.base.get(o, 0), r.proposed.get(o, 0), _signed(r.delta.get(o, 0)))
                ),
            ]
            for r in _changed(rows)
        ],
    )
    return (
        f"<section><h2>{escape(title)}</h2>{legend}{chart}"
        f"<details open><summary>numbers</summary>{numbers}</details></section>"
    )


def _diff_table(headers: Sequence[str], rows: Sequence[DiffRow], keys: Sequence[str]) -> str:
    return table(
        [*headers, *(f"{k} {side}" for k in keys for side in ("now", "proposed", "Δ"))],
        [
            [
                r.label,
                *(
                    v
                    for k in keys
                    for v in (r.base.get(k, 0), r.proposed.get(k, 0), _signed(r.delta.get(k, 0)))
                ),
            ]
            for r in rows
        ],
    )


def _configuration(report: LoadTestReport) -> str:
    """The configuration in force that a what-if changes, from the gateway's metrics."""
    c = curate(report.gateway)
    rows: list[list[object]] = [
        [f.name, f.value] for f in c.traffic if f.name in ("operating threshold", "capacity")
    ]
    rows += [[f"allocation of {u.user}", u.allocation] for u in c.users if u.allocation != "—"]
    rows += [[f.name, f.value] for f in c.quarantine if f.name.startswith("nearest")]
    if not rows:
        return '<p class="note">The gateway\'s configuration was not read.</p>'
    return table(["in force", "value"], rows)


def _side_by_side(base: LoadTestReport, proposed: LoadTestReport) -> str:
    cells = []
    for name, report in (("current configuration", base), ("proposed configuration", proposed)):
        cells.append(
            f"<section><h2>Run under the {name}</h2>{_configuration(report)}"
            f"{throughput(report, HALF)}</section>"
        )
    return f'<div class="pair" id="runs">{"".join(cells)}</div>'


def render_whatif(diff: WhatIfDiff, base: LoadTestReport, proposed: LoadTestReport) -> str:
    """The whole HTML page of a what-if."""
    title = f"dccgate what-if: {diff.scenario}"
    meta = f"seed {diff.seed} · scale {diff.scale:g}x · current against proposed configuration"
    warning = ""
    if diff.notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in diff.notes)
        head = "These runs are not comparable" if not diff.comparable else "Note"
        warning = f'<section class="warning"><h2>{head}</h2><ul>{items}</ul></section>'
    body = [
        f'<h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p>',
        warning,
        '<div class="pair"><section id="verdict"><h2>Totals</h2>',
        _verdict(diff),
        '</section><section id="changes"><h2>What would change</h2>',
        _sentences(diff),
        "</section></div>",
        _side_by_side(base, proposed),
        '<div class="pair">',
        _pair_bars("Users whose outcomes change", diff.by_user, "User"),
        _pair_bars("SRVs whose outcomes change", diff.by_srv, "SRV"),
        "</div>",
        '<section id="rules"><h2>Rules</h2>',
        _diff_table(["rule"], _changed(diff.by_rule), NOT_ACCEPTED),
        '</section><div class="pair"><section id="installs"><h2>Installs per region</h2>',
        _diff_table(["region"], diff.installs, ("ok", "failed")),
        '</section><section id="alerts"><h2>Alerts per code</h2>',
        _diff_table(["code"], diff.alerts, ("suppressed", "storms", "delivered")),
        "</section></div>",
        f"<footer>{escape(diff.format)} · written by dccgate loadtest</footer>",
    ]
    return page(title, "".join(body))
