"""`dccgate admin exclusions`: alert codes never storm-throttled (SECMP0062)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from workers.tools.admin_cli.command import Ctx, update
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.formatting import format_fields, format_table, split_list
from workers.tools.admin_cli.tree import Tree, dry_run_flag, version_flag

__all__ = ["add_codes", "register", "remove_codes"]


def _codes(value: str) -> list[str]:
    return [code.upper() for code in split_list(value)]


def _exclusions_text(doc: Mapping[str, Any]) -> str:
    rows = [(code,) for code in doc.get("alert_codes", [])]
    return (
        format_fields([("VERSION", doc.get("version"))])
        + "\n"
        + format_table(("ALERT CODE",), rows, empty="(no alert code is excluded)")
    )


def _exclusions_get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/alerts/exclusions")
    return ctx.show(doc, lambda: _exclusions_text(doc))


def _exclusions_change(
    ctx: Ctx, new_codes: Callable[[list[str]], list[str]], version: int | None = None
) -> int:
    def changes(current: dict[str, Any]) -> dict[str, Any]:
        return {"alert_codes": new_codes(list(current.get("alert_codes", [])))}

    doc = update(ctx, "/v1/alerts/exclusions", changes, version)
    return ctx.show(doc, lambda: _exclusions_text(doc))


def _exclusions_set(ctx: Ctx, args: argparse.Namespace) -> int:
    codes = _codes(args.codes)
    return _exclusions_change(ctx, lambda _: codes, args.version)


def add_codes(current: list[str], codes: list[str]) -> list[str]:
    """`current` with each of `codes` not yet in it appended, in order."""
    out = list(current)
    for code in codes:
        if code not in out:
            out.append(code)
    return out


def remove_codes(current: list[str], codes: list[str]) -> list[str]:
    """`current` without `codes`; AdminCliError if one of them is not in it."""
    missing = [c for c in codes if c not in current]
    if missing:
        raise AdminCliError(
            f"not in the exclusion list: {', '.join(missing)} (see `exclusions get`)"
        )
    return [c for c in current if c not in codes]


def _exclusions_add(ctx: Ctx, args: argparse.Namespace) -> int:
    codes = _codes(args.codes)
    return _exclusions_change(ctx, lambda current: add_codes(current, codes))


def _exclusions_remove(ctx: Ctx, args: argparse.Namespace) -> int:
    codes = _codes(args.codes)
    return _exclusions_change(ctx, lambda current: remove_codes(current, codes))


def register(t: Tree) -> None:
    """Add `exclusions get|set|add|remove`."""
    excl = t.resource("exclusions", "alert codes never storm-throttled (SECMP0062)")
    t.leaf(excl, "get", _exclusions_get, "show the exclusion list")
    p = t.leaf(excl, "set", _exclusions_set, "replace the exclusion list")
    p.add_argument("codes", metavar="CODE[,CODE...]")
    version_flag(p)
    dry_run_flag(p)
    p = t.leaf(excl, "add", _exclusions_add, "add alert codes to the list")
    p.add_argument("codes", metavar="CODE[,CODE...]")
    dry_run_flag(p)
    p = t.leaf(excl, "remove", _exclusions_remove, "remove alert codes from the list")
    p.add_argument("codes", metavar="CODE[,CODE...]")
    dry_run_flag(p)
