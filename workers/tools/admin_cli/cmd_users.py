"""`dccgate admin users`: list, show, create or change, delete DCC Users."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx, nothing_to_change, uid, update
from workers.tools.admin_cli.formatting import format_fields, format_table, split_list
from workers.tools.admin_cli.tree import Tree, dry_run_flag, version_flag

__all__ = ["register"]


def _user_fields(user_id: str, doc: Mapping[str, Any]) -> str:
    return format_fields(
        [
            ("USER ID", user_id),
            ("NAME", doc.get("name")),
            ("ROLES", doc.get("roles")),
            ("RESPONSE URL", doc.get("response_url")),
            ("VERSION", doc.get("version")),
        ]
    )


def _users_list(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/users")
    users: dict[str, Any] = doc.get("users", {})
    rows = [
        (uid, u.get("name"), u.get("roles"), u.get("version")) for uid, u in sorted(users.items())
    ]
    return ctx.show(
        doc,
        lambda: format_table(("USER ID", "NAME", "ROLES", "VERSION"), rows, empty="no Users"),
    )


def _users_get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", f"/v1/users/{segment(args.user_id)}")
    return ctx.show(doc, lambda: _user_fields(args.user_id, doc))


def _users_set(ctx: Ctx, args: argparse.Namespace) -> int:
    roles = None if args.roles is None else [r.upper() for r in split_list(args.roles)]
    if args.name is None and roles is None and args.response_url is None and not args.no_url:
        raise nothing_to_change("--name, --roles, --response-url or --no-response-url")
    path = f"/v1/users/{segment(args.user_id)}"
    changes = {"name": args.name, "roles": roles, "response_url": args.response_url}
    clear = ("response_url",) if args.no_url else ()
    doc = update(ctx, path, changes, args.version, clear=clear)
    return ctx.show(doc, lambda: _user_fields(args.user_id, doc))


def _users_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    headers = {} if args.version is None else {"If-Match": f'"{args.version}"'}
    doc = ctx.client.call("DELETE", f"/v1/users/{segment(args.user_id)}", headers=headers)
    return ctx.show(doc, lambda: f"deleted User {args.user_id}\n")


def register(t: Tree) -> None:
    """Add `users list|get|set|delete` to the tree."""
    users = t.resource("users", "DCC Users")
    t.leaf(users, "list", _users_list, "list Users (a User token sees itself)")
    p = t.leaf(users, "get", _users_get, "show a User")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p = t.leaf(users, "set", _users_set, "create a User or change the fields given")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p.add_argument("--name", help="the User's name")
    p.add_argument(
        "--roles", metavar="IS,GS", help="comma-separated roles: IS ES GS ED GT RSA OU LC"
    )
    url = p.add_mutually_exclusive_group()
    url.add_argument(
        "--response-url",
        metavar="URL",
        help="where `dccgate worker deliver` POSTs the User's answers (https://...)",
    )
    url.add_argument(
        "--no-response-url",
        dest="no_url",
        action="store_true",
        help="stop pushing the User's answers",
    )
    version_flag(p)
    dry_run_flag(p)
    p = t.leaf(users, "delete", _users_delete, "delete a User")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    version_flag(p, "delete")
