"""`dccgate admin audit`: the audit trail, newest first."""

from __future__ import annotations

import argparse

from workers.tools.admin_cli.command import Ctx
from workers.tools.admin_cli.formatting import format_table, iso_ms
from workers.tools.admin_cli.tree import Tree

__all__ = ["register"]


def _audit(ctx: Ctx, args: argparse.Namespace) -> int:
    query = {
        "limit": args.limit,
        "key_prefix": args.key_prefix,
        "by": args.by,
        "since_ms": args.since_ms,
        "until_ms": args.until_ms,
    }
    doc = ctx.client.call("GET", "/v1/audit", query=query)
    rows = [
        (iso_ms(r.get("at_ms")), r.get("by"), r.get("action"), r.get("key"), r.get("version"))
        for r in doc.get("records", [])
    ]
    return ctx.show(
        doc,
        lambda: format_table(
            ("TIME (UTC)", "BY", "ACTION", "KEY", "VERSION"), rows, empty="no audit records"
        ),
    )


def register(t: Tree) -> None:
    """Add `audit`."""
    p = t.leaf(t.top, "audit", _audit, "the audit trail, newest first")
    p.add_argument("--limit", type=int, metavar="N", help="at most N records (100; up to 10000)")
    p.add_argument("--key-prefix", dest="key_prefix", metavar="P", help="e.g. allocations/")
    p.add_argument("--by", metavar="WHO", help="e.g. operator:bootstrap")
    p.add_argument("--since-ms", dest="since_ms", type=int, metavar="MS", help="from (epoch ms)")
    p.add_argument("--until-ms", dest="until_ms", type=int, metavar="MS", help="to (epoch ms)")
