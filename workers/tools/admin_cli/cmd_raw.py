"""`dccgate admin get|put|post|delete PATH`: any API call, JSON in and out."""

from __future__ import annotations

import argparse
import json
from typing import Any

from workers.tools.admin_cli.command import Ctx, Handler, load_file
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.tree import Tree

__all__ = ["api_path", "register"]


def api_path(path: str) -> str:
    """`users` -> `/v1/users`; a path with a leading `/` is taken as it is."""
    return path if path.startswith("/") else "/v1/" + path


def _raw(method: str) -> Handler:
    def call(ctx: Ctx, args: argparse.Namespace) -> int:
        body: dict[str, Any] | None = None
        if getattr(args, "body_json", None) is not None:
            try:
                body = json.loads(args.body_json)
            except ValueError as exc:
                raise AdminCliError(f"--json is not valid JSON: {exc}", exit_code=2) from None
        elif getattr(args, "file", None) is not None:
            body = load_file(args.file, ctx.stdin)
        if method == "PUT" and body is None:
            raise AdminCliError("put needs a body: --json '{...}' or --file F", exit_code=2)
        doc = ctx.client.call(method, api_path(args.path), body=body)
        ctx.out.write(json.dumps(doc, indent=2) + "\n")
        return 0

    return call


def register(t: Tree) -> None:
    """Add `get`, `put`, `post` and `delete PATH`."""
    p = t.leaf(t.top, "get", _raw("GET"), "GET any path; prints JSON")
    p.add_argument("path", metavar="PATH")
    for verb in ("put", "post"):
        p = t.leaf(
            t.top,
            verb,
            _raw(verb.upper()),
            f"{verb.upper()} any path; prints JSON",
            json_flag=False,
        )
        p.add_argument("path", metavar="PATH")
        body = p.add_mutually_exclusive_group(required=verb == "put")
        body.add_argument("--json", dest="body_json", metavar="'{...}'", help="the JSON body")
        body.add_argument("--file", metavar="F", help="the body: JSON, or TOML if *.toml")
    p = t.leaf(t.top, "delete", _raw("DELETE"), "DELETE any path; prints JSON")
    p.add_argument("path", metavar="PATH")
