"""Turning the collector's counts into report rows: outcome tables, top N, latency summaries.

A row of a User / SRV / rule table is a list of ints: sent, answered, then one count per
outcome of `OUTCOMES` and a last one for any other outcome.
"""

from __future__ import annotations

from workers.tools.loadtest.latency import LatencyHistogram
from workers.tools.loadtest.report_schema import (
    OUTCOMES,
    LatencySummary,
    OutcomeRow,
    PercentilePoint,
)

__all__ = [
    "OTHERS",
    "OTHER_OUTCOME",
    "ROW_LEN",
    "alert_key",
    "latency_summary",
    "ms_or_none",
    "outcome_dict",
    "outcome_rows",
]

OTHERS = "others"
"""Label of the row that adds up every label past a table's cap or outside its top N."""

OTHER_OUTCOME = "other"
ROW_LEN = 2 + len(OUTCOMES) + 1
"""Length of a table row: sent, answered, each outcome, other outcomes."""
_DISTRIBUTION_POINTS = 200
_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def ms_or_none(value_us: int | None) -> float | None:
    """Microseconds as milliseconds, None kept."""
    return None if value_us is None else value_us / 1000.0


def alert_key(item: tuple[tuple[str, str], list[int]]) -> tuple[str, str]:
    return item[0]


def outcome_dict(counts: list[int]) -> dict[str, int]:
    """Counts per outcome, every contract outcome present; `other` only when non-zero."""
    result = {name: counts[i] for i, name in enumerate(OUTCOMES)}
    if counts[-1]:
        result[OTHER_OUTCOME] = counts[-1]
    return result


def _to_row(label: str, row: list[int], folded: int = 0) -> OutcomeRow:
    return OutcomeRow(
        label=label,
        sent=row[0],
        answered=row[1],
        outcomes={k: v for k, v in outcome_dict(row[2:]).items() if v},
        folded=folded,
    )


def outcome_rows(table: dict[str, list[int]], others: list[int], top_n: int) -> list[OutcomeRow]:
    """The top `top_n` labels by volume, up to `top_n // 3` more by requests not accepted,
    then `others`."""

    def volume(item: tuple[str, list[int]]) -> tuple[int, int, str]:
        return (-max(item[1][0], item[1][1]), -item[1][1], item[0])

    def not_accepted(item: tuple[str, list[int]]) -> tuple[int, str]:
        return (-(item[1][1] - item[1][2]), item[0])

    items = list(table.items())
    keep = {label for label, _ in sorted(items, key=volume)[:top_n]}
    loud = [label for label, row in sorted(items, key=not_accepted) if row[1] > row[2]]
    keep |= set([label for label in loud if label not in keep][: top_n // 3])
    rows = [_to_row(label, row) for label, row in sorted(items, key=volume) if label in keep]
    rest = [0] * ROW_LEN
    folded = 0
    for label, row in items:
        if label not in keep:
            folded += 1
            for i, count in enumerate(row):
                rest[i] += count
    for i, count in enumerate(others):
        rest[i] += count
    if folded or any(others):
        rows.append(_to_row(OTHERS, rest, folded))
    return rows


def latency_summary(histogram: LatencyHistogram) -> LatencySummary:
    """Percentiles, distribution and HDR encoding of a whole-run histogram."""
    if not histogram.count:
        return LatencySummary()
    hdr = histogram.to_hdr()
    values = hdr.get_percentile_to_value_dict(list(_PERCENTILES))
    points = [
        PercentilePoint(
            percentile=float(item.percentile_level_iterated_to),
            value_ms=float(item.value_iterated_to) / 1000.0,
        )
        for item in hdr.get_percentile_iterator(5)
    ]
    if len(points) > _DISTRIBUTION_POINTS:
        step = len(points) / _DISTRIBUTION_POINTS
        points = [points[int(i * step)] for i in range(_DISTRIBUTION_POINTS - 1)] + [points[-1]]
    return LatencySummary(
        count=histogram.count,
        p50_ms=values[50.0] / 1000.0,
        p90_ms=values[90.0] / 1000.0,
        p99_ms=values[99.0] / 1000.0,
        p999_ms=values[99.9] / 1000.0,
        max_ms=histogram.max_us / 1000.0,
        mean_ms=float(hdr.get_mean_value()) / 1000.0,
        clamped=histogram.clamped,
        distribution=points,
        hdr=hdr.encode().decode("ascii"),
    )
