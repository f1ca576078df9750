"""Times as people type and read them at the command line.

Wherever a command asks for a time it takes either a duration back from now (`90s`,
`30m`, `1h`, `2d`, `1w`, or several together like `1h30m`) or an ISO 8601 time in UTC or
with its offset (`2026-01-31T09:00:00Z`, `2026-01-31T10:00+01:00`, a date alone
`2026-01-31` for its midnight UTC; a time without an offset is read as UTC). Wherever a
command prints a time it prints ISO 8601 UTC with milliseconds (`2026-01-31T09:00:00.250Z`).
"""

from __future__ import annotations

import datetime
import re

__all__ = ["TIME_HELP", "TimeError", "iso_ms", "iso_s", "parse_duration_s", "parse_when_s"]

TIME_HELP = "a duration back from now (30m, 1h, 2d, 1h30m) or an ISO 8601 time (2026-01-31T09:00Z)"

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_DURATION = re.compile(r"(?:[0-9]{1,9}(?:\.[0-9]{1,6})?[smhdw])+")
_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)([smhdw])")
_MAX_TEXT = 64


class TimeError(ValueError):
    """A time or duration that cannot be read; the message shows the accepted forms."""


def parse_duration_s(text: str) -> float:
    """`text` (`90s`, `30m`, `1h`, `2d`, `1w`, `1h30m`) as seconds."""
    raw = text.strip().lower()
    if len(raw) > _MAX_TEXT or not _DURATION.fullmatch(raw):
        raise TimeError(
            f"{text[:_MAX_TEXT]!r} is not a duration: write a number and a unit "
            "(s, m, h, d, w), e.g. 30m, 1h, 2d, 1h30m"
        )
    return sum(float(n) * _UNITS_S[unit] for n, unit in _PART.findall(raw))


def parse_when_s(text: str, now_s: float) -> float:
    """`text` as seconds since the epoch: a duration back from `now_s`, or an ISO 8601
    time (no offset: UTC)."""
    raw = text.strip()
    if not raw or len(raw) > _MAX_TEXT:
        raise TimeError(f"give a time: {TIME_HELP}")
    if raw[-1:].lower() in _UNITS_S and raw[:1].isdigit() and "-" not in raw and ":" not in raw:
        return now_s - parse_duration_s(raw)
    try:
        when = datetime.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise TimeError(f"{raw!r} is neither {TIME_HELP}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def iso_ms(ms: int | None) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, e.g. 2026-01-31T12:00:00.250Z."""
    if ms is None:
        return "-"
    dt = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def iso_s(seconds: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC with milliseconds."""
    return iso_ms(round(seconds * 1000))
