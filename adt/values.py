"""Data-value checks (SEC G6 (b)(ii)): is a value inside a request body within its limits.

What a body value can be, and what follows:

- absent, or JSON null: the rule does not apply (the SRV's schema decides which fields are
  mandatory; that is DUIS validation, not ADT);
- numeric rule, value an int or float: compared with `min` and `max` (inclusive);
- numeric rule, any other type (a string such as "12.5" or "NaN", a bool, an object), NaN or
  an infinity, or an integer beyond a float's range (above about 1.8e308, so 309 digits at
  least; msgspec decodes integers of up to 4,300 digits): a breach, because a value we
  cannot compare must not slip past a range check. -0 and -0.0 are 0. Never an exception,
  whatever the value: a reason shows an integer of more than 30 digits by its size only
  (Python refuses to format one of more than 4,300, and formatting is quadratic), a long
  string by its first 80 characters, a container without walking it more than two levels
  deep;
- date rule: an ISO-8601 date-time string (`datetime.fromisoformat`; a date alone means
  midnight); without a time zone it is taken as UTC, as DUIS date-times are. More than
  `max_days_ahead` days after now is a breach (SECMP0007: firmware activation no more than
  30 days ahead); a non-string or unparseable value is a breach;
- a body that cannot be decoded at all: `unreadable`, a breach of every value rule of the SRV
  (`adt.AdtEngine.check` calls it when the body getter raises ValueError).
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
_SHOWN_ITEMS = 4
_SHADOW_NOTE = " (shadow mode: not enforced)"
_FLOAT_MAX = float.fromhex("0x1.fffffffffffffp+1023")  # sys.float_info.max
_PLAIN_INT_LIMIT = 10**30  # integers below this are shown digit by digit
_LOG10_2 = math.log10(2)


def format_number(value: float) -> str:
    """A number for a reason text: 500 rather than 500.0, otherwise Python's shortest repr.

    An integer of more than 30 digits is shown by its size ("an integer of 401 digits"):
    `str()` of one is quadratic, and refused past 4,300 digits (ValueError).
    """
    if isinstance(value, int):
        return _int_text(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _int_text(value: int) -> str:
    magnitude = -value if value < 0 else value
    if magnitude < _PLAIN_INT_LIMIT:
        return str(value)
    # Digits from the bit length, corrected exactly: never str() of the integer.
    digits = int((magnitude.bit_length() - 1) * _LOG10_2) + 1
    while magnitude >= 10**digits:
        digits += 1
    while digits > 1 and magnitude < 10 ** (digits - 1):
        digits -= 1
    return f"{'a negative' if value < 0 else 'an'} integer of {digits} digits"


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _described(value: object) -> str:
    """Type and value for a reason: "str '12.5'", "bool True", "an integer of 401 digits"."""
    if type(value) is int and not -_PLAIN_INT_LIMIT < value < _PLAIN_INT_LIMIT:
        return _int_text(value)
    return f"{type(value).__name__} {_shown(value)}"


def _shown(value: object, level: int = 0) -> str:
    """`repr(value)` for a reason text, bounded in length and cost, for any decoded value."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, str):
        return _cut(repr(value[: _SHOWN_CHARS + 1]))  # cut first: the text may be megabytes
    if isinstance(value, list | tuple | dict):
        if not value:
            return repr(value)
        if level >= 2:
            return "[...]" if isinstance(value, list | tuple) else "{...}"
        if isinstance(value, dict):
            items = [
                f"{_shown(k, level + 1)}: {_shown(v, level + 1)}"
                for k, v in list(value.items())[:_SHOWN_ITEMS]
            ]
            shown = "{" + ", ".join(items) + (", ...}" if len(value) > _SHOWN_ITEMS else "}")
        else:
            items = [_shown(v, level + 1) for v in value[:_SHOWN_ITEMS]]
            shown = "[" + ", ".join(items) + (", ...]" if len(value) > _SHOWN_ITEMS else "]")
        return _cut(shown)
    return _cut(f"<{type(value).__name__}>")


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
                f"must be a number, got {_described(value)}",
            )
        if isinstance(value, float):
            if not math.isfinite(value):  # only from a decoder other than msgspec
                return self._breach(str(value), None, f"must be a finite number, got {value}")
        elif not -_FLOAT_MAX <= value <= _FLOAT_MAX:  # exact: int-float comparison is exact
            shown = _int_text(value)
            return self._breach(
                shown,
                None,
                f"must be a number within a float's range (about 1.8e308), got {shown}",
            )
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

    def unreadable(self, why: str) -> Breach:
        """The breach of this rule by a body that cannot be decoded; why: the decoder's error.

        The value cannot be checked, so it must not pass (SEC G6 (b)(ii)): observed is
        "unreadable body", limit None.
        """
        return self._breach(
            "unreadable body",
            None,
            # backslashreplace: a lone surrogate in a foreign message would not encode
            f"cannot be checked: the body cannot be decoded ({_cut(_printable(why[:200]))})",
        )

    def _evaluate_date(self, value: object, now_s: float) -> Breach | None:
        limit = self.max_days_ahead
        if not isinstance(value, str):
            return self._breach(
                _shown(value),
                limit,
                f"must be an ISO-8601 date-time string, got {_described(value)}",
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
                f"= {_cut(value)} is {days_ahead:.2f} days ahead, more than the maximum of "
                f"{limit} days",
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
