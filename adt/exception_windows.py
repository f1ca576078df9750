"""Exception windows (SEC Appendix AA "exceptions applicable to each ADT"): thresholds
raised for a declared period, such as a firmware roll-out, lapsing by themselves.

An exception never lowers a threshold (to lower one, change the ADT values) and never
touches a data-value rule: it answers "we will send more than usual", not "our values will
be odd".
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection, Mapping
from typing import NamedTuple

import msgspec

from adt.config import AdtValues, ExceptionWindow
from adt.errors import AdtConfigError

__all__ = [
    "LimitTimeline",
    "RaisedLimit",
    "active_exceptions",
    "compile_exceptions",
    "drop_ended",
    "limit_at",
]


class RaisedLimit(NamedTuple):
    """One threshold's raised max while `start_s <= now_s < end_s` (epoch seconds)."""

    start_s: float
    end_s: float
    max: int
    exception_id: str


def compile_exceptions(
    exceptions: tuple[ExceptionWindow, ...],
    threshold_max: Mapping[str, int],
    value_rule_ids: Collection[str],
) -> dict[str, tuple[RaisedLimit, ...]]:
    """Threshold id -> its raised limits, checked against the table's own rules.

    threshold_max: threshold id -> configured max. value_rule_ids: the table's value rules,
    named in the error when an exception points at one. Raise AdtConfigError when an
    exception names an unknown threshold or raises one below its configured max.
    """
    raised: dict[str, list[RaisedLimit]] = {}
    for i, exc in enumerate(exceptions):
        for rule_id, new_max in exc.thresholds.items():
            where = f"exceptions[{i}] ({exc.id})"
            base = threshold_max.get(rule_id)
            if base is None:
                if rule_id in value_rule_ids:
                    raise AdtConfigError(
                        f"{where} names {rule_id}, a value rule; exceptions raise count "
                        "thresholds only (change the value rule itself instead)"
                    )
                known = ", ".join(sorted(threshold_max)[:10]) or "none"
                raise AdtConfigError(
                    f"{where} names threshold {rule_id}, which these values do not define; "
                    f"threshold ids here: {known}"
                )
            if new_max < base:
                raise AdtConfigError(
                    f"{where} sets {rule_id} to {new_max}, below its max {base}; an exception "
                    "only raises a threshold (change the threshold to lower it)"
                )
            raised.setdefault(rule_id, []).append(
                RaisedLimit(exc.start_s, exc.end_s, new_max, exc.id)
            )
    return {rule_id: tuple(limits) for rule_id, limits in raised.items()}


def limit_at(base: int, raised: tuple[RaisedLimit, ...], now_s: float) -> tuple[int, str | None]:
    """(the max in force at `now_s`, the id of the exception that set it or None).

    The highest max among the exceptions active at `now_s`, or `base` when none is.
    """
    best = base
    by: str | None = None
    for start_s, end_s, new_max, exception_id in raised:
        if start_s <= now_s < end_s and new_max > best:
            best = new_max
            by = exception_id
    return best, by


class LimitTimeline:
    """`limit_at` of one threshold as a step function of time, with the span of each step.

    The exceptions' starts and ends cut time into spans; within one span the same
    exceptions are active, so the limit is the same: `at(now_s)` answers it, and the span
    it holds for, with one binary search instead of a pass over every exception.
    """

    __slots__ = ("_bounds", "_steps")

    def __init__(self, base: int, raised: tuple[RaisedLimit, ...]) -> None:
        bounds = sorted({b for r in raised for b in (r.start_s, r.end_s)})
        self._bounds = bounds
        # Before the first bound nothing is active; from bounds[i] on, what limit_at says at
        # bounds[i] (an exception is active from its start, inclusive, to its end).
        self._steps = [(base, None), *(limit_at(base, raised, b) for b in bounds)]

    def at(self, now_s: float) -> tuple[int, str | None, float, float]:
        """(limit, exception id or None, from_s, until_s): `limit_at(now_s)`, the same for
        every time from_s <= t < until_s (-inf and inf at the ends)."""
        bounds = self._bounds
        i = bisect_right(bounds, now_s)
        limit, by = self._steps[i]
        return (
            limit,
            by,
            bounds[i - 1] if i else -math.inf,
            bounds[i] if i < len(bounds) else math.inf,
        )


def active_exceptions(values: AdtValues, now_s: float) -> tuple[ExceptionWindow, ...]:
    """The exception windows of `values` in force at `now_s`."""
    return tuple(e for e in values.exceptions if e.start_s <= now_s < e.end_s)


def drop_ended(values: AdtValues, now_s: float) -> AdtValues:
    """`values` without the exception windows that ended at or before `now_s`.

    Ended windows no longer apply anyway; the admin API calls this before storing new
    values so the table does not fill up with the past (at most MAX_EXCEPTIONS windows).
    """
    kept = tuple(e for e in values.exceptions if e.end_s > now_s)
    if len(kept) == len(values.exceptions):
        return values
    return msgspec.structs.replace(values, exceptions=kept)
