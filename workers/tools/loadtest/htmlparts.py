"""Small HTML pieces shared by the report, what-if and comparison pages: tables, numbers
formatted for people, the one-line note that replaces a section with nothing to show.
Every string goes through `html.escape`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import TypeGuard

_NUMERIC = re.compile(
    r"^(?:[+-]?[0-9][0-9,.]*(?: ?(?:ms|s|%|/s|req/s|records|points))?"
    r"(?: \((?:[+-]?[0-9][0-9,.]*%|new)\))?|—|no change|new)$"
)

__all__ = ["cell", "empty_note", "ms", "pct", "signed", "signed_pct", "table"]


def pct(part: float, whole: float) -> str:
    """`part` as a percentage of `whole` (one decimal), or an em dash when `whole` is 0."""
    return f"{100.0 * part / whole:.1f}%" if whole else "—"


def ms(value: float | None) -> str:
    """Milliseconds for people: `35.8 ms`, `0.92 ms`, or an em dash."""
    if value is None:
        return "—"
    return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"


def signed(value: float, unit: str = "") -> str:
    """A change with its sign: `+1,204`, `-3.5 ms`, `0`."""
    if value == 0:
        return "0" + unit
    if isinstance(value, int):
        return f"{value:+,}{unit}"
    return f"{value:+,.1f}{unit}" if abs(value) >= 1 else f"{value:+.3g}{unit}"


def signed_pct(base: float | None, new: float | None) -> str:
    """The relative change from `base` to `new`: `+12.5%`, `-100.0%`, `new` when base is 0."""
    if base is None or new is None:
        return "—"
    if base == 0:
        return "0.0%" if new == 0 else "new"
    return f"{100.0 * (new - base) / abs(base):+.1f}%"


def cell(value: object) -> str:
    """A table cell's text: ints with separators, floats to 3 significant figures."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    cls: str = "",
    empty: str = "none",
) -> str:
    """An HTML table, every cell escaped; ints get thousands separators. A string cell is
    left-aligned text unless it reads as a number (`35.8 ms`, `+12 (+4.0%)`, `—`); numbers
    are right-aligned. No rows: `empty` as a note."""
    rows = list(rows)
    text_columns = {i for i, value in enumerate(rows[0] if rows else ()) if _is_text(value)}
    head = "".join(
        f'<th class="t">{escape(h)}</th>' if i in text_columns else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="t">{escape(value)}</td>'
            if _is_text(value)
            else f"<td>{escape(cell(value))}</td>"
            for value in row
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return f'<p class="note">{escape(empty)}</p>'
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and not _NUMERIC.match(value)


def empty_note(anchor: str, title: str, sentence: str) -> str:
    """The one line that stands for a section with nothing to show."""
    return f'<p class="empty" id="{escape(anchor)}"><b>{escape(title)}</b>: {escape(sentence)}</p>'
