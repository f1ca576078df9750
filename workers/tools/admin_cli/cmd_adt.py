"""`dccgate admin adt`: Anomaly Detection Threshold values, a User's or DCC-wide."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx, load_file, put_whole, uid
from workers.tools.admin_cli.formatting import format_fields, format_table
from workers.tools.admin_cli.tree import Tree, dry_run_flag, file_flag, version_flag

__all__ = ["register"]


def _adt_path(scope: str) -> str:
    return "/v1/adt/dcc" if scope.lower() == "dcc" else f"/v1/adt/users/{segment(uid(scope))}"


def _adt_text(scope: str, doc: Mapping[str, Any]) -> str:
    head = format_fields(
        [
            ("SCOPE", "DCC-wide" if scope.lower() == "dcc" else f"User {uid(scope)}"),
            ("SHADOW", doc.get("shadow")),
            ("VERSION", doc.get("version")),
        ]
    )
    thresholds = [
        (t.get("srv"), t.get("window_s"), t.get("max"), t.get("shadow"))
        for t in doc.get("thresholds", [])
    ]
    rules = [
        (
            r.get("srv"),
            r.get("field"),
            r.get("min"),
            r.get("max"),
            r.get("max_days_ahead"),
            r.get("shadow"),
        )
        for r in doc.get("value_rules", [])
    ]
    return (
        head
        + "\nTHRESHOLDS\n"
        + format_table(("SRV", "WINDOW S", "MAX", "SHADOW"), thresholds)
        + "\nVALUE RULES\n"
        + format_table(("SRV", "FIELD", "MIN", "MAX", "MAX DAYS AHEAD", "SHADOW"), rules)
    )


def _adt_get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", _adt_path(args.scope))
    return ctx.show(doc, lambda: _adt_text(args.scope, doc))


def _adt_set(ctx: Ctx, args: argparse.Namespace) -> int:
    values = load_file(args.file, ctx.stdin)
    doc = put_whole(ctx, _adt_path(args.scope), values, args.version)
    return ctx.show(doc, lambda: _adt_text(args.scope, doc))


def register(t: Tree) -> None:
    """Add `adt get|set`."""
    adt = t.resource("adt", "Anomaly Detection Threshold values (a User's, or dcc)")
    p = t.leaf(adt, "get", _adt_get, "show ADT values")
    p.add_argument("scope", metavar="USER_ID|dcc")
    p = t.leaf(adt, "set", _adt_set, "replace ADT values from a file")
    p.add_argument("scope", metavar="USER_ID|dcc")
    file_flag(p, "the AdtValues body (thresholds, value_rules, shadow)")
    version_flag(p)
    dry_run_flag(p)
