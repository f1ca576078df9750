"""`dccgate admin audit`: the audit trail, newest first."""

from __future__ import annotations

import argparse
import time

from workers.tools.admin_cli.command import Ctx
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.formatting import format_table, iso_ms
from workers.tools.admin_cli.tree import Tree
from workers.tools.times import TIME_HELP, TimeError, parse_when_s

__all__ = ["register"]


def _when_ms(given: str | None, given_ms: int | None, name: str) -> int | None:
    """--since / --until (a duration back from now or an ISO time) as epoch ms, or the
    `-ms` form; not both."""
    if given is not None and given_ms is not None:
        raise AdminCliError(f"give --{name} or --{name}-ms, not both", exit_code=2)
    if given is None:
        return given_ms
    try:
        return max(0, round(parse_when_s(given, time.time()) * 1000))
    except TimeError as exc:
        raise AdminCliError(f"--{name}: {exc}", exit_code=2) from None


def _audit(ctx: Ctx, args: argparse.Namespace) -> int:
    query = {
        "limit": args.limit,
        "key_prefix": args.key_prefix,
        "by": args.by,
        "since_ms": _when_ms(args.since, args.since_ms, "since"),
        "until_ms": _when_ms(args.until, args.until_ms, "until"),
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
    p.add_argument("--since", metavar="WHEN", help=f"from WHEN: {TIME_HELP}")
    p.add_argument("--until", metavar="WHEN", help="up to WHEN (the same forms)")
    p.add_argument("--since-ms", dest="since_ms", type=int, metavar="MS", help="from (epoch ms)")
    p.add_argument("--until-ms", dest="until_ms", type=int, metavar="MS", help="to (epoch ms)")
