"""`dccgate admin allocations`: a User's capacity allocation (SECMP0067)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx, nothing_to_change, uid, update
from workers.tools.admin_cli.formatting import format_fields
from workers.tools.admin_cli.tree import Tree, dry_run_flag, shadow_flag, version_flag

__all__ = ["register"]


def _allocation_fields(user_id: str, doc: Mapping[str, Any]) -> str:
    return format_fields(
        [
            ("USER ID", user_id),
            ("RATE/S", doc.get("rate_per_s")),
            ("BURST", doc.get("burst")),
            ("SHADOW", doc.get("shadow")),
            ("VERSION", doc.get("version")),
        ]
    )


def _allocations_get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", f"/v1/allocations/{segment(args.user_id)}")
    return ctx.show(doc, lambda: _allocation_fields(args.user_id, doc))


def _allocations_set(ctx: Ctx, args: argparse.Namespace) -> int:
    changes = {"rate_per_s": args.rate, "burst": args.burst, "shadow": args.shadow}
    if all(v is None for v in changes.values()):
        raise nothing_to_change("--rate, --burst and/or --shadow/--no-shadow")
    path = f"/v1/allocations/{segment(args.user_id)}"
    doc = update(ctx, path, changes, args.version)
    return ctx.show(doc, lambda: _allocation_fields(args.user_id, doc))


def register(t: Tree) -> None:
    """Add `allocations get|set`."""
    alloc = t.resource("allocations", "a User's capacity allocation (SECMP0067)")
    p = t.leaf(alloc, "get", _allocations_get, "show a User's allocation")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p = t.leaf(alloc, "set", _allocations_set, "set the fields given of a User's allocation")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p.add_argument("--rate", type=float, metavar="PER_S", help="requests per second")
    p.add_argument("--burst", type=int, metavar="N", help="requests allowed at once")
    shadow_flag(p, "count throttling decisions for this User, throttle nothing")
    version_flag(p)
    dry_run_flag(p)
