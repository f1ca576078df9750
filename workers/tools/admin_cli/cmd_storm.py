"""`dccgate admin storm-policy`: the alert-storm parameters."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.command import Ctx, load_file, put_whole
from workers.tools.admin_cli.formatting import format_fields, format_table
from workers.tools.admin_cli.tree import Tree, dry_run_flag, file_flag, version_flag

__all__ = ["register"]


def _storm_text(doc: Mapping[str, Any]) -> str:
    def row(code: str, p: Mapping[str, Any]) -> tuple[object, ...]:
        return (code, p.get("window_s"), p.get("max_alerts"), p.get("period_s"))

    rows = [row("(default)", doc.get("default") or {})]
    rows += [row(code, p) for code, p in sorted((doc.get("per_code") or {}).items())]
    return (
        format_fields([("VERSION", doc.get("version"))])
        + "\n"
        + format_table(("ALERT CODE", "WINDOW S", "MAX ALERTS", "PERIOD S"), rows)
    )


def _storm_get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/alerts/storm-policy")
    return ctx.show(doc, lambda: _storm_text(doc))


def _storm_set(ctx: Ctx, args: argparse.Namespace) -> int:
    policy = load_file(args.file, ctx.stdin)
    doc = put_whole(ctx, "/v1/alerts/storm-policy", policy, args.version)
    return ctx.show(doc, lambda: _storm_text(doc))


def register(t: Tree) -> None:
    """Add `storm-policy get|set`."""
    storm = t.resource("storm-policy", "alert-storm parameters")
    t.leaf(storm, "get", _storm_get, "show the storm policy")
    p = t.leaf(storm, "set", _storm_set, "replace the storm policy from a file")
    file_flag(p, "the StormPolicy body (default, per_code)")
    version_flag(p)
    dry_run_flag(p)
