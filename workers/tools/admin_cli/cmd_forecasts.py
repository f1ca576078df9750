"""`dccgate admin forecasts`: Users' monthly Service Request forecasts per SRV (SEC H3.24)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.client import as_object, segment
from workers.tools.admin_cli.command import Ctx, load_file, nothing_to_change, put_whole, uid
from workers.tools.admin_cli.errors import AdminCliError, ApiAnswerError
from workers.tools.admin_cli.formatting import format_fields, format_table
from workers.tools.admin_cli.tree import Tree, version_flag

__all__ = ["parse_count", "register"]


def parse_count(text: str) -> tuple[str, int]:
    """`SRV=N` (e.g. 4.1.1=120000) as (srv, count); usage error (exit 2) otherwise."""
    srv, sep, raw = text.partition("=")
    digits = raw.strip().replace("_", "").replace(",", "")
    if not sep or not srv.strip() or not digits.isascii() or not digits.isdigit():
        raise AdminCliError(
            f"--count {text!r}: give SRV=N with N a whole number, e.g. --count 4.1.1=120000",
            exit_code=2,
        )
    return srv.strip(), int(digits)


def _path(user_id: str, month: str) -> str:
    return f"/v1/forecasts/{segment(user_id)}/{segment(month)}"


def _render(doc: Mapping[str, Any]) -> str:
    counts = doc.get("counts") or {}
    head = format_fields(
        [
            ("USER ID", doc.get("user_id")),
            ("MONTH", doc.get("month")),
            ("TOTAL", doc.get("total")),
            ("NOTE", doc.get("note") or "-"),
            ("VERSION", doc.get("version")),
        ]
    )
    rows = [(srv, n) for srv, n in sorted(counts.items())]
    return head + "\n" + format_table(("SRV", "FORECAST"), rows, empty="(no SRV forecast)")


def _get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", _path(args.user_id, args.month))
    return ctx.show(doc, lambda: _render(doc))


def _list(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/forecasts", query={"month": args.month, "user_id": args.user})
    rows = [
        (i.get("user_id"), i.get("month"), i.get("total"), len(i.get("counts") or {}),
         i.get("version"))
        for i in doc.get("items", [])
    ]  # fmt: skip
    return ctx.show(
        doc,
        lambda: format_table(
            ("USER ID", "MONTH", "TOTAL", "SRVS", "VERSION"), rows, empty="no forecasts"
        ),
    )


def _current(ctx: Ctx, path: str) -> tuple[dict[str, Any], int]:
    """The forecast at `path` and its version; ({}, 0) when there is none yet."""
    try:
        doc = ctx.client.call("GET", path)
    except ApiAnswerError as exc:
        if exc.status == 404:
            return {}, 0
        raise
    doc = as_object(doc, path)
    return doc, int(doc.get("version", 0))


def _set(ctx: Ctx, args: argparse.Namespace) -> int:
    path = _path(args.user_id, args.month)
    if args.file is not None:
        if args.count or args.remove or args.note is not None:
            raise AdminCliError("give --file, or --count/--remove/--note, not both", exit_code=2)
        doc = put_whole(ctx, path, load_file(args.file, ctx.stdin), args.version)
        return ctx.show(doc, lambda: _render(doc))
    if not args.count and not args.remove and args.note is None:
        raise nothing_to_change("--count SRV=N, --remove SRV, --note TEXT or --file F")
    current, read_version = _current(ctx, path)
    counts: dict[str, int] = {} if args.replace else dict(current.get("counts") or {})
    counts.update(parse_count(c) for c in args.count)
    for srv in args.remove:
        counts.pop(srv, None)
    body: dict[str, Any] = {"counts": counts}
    note = args.note if args.note is not None else current.get("note")
    if note:
        body["note"] = note
    body["version"] = read_version if args.version is None else args.version
    doc = ctx.client.call("PUT", path, body=body)
    return ctx.show(doc, lambda: _render(doc))


def _delete(ctx: Ctx, args: argparse.Namespace) -> int:
    headers = None if args.version is None else {"If-Match": str(args.version)}
    doc = ctx.client.call("DELETE", _path(args.user_id, args.month), headers=headers)
    return ctx.show(doc, lambda: f"deleted {doc.get('deleted') if doc else ''}\n")


def _user_month(p: argparse.ArgumentParser) -> None:
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p.add_argument("month", metavar="YYYY-MM")


def register(t: Tree) -> None:
    """Add `forecasts get|list|set|delete`."""
    res = t.resource("forecasts", "Users' monthly Service Request forecasts per SRV (SEC H3.24)")
    p = t.leaf(res, "get", _get, "show a User's forecast for a month")
    _user_month(p)
    p = t.leaf(res, "list", _list, "list forecasts (a User token sees its own)")
    p.add_argument("--month", metavar="YYYY-MM", help="only this month")
    p.add_argument("--user", type=uid, metavar="USER_ID", help="only this User")
    p = t.leaf(
        res,
        "set",
        _set,
        "set SRV counts of a User's forecast for a month (others kept unless --replace)",
    )
    _user_month(p)
    p.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="SRV=N",
        help="forecast N requests of SRV in the month (repeat for more SRVs)",
    )
    p.add_argument(
        "--remove", action="append", default=[], metavar="SRV", help="drop SRV from the forecast"
    )
    p.add_argument("--note", metavar="TEXT", help="a note kept with the forecast")
    p.add_argument(
        "--replace", action="store_true", help="start from no counts instead of the current ones"
    )
    p.add_argument(
        "--file", metavar="F", help="the whole body instead: JSON, or TOML if F ends in .toml"
    )
    version_flag(p)
    p = t.leaf(res, "delete", _delete, "withdraw a User's forecast for a month")
    _user_month(p)
    version_flag(p, "DELETE")
