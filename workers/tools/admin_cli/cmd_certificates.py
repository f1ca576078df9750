"""`dccgate admin certificates`: register, list and revoke Users' signing certificates
(the DUIS ingress verifies XML with them; docs/duis-ingress.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx, uid
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.formatting import format_fields, format_table
from workers.tools.admin_cli.tree import Tree

__all__ = ["register"]

_MAX_PEM_BYTES = 16_384


def _fields(doc: dict[str, Any]) -> str:
    return format_fields(
        [
            ("USER ID", doc.get("user_id")),
            ("FINGERPRINT", doc.get("fingerprint_sha256")),
            ("USAGE", doc.get("usage")),
            ("ROLE", doc.get("role")),
            ("STATUS", doc.get("status")),
            ("ISSUER", doc.get("issuer")),
            ("SERIAL", doc.get("serial")),
        ]
    )


def _add(ctx: Ctx, args: argparse.Namespace) -> int:
    path = Path(args.pem_file)
    try:
        data = path.read_bytes()[: _MAX_PEM_BYTES + 1]
    except OSError as exc:
        raise AdminCliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        pem = data.decode("ascii")
    except UnicodeDecodeError:
        raise AdminCliError(f"{path} is not a PEM file (not ASCII)") from None
    body = {"pem": pem, "usage": args.usage, "role": args.role.upper()}
    doc = ctx.client.call("POST", f"/v1/users/{segment(args.user_id)}/certificates", body=body)
    return ctx.show(doc, lambda: _fields(doc))


def _list(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", f"/v1/users/{segment(args.user_id)}/certificates")
    rows = [
        (c.get("fingerprint_sha256", "")[:16], c.get("usage"), c.get("role"), c.get("status"))
        for c in doc.get("certificates", [])
    ]
    return ctx.show(
        doc,
        lambda: format_table(
            ("FINGERPRINT", "USAGE", "ROLE", "STATUS"), rows, empty="no certificates"
        ),
    )


def _revoke(ctx: Ctx, args: argparse.Namespace) -> int:
    path = f"/v1/users/{segment(args.user_id)}/certificates/{segment(args.fingerprint)}"
    doc = ctx.client.call("DELETE", path)
    return ctx.show(doc, lambda: _fields(doc))


def register(t: Tree) -> None:
    """Add `certificates add|list|revoke` to the tree."""
    certs = t.resource("certificates", "Users' signing certificates (DUIS ingress)")
    p = t.leaf(certs, "add", _add, "register a certificate for one of the User's roles")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p.add_argument("pem_file", metavar="PEM_FILE", help="the certificate, PEM")
    p.add_argument(
        "--usage", required=True, choices=("xml-signing", "command-signing"), help="what it signs"
    )
    p.add_argument("--role", required=True, help="the User Role it signs in, e.g. IS")
    p = t.leaf(certs, "list", _list, "list a User's certificates (revoked ones too)")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p = t.leaf(certs, "revoke", _revoke, "revoke a certificate (it stays listed, revoked)")
    p.add_argument("user_id", type=uid, metavar="USER_ID")
    p.add_argument("fingerprint", metavar="FINGERPRINT", help="its fingerprint_sha256")
