"""`dccgate admin quarantine`: requests held by anomaly detection, and decisions."""

from __future__ import annotations

import argparse

from workers.admin_cli.client import segment
from workers.admin_cli.command import Ctx, Handler, uid
from workers.admin_cli.formatting import dict_table, format_fields
from workers.admin_cli.tree import Tree

__all__ = ["register"]


def _quarantine_list(ctx: Ctx, args: argparse.Namespace) -> int:
    user = None if args.user is None else uid(args.user)
    doc = ctx.client.call("GET", "/v1/quarantine", query={"user_id": user})
    items = doc.get("items", [])
    return ctx.show(doc, lambda: dict_table(items, empty="nothing is quarantined"))


def _quarantine_decide(decision: str) -> Handler:
    def decide(ctx: Ctx, args: argparse.Namespace) -> int:
        path = f"/v1/quarantine/{segment(args.request_id)}/{decision}"
        doc = ctx.client.call("POST", path)
        pairs = [(k.replace("_", " ").upper(), v) for k, v in (doc or {}).items()]
        return ctx.show(doc, lambda: format_fields(pairs) or f"{decision}d {args.request_id}\n")

    return decide


def register(t: Tree) -> None:
    """Add `quarantine list|release|delete`."""
    quarantine = t.resource("quarantine", "requests held by anomaly detection")
    p = t.leaf(quarantine, "list", _quarantine_list, "list quarantined requests")
    p.add_argument("--user", metavar="USER_ID", help="only this User's")
    p = t.leaf(quarantine, "release", _quarantine_decide("release"), "release for processing")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p = t.leaf(quarantine, "delete", _quarantine_decide("delete"), "delete a quarantined request")
    p.add_argument("request_id", metavar="REQUEST_ID")
