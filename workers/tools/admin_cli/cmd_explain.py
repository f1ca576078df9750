"""`dccgate admin explain REQUEST_ID`: why a request was decided as it was.

Prints every answer the request got (oldest first, times in ISO 8601 UTC), the rule, the
observed value and the limit, each answer's reason, and its quarantine state and history
(`GET /v1/decisions/{request_id}`); `--json` prints the API's answer.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx
from workers.tools.admin_cli.formatting import format_fields, format_table, printable
from workers.tools.admin_cli.tree import Tree

__all__ = ["explain_text", "register"]


def _explain(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", f"/v1/decisions/{segment(args.request_id.strip())}")
    retention = doc.get("retention") or {}
    if retention.get("caught_up") is False:
        ctx.note("the admin process is still reading dcc.user.responses: answers may be missing")
    return ctx.show(doc, lambda: explain_text(doc))


def _answers_text(answers: Sequence[Mapping[str, Any]], omitted: int) -> str:
    head = ("TIME (UTC)", "OUTCOME", "CODE", "RULE", "OBSERVED", "LIMIT", "RETRY AFTER MS")
    rows = [
        (
            a.get("at"),
            a.get("outcome"),
            a.get("response_code"),
            a.get("rule"),
            a.get("observed"),
            a.get("limit"),
            a.get("retry_after_ms"),
        )
        for a in answers
    ]
    text = "ANSWERS (oldest first)\n" + format_table(head, rows, empty="no answer kept")
    if omitted:
        text += f"({omitted} more answers between the first and the latest are not kept)\n"
    for number, a in enumerate(answers, 1):
        text += f"  {number}. {printable(str(a.get('reason', '')))}\n"
    return text


def _quarantine_text(q: Mapping[str, Any]) -> str:
    fields = format_fields(
        [
            ("STATE", q.get("state")),
            ("KIND", q.get("kind")),
            ("SRV", q.get("srv")),
            ("RULE", q.get("rule")),
            ("OBSERVED", q.get("observed")),
            ("LIMIT", q.get("limit")),
            ("QUARANTINED", q.get("quarantined_at")),
            ("DECIDED", q.get("decided_at")),
            ("BY", q.get("decided_by")),
            ("REASON", q.get("reason")),
        ]
    )
    history: Sequence[Mapping[str, Any]] = q.get("history") or []
    rows = [
        (
            h.get("at"),
            h.get("event"),
            h.get("by"),
            "bulk" if h.get("bulk") else "",
            h.get("note") or "",
        )
        for h in history
    ]
    table = format_table(("TIME (UTC)", "EVENT", "BY", "HOW", "NOTE"), rows)
    return "QUARANTINE\n" + fields + "\nHISTORY\n" + table


def explain_text(doc: Mapping[str, Any]) -> str:
    """The API's explanation as text for a terminal."""
    text = f"REQUEST  {printable(str(doc.get('request_id')))}\n\n"
    text += _answers_text(doc.get("answers") or [], int(doc.get("answers_omitted") or 0))
    quarantine = doc.get("quarantine")
    if quarantine:
        text += "\n" + _quarantine_text(quarantine)
    return text


def register(t: Tree) -> None:
    """Add `explain`."""
    p = t.leaf(
        t.top,
        "explain",
        _explain,
        "why a request was decided: its answers, rule, observed value and limit, and its "
        "quarantine history",
    )
    p.add_argument("request_id", metavar="REQUEST_ID", help="USER:TARGET:COUNTER")
