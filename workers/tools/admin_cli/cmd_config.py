"""`dccgate admin config show`: every configuration item in force, with its source."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from workers.tools.admin_cli.command import Ctx
from workers.tools.admin_cli.formatting import cell, format_table, iso_ms, printable
from workers.tools.admin_cli.tree import Tree

__all__ = ["config_text", "register"]


def _item_text(item: Mapping[str, Any]) -> str:
    head = (
        f"{printable(str(item.get('key')))}  ({item.get('source')}, version {item.get('version')})"
    )
    lines = [head]
    if item.get("note"):
        lines.append(f"  {printable(str(item['note']))}")
    value: Mapping[str, Any] = item.get("value") or {}
    width = max((len(k) for k in value), default=0)
    lines += [f"  {printable(k).ljust(width)}  {cell(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def config_text(items: Sequence[Mapping[str, Any]]) -> str:
    """The items in force: a table of where each came from, then each one's fields."""
    rows = [
        (
            i.get("key"),
            i.get("source"),
            i.get("version"),
            i.get("by"),
            iso_ms(i["at_ms"]) if isinstance(i.get("at_ms"), int) else "-",
        )
        for i in items
    ]
    table = format_table(
        ("KEY", "SOURCE", "VERSION", "SET BY", "SET AT (UTC)"), rows, empty="(nothing)"
    )
    return table + "".join("\n" + _item_text(i) for i in items)


def _config_show(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/config")
    items = [i for i in doc.get("items", []) if str(i.get("key", "")).startswith(args.key)]
    if args.key:
        doc = {**doc, "items": items}
    return ctx.show(doc, lambda: config_text(items))


def register(t: Tree) -> None:
    """Add `config show`."""
    config = t.resource("config", "the configuration in force (operators)")
    p = t.leaf(
        config,
        "show",
        _config_show,
        "every item in force: set through the API, seeded from the file, or the built-in "
        "default, with its version",
    )
    p.add_argument(
        "--key", default="", metavar="PREFIX", help="only keys starting PREFIX (e.g. alerts.)"
    )
