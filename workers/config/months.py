"""Calendar months as forecasts and actuals name them: `YYYY-MM`, in UTC.

A Service Request belongs to the month of the moment the router decided on it (`at_ms` of
its answer), in UTC: the SEC's monthly reporting (H3.24) is per calendar month, and UTC
keeps every process on the same month boundary whatever its local time zone.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

from workers.config.model import MONTH_PATTERN

__all__ = ["month_index", "month_of_ms", "month_of_s", "month_seconds", "parse_month"]

_MONTH_RE = re.compile(MONTH_PATTERN)


def parse_month(text: str) -> tuple[int, int]:
    """(year, month) of `text` in the form YYYY-MM; ValueError naming the form otherwise."""
    if not isinstance(text, str) or not _MONTH_RE.fullmatch(text):
        shown = repr(text)[:40]
        raise ValueError(f"a month is YYYY-MM, e.g. 2027-01, not {shown}")
    return int(text[:4]), int(text[5:])


def month_of_ms(at_ms: int) -> str:
    """The UTC month (YYYY-MM) of the epoch milliseconds `at_ms`."""
    return month_of_s(at_ms / 1000)


def month_of_s(at_s: float) -> str:
    """The UTC month (YYYY-MM) of the epoch seconds `at_s`."""
    moment = dt.datetime.fromtimestamp(at_s, tz=dt.UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def month_index(text: str) -> int:
    """Months since year 0 (for comparing and counting months apart)."""
    year, month = parse_month(text)
    return year * 12 + month - 1


def month_seconds(text: str) -> int:
    """How many seconds the month `text` has."""
    year, month = parse_month(text)
    return calendar.monthrange(year, month)[1] * 86_400
