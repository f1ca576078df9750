"""Data-value checks (SEC G6 (b)(ii)): is a value inside a request body within its limits.

What a body value can be, and what follows:

- absent, or JSON null: the rule does not apply (the SRV's schema decides which fields are
  mandatory; that is DUIS validation, not ADT);
- numeric rule, value an int or float: compared with `min` and `max` (inclusive);
- numeric rule, any other type (a string such as "12.5", a bool, an object), or NaN or an
  infinity: a breach, because a value we cannot compare must not slip past a range check;
- date rule: an ISO-8601 date-time string (`datetime.fromisoformat`; a date alone means
  midnight); without a time zone it is taken as UTC, as DUIS date-times are. More than
  `max_days_ahead` days after now is a breach (SECMP0007: firmware activation no more than
  30 days ahead); a non-string or unparseable value is a breach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from adt.decision import Breach

__all__ = ["ValueCheck", "format_number"]

_DAY_S = 86_400.0
_SHOWN_CHARS = 80
_SHADOW_NOTE = " (shadow mode: not enforced)"


def format_number(value: float) -> str:
    """A number for a reason text: 500 rather than 500.0, otherwise Python's shortest repr."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


class ValueCheck(msgspec.Struct, frozen=True, kw_only=True):
    """A compiled `ValueRule`: the id is resolved and `shadow` settled.

    Built by `adt.table.AdtTable`; call `evaluate` with the decoded body.
    """

    id: str
    srv: str
    field: str
    min: float | None = None
    max: float | None = None
    max_days_ahead: int | None = None
    shadow: bool = False

    def evaluate(self, body: Mapping[str, Any], now_s: float) -> Breach | None:
        """The breach of this rule by `body` at `now_s`, or None (see the module docstring)."""
        value = body.get(self.field)
        if value is None:
            return None
        if self.max_days_ahead is not None:
            return self._evaluate_date(value, now_s)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._breach(
                _shown(value),
                None,
                f"must be a number, got {type(value).__name__} {_shown(value)}",
            )
        if not math.isfinite(value):
            return self._breach(str(value), None, f"must be a finite number, got {value}")
        if self.min is not None and value < self.min:
            return self._breach(
                value,
                self.min,
                f"= {format_number(value)} is below the minimum {format_number(self.min)}",
            )
        if self.max is not None and value > self.max:
            return self._breach(
                value,
                self.max,
                f"= {format_number(value)} is above the maximum {format_number(self.max)}",
            )
        return None

    def _evaluate_date(self, value: object, now_s: float) -> Breach | None:
        limit = self.max_days_ahead
        if not isinstance(value, str):
            return self._breach(
                _shown(value),
                limit,
                f"must be an ISO-8601 date-time string, got {type(value).__name__} {_shown(value)}",
            )
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return self._breach(
                _shown(value),
                limit,
                f"= {_shown(value)} is not an ISO-8601 date-time such as 2025-06-01T00:00:00Z",
            )
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        days_ahead = (when.timestamp() - now_s) / _DAY_S
        if limit is not None and days_ahead > limit:
            return self._breach(
                round(days_ahead, 2),
                limit,
                f"= {value} is {days_ahead:.2f} days ahead, more than the maximum of {limit} days",
            )
        return None

    def _breach(self, observed: float | str, limit: float | None, what: str) -> Breach:
        reason = f"data-value ADT {self.id}: SRV {self.srv} body field {self.field} {what}"
        return Breach(
            kind="data_value",
            rule=self.id,
            observed=observed,
            limit=limit,
            reason=reason + _SHADOW_NOTE if self.shadow else reason,
            shadow=self.shadow,
        )
