"""What-if: two runs of one seeded scenario, under the current and a proposed configuration.

`compare` lines the two reports up per User, SRV, rule, region and alert code, and gives what
would have been throttled, quarantined, rejected or suppressed under the proposal that was
not under the current configuration (and the reverse). `write_whatif` writes whatif.json and
whatif.html.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from workers.tools.loadtest.output import encode_json, write_atomically
from workers.tools.loadtest.report_schema import (
    NOT_ACCEPTED,
    DiffRow,
    LatencyDiff,
    LatencySummary,
    LoadTestReport,
    OutcomeRow,
    WhatIfDiff,
)
from workers.tools.loadtest.whatif_page import render_whatif

__all__ = ["compare", "write_whatif"]


def _diff(label: str, base: dict[str, int], proposed: dict[str, int]) -> DiffRow:
    keys = list(dict.fromkeys([*base, *proposed]))
    return DiffRow(
        label=label,
        base=base,
        proposed=proposed,
        delta={k: proposed.get(k, 0) - base.get(k, 0) for k in keys},
    )


def _counts(row: OutcomeRow) -> dict[str, int]:
    return {"sent": row.sent, "answered": row.answered, **row.outcomes}


def _change(row: DiffRow) -> int:
    return sum(abs(row.delta.get(k, 0)) for k in NOT_ACCEPTED)


def _rows(base: Iterable[OutcomeRow], proposed: Iterable[OutcomeRow]) -> list[DiffRow]:
    left = {r.label: _counts(r) for r in base}
    right = {r.label: _counts(r) for r in proposed}
    rows = [_diff(label, left.get(label, {}), right.get(label, {})) for label in {**left, **right}]
    # The largest change in what was not accepted first; then by volume.
    return sorted(rows, key=lambda r: (-_change(r), -r.base.get("sent", 0), r.label))


def _totals(report: LoadTestReport) -> dict[str, int]:
    t = report.totals
    return {
        "sent": t.sent,
        "answered": t.answered,
        **t.outcomes,
        "installs_ok": t.installs_ok,
        "installs_failed": t.installs_failed,
        "alerts_raised": t.alerts_raised,
        "alerts_delivered": t.alerts_delivered,
        "alerts_suppressed": t.alerts_suppressed,
        "storms": t.storms,
        "deadletters": t.deadletters,
    }


def _alerts(report: LoadTestReport) -> dict[str, dict[str, int]]:
    codes: dict[str, dict[str, int]] = {}
    for row in report.alerts:
        sums = codes.setdefault(row.alert_code, {})
        for key, value in (
            ("raised", row.raised),
            ("delivered", row.delivered),
            ("suppressed", row.suppressed),
            ("storms", row.final_copies),
        ):
            sums[key] = sums.get(key, 0) + value
    return codes


def _latency(kind: str, base: LatencySummary, proposed: LatencySummary) -> LatencyDiff:
    def values(s: LatencySummary) -> dict[str, float | None]:
        return {
            "p50": s.p50_ms,
            "p90": s.p90_ms,
            "p99": s.p99_ms,
            "p99.9": s.p999_ms,
            "max": s.max_ms,
        }

    return LatencyDiff(kind=kind, base_ms=values(base), proposed_ms=values(proposed))


def _notes(base: LoadTestReport, proposed: LoadTestReport) -> list[str]:
    notes = []
    for name in ("scenario", "seed", "scale", "duration_s"):
        left, right = getattr(base, name), getattr(proposed, name)
        if left != right:
            notes.append(f"{name} differs: {left!r} (current) against {right!r} (proposed)")
    if base.totals.sent != proposed.totals.sent:
        notes.append(
            f"the runs sent different traffic ({base.totals.sent:,} against "
            f"{proposed.totals.sent:,} requests): installers wait for answers, so a "
            "configuration that answers differently changes what is sent next"
        )
    return notes


def compare(base: LoadTestReport, proposed: LoadTestReport) -> WhatIfDiff:
    """The difference between `base` (current configuration) and `proposed`.

    Rows are matched by label; a label only in one run counts zero in the other (a User can
    also be in one report's top N and in the other's `others` row).
    """
    notes = _notes(base, proposed)
    base_alerts, proposed_alerts = _alerts(base), _alerts(proposed)
    installs_b = {r.region: {"ok": r.ok, "failed": r.failed} for r in base.installs}
    installs_p = {r.region: {"ok": r.ok, "failed": r.failed} for r in proposed.installs}
    return WhatIfDiff(
        scenario=base.scenario,
        seed=base.seed,
        scale=base.scale,
        comparable=not any(not n.startswith("the runs sent") for n in notes),
        notes=notes,
        totals=_diff("all", _totals(base), _totals(proposed)),
        latency=[
            _latency("gateway", base.gateway_latency, proposed.gateway_latency),
            _latency("e2e", base.e2e_latency, proposed.e2e_latency),
        ],
        by_user=_rows(base.by_user, proposed.by_user),
        by_srv=_rows(base.by_srv, proposed.by_srv),
        by_rule=_rows(base.by_rule, proposed.by_rule),
        installs=[
            _diff(region, installs_b.get(region, {}), installs_p.get(region, {}))
            for region in sorted({*installs_b, *installs_p})
        ],
        alerts=sorted(
            (
                _diff(code, base_alerts.get(code, {}), proposed_alerts.get(code, {}))
                for code in {*base_alerts, *proposed_alerts}
            ),
            key=lambda r: (-abs(r.delta.get("suppressed", 0)), r.label),
        ),
    )


def write_whatif(
    diff: WhatIfDiff, base: LoadTestReport, proposed: LoadTestReport, directory: Path
) -> tuple[Path, Path]:
    """Write whatif.json (the diff) and whatif.html (both runs and the diff) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "whatif.json", directory / "whatif.html"
    write_atomically(json_path, encode_json(diff))
    write_atomically(html_path, render_whatif(diff, base, proposed).encode("utf-8"))
    return json_path, html_path
