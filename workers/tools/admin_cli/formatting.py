"""Pure helpers: merging changes into an item, and tables for the terminal."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "cell",
    "dict_table",
    "format_fields",
    "format_table",
    "iso_ms",
    "merge",
    "printable",
    "split_list",
]


def merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`current` (without its `version`) with every change that is not None applied."""
    out = {k: v for k, v in current.items() if k != "version"}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def iso_ms(ms: int | None) -> str:
    """Milliseconds since the epoch as UTC ISO 8601, e.g. 2025-01-31T12:00:00.250Z."""
    if ms is None:
        return "-"
    dt = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def printable(text: str) -> str:
    # Values come from other people (names, ADT fields, audit `by`): a terminal escape
    # sequence in one must not reach the operator's terminal.
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def cell(value: object) -> str:
    """One value as table text: numbers without a needless `.0`, lists comma-joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list):
        return ",".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return printable(json.dumps(value, separators=(",", ":")))
    return printable(str(value))


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str = "(none)"
) -> str:
    """Rows under upper-case headers, columns left-aligned two spaces apart; `empty` if
    there are no rows."""
    if not rows:
        return empty + "\n"
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = [headers, *text]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def format_fields(pairs: Sequence[tuple[str, object]]) -> str:
    """`NAME  value` lines, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "".join(f"{name.ljust(width)}  {cell(value)}".rstrip() + "\n" for name, value in pairs)


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_QUARANTINE_FIRST = ("request_id", "user_id", "srv", "rule", "reason")


def dict_table(items: Sequence[Mapping[str, Any]], *, empty: str) -> str:
    """Items of a shape not fixed by the API as a table: known columns first, then the
    rest in order of appearance; `*_ms` columns as UTC times."""
    keys = [k for k in _QUARANTINE_FIRST if any(k in i for i in items)]
    for item in items:
        keys += [k for k in item if k not in keys]

    def header(key: str) -> str:
        return (key[:-3] + " (UTC)" if key.endswith("_ms") else key).replace("_", " ").upper()

    def value(item: Mapping[str, Any], key: str) -> object:
        v = item.get(key)
        return iso_ms(v) if key.endswith("_ms") and isinstance(v, int) else v

    rows = [[value(item, k) for k in keys] for item in items]
    return format_table([header(k) for k in keys], rows, empty=empty)
