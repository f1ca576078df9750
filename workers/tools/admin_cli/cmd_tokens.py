"""`dccgate admin tokens`: issue (shown once), list and revoke bearer tokens."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx, uid
from workers.tools.admin_cli.formatting import format_table, iso_ms
from workers.tools.admin_cli.tree import Tree

__all__ = ["register"]


_TOKEN_HEADERS = ("TOKEN ID", "ROLE", "USER ID", "CREATED (UTC)", "CREATED BY")


def _token_row(t: Mapping[str, Any]) -> tuple[object, ...]:
    return (
        t.get("token_id"),
        t.get("role"),
        t.get("user_id"),
        iso_ms(t.get("created_at_ms")),
        t.get("created_by"),
    )


def _show_issued(ctx: Ctx, doc: Mapping[str, Any]) -> int:
    whose = f"User {doc.get('user_id')}" if doc.get("user_id") else "an operator"
    revoke = (
        f"tokens revoke {doc.get('user_id')} {doc.get('token_id')}"
        if doc.get("user_id")
        else f"tokens revoke-operator {doc.get('token_id')}"
    )
    ctx.note(
        f"issued token {doc.get('token_id')} for {whose}. WARNING: the secret "
        f"{'in the JSON' if ctx.as_json else 'below'} is shown only this once and stored "
        f"nowhere: keep it now. It cannot be shown again, only revoked (`{revoke}`)."
    )
    ctx.err.flush()
    return ctx.show(doc, lambda: f"{doc.get('token')}\n")


def _tokens_issue(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_issued(ctx, ctx.client.call("POST", f"/v1/users/{segment(args.user_id)}/tokens"))


def _tokens_issue_operator(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_issued(ctx, ctx.client.call("POST", "/v1/operators/tokens"))


def _show_tokens(ctx: Ctx, doc: Mapping[str, Any]) -> int:
    rows = [_token_row(t) for t in doc.get("tokens", [])]
    return ctx.show(doc, lambda: format_table(_TOKEN_HEADERS, rows, empty="no tokens"))


def _tokens_list(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_tokens(ctx, ctx.client.call("GET", f"/v1/users/{segment(args.user_id)}/tokens"))


def _tokens_list_operators(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_tokens(ctx, ctx.client.call("GET", "/v1/operators/tokens"))


def _tokens_revoke(ctx: Ctx, args: argparse.Namespace) -> int:
    path = f"/v1/users/{segment(args.user_id)}/tokens/{segment(args.token_id)}"
    doc = ctx.client.call("DELETE", path)
    return ctx.show(doc, lambda: f"revoked token {args.token_id} of User {args.user_id}\n")


def _tokens_revoke_operator(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("DELETE", f"/v1/operators/tokens/{segment(args.token_id)}")
    return ctx.show(doc, lambda: f"revoked operator token {args.token_id}\n")


def register(t: Tree) -> None:
    """Add `tokens issue|list|revoke|issue-operator|list-operators|revoke-operator`."""
    tokens = t.resource("tokens", "bearer tokens of Users and operators")
    p = t.leaf(tokens, "issue", _tokens_issue, "issue a token bound to a User (shown once)")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p = t.leaf(tokens, "list", _tokens_list, "list a User's tokens")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p = t.leaf(tokens, "revoke", _tokens_revoke, "revoke a User's token")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p.add_argument("token_id", metavar="TOKEN_ID")
    t.leaf(tokens, "issue-operator", _tokens_issue_operator, "issue an operator token (shown once)")
    t.leaf(tokens, "list-operators", _tokens_list_operators, "list operator tokens")
    p = t.leaf(tokens, "revoke-operator", _tokens_revoke_operator, "revoke an operator token")
    p.add_argument("token_id", metavar="TOKEN_ID")
