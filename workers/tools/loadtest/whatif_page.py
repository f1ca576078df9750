"""The HTML page of a what-if: the current and the proposed run side by side, and the change.

Top: what would be throttled, quarantined, rejected or suppressed under the proposal that is
not now (and the reverse), in numbers and in words. Then both runs' throughput and events
next to each other, the Users, SRVs and rules whose outcomes change, installs and alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import orjson

from workers.tools.loadtest import svg
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


def _sentences(diff: WhatIfDiff) -> str:
    items = []
    for outcome in NOT_ACCEPTED:
        change = diff.totals.delta.get(outcome, 0)
        if not change:
            continue
        movers = sorted(diff.by_user, key=lambda r: -abs(r.delta.get(outcome, 0)))
        named = ", ".join(
            f"{r.label} {_signed(r.delta[outcome])}" for r in movers[:5] if r.delta.get(outcome)
        )
        more_or_fewer = "more" if change > 0 else "fewer"
        items.append(
            f"<li><b>{abs(change):,} {more_or_fewer} requests {escape(outcome)}</b> under the "
            f"proposed configuration; by User: {escape(named)}.</li>"
        )
    suppressed = diff.totals.delta.get("alerts_suppressed", 0)
    if suppressed:
        codes = ", ".join(
            f"{r.label} {_signed(r.delta.get('suppressed', 0))}"
            for r in diff.alerts[:5]
            if r.delta.get("suppressed")
        )
        word = "more" if suppressed > 0 else "fewer"
        items.append(
            f"<li><b>{abs(suppressed):,} {word} alerts suppressed</b> by storm protection; by "
            f"alert code: {escape(codes)}.</li>"
        )
    if not items:
        items.append("<li>No request or alert would be treated differently.</li>")
    return f'<ul class="changes">{"".join(items)}</ul>'


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


def _side_by_side(base: LoadTestReport, proposed: LoadTestReport) -> str:
    cells = []
    for name, report in (("current configuration", base), ("proposed configuration", proposed)):
        facts = ", ".join(
            f"{k}={orjson.dumps(v, default=str).decode()}" for k, v in report.gateway.items()
        )
        cells.append(
            f"<section><h2>Run under the {name}</h2>"
            f'<p class="note">{escape(facts) or "no gateway facts recorded"}</p>'
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
