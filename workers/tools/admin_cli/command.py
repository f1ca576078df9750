"""What every command handler shares: its context, file bodies, and merge-then-PUT."""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from workers.tools.admin_cli.client import ENVELOPE_KEYS, AdminClient, as_object
from workers.tools.admin_cli.errors import AdminCliError, ApiAnswerError
from workers.tools.admin_cli.formatting import cell, format_table, merge, printable

_SOURCES = {
    "default": "built-in default (never set)",
    "file": "the configuration file",
    "api": "the admin API",
}


def source_text(doc: Mapping[str, Any]) -> str:
    """The `SOURCE` line of a configuration item (and its note, for a default)."""
    source = str(doc.get("source"))
    text = f"SOURCE  {_SOURCES.get(source, printable(source))}\n"
    if doc.get("note"):
        text += f"NOTE    {printable(str(doc['note']))}\n"
    return text


def dry_run_text(doc: Mapping[str, Any]) -> str:
    """A dry-run answer: what the change would do, field by field."""
    key = printable(str(doc.get("key")))
    if not doc.get("would_write"):
        return f"dry run: {key} would not change (stays at version {doc.get('version')})\n"
    changes: Mapping[str, Any] = doc.get("changes") or {}
    head = (
        f"dry run: {key} would go from version {doc.get('version')} "
        f"({doc.get('source')}) to {doc.get('version_after')}; nothing was written\n"
    )
    rows = [(name, cell(c.get("from")), cell(c.get("to"))) for name, c in changes.items()]
    return head + format_table(("FIELD", "NOW", "WOULD BE"), rows, empty="(same fields)")


__all__ = [
    "PROG",
    "Ctx",
    "Handler",
    "dry_run_text",
    "load_file",
    "nothing_to_change",
    "put_whole",
    "source_text",
    "uid",
    "update",
]

PROG = "dccgate admin"


def load_file(name: str, stdin: TextIO) -> dict[str, Any]:
    """A JSON or TOML object from a file (`-`: JSON on stdin); usage errors exit 2."""
    try:
        text = stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise AdminCliError(f"cannot read {name}: {exc.strerror or exc}", exit_code=2) from None
    try:
        doc: Any = tomllib.loads(text) if name.endswith(".toml") else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if name.endswith(".toml") else "JSON (name it *.toml for TOML)"
        raise AdminCliError(f"{name} is not valid {kind}: {exc}", exit_code=2) from None
    if not isinstance(doc, dict):
        raise AdminCliError(f"{name} must hold one JSON object (the body)", exit_code=2)
    return doc


@dataclass
class Ctx:
    client: AdminClient
    out: TextIO
    err: TextIO
    stdin: TextIO
    as_json: bool
    dry_run: bool = False
    """Changes are sent with `?dry_run=true`: the API answers what would change."""

    def show(self, doc: Any, render: Callable[[], str]) -> int:
        """Print `doc`: as JSON with --json; else a dry-run answer as its changes, and a
        configuration item by `render()` followed by its source."""
        if self.as_json:
            self.out.write(json.dumps(doc, indent=2) + "\n")
        elif isinstance(doc, dict) and doc.get("dry_run") is True and "would_write" in doc:
            self.out.write(dry_run_text(doc))
        elif isinstance(doc, dict) and isinstance(doc.get("source"), str):
            fields = set(doc) - ENVELOPE_KEYS
            self.out.write((render() if fields else "") + source_text(doc))
        else:
            self.out.write(render())
        return 0

    def note(self, message: str) -> None:
        self.err.write(f"{PROG}: {message}\n")


Handler = Callable[[Ctx, argparse.Namespace], int]


def uid(value: str) -> str:
    return value.strip().upper()


def nothing_to_change(flags: str) -> AdminCliError:
    return AdminCliError(f"nothing to change: give {flags}", exit_code=2)


def update(
    ctx: Ctx,
    path: str,
    changes: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]],
    version: int | None,
    *,
    clear: Sequence[str] = (),
) -> dict[str, Any]:
    """GET `path`, apply `changes` (or `changes(current)`) and set the `clear` fields to
    null, then PUT with the version read (or `version` if given). An item the changes
    leave as it was is not written: no new version, no audit record."""
    current, read_version = ctx.client.read_for_update(path)
    body = merge(current, changes(current) if callable(changes) else changes)
    body.update(dict.fromkeys(clear))
    if current and body == current and version is None and not ctx.dry_run:
        ctx.note(f"no change: {path} stays at version {read_version}")
        return {**current, "version": read_version}
    body["version"] = read_version if version is None else version
    try:
        return as_object(ctx.client.call("PUT", path, body=body, query=_dry(ctx)), path)
    except ApiAnswerError as exc:
        if exc.status == 422 and not current:
            exc.message += f" ({path} did not exist yet: a new one needs every required field)"
        raise


def _dry(ctx: Ctx) -> dict[str, object] | None:
    return {"dry_run": "true"} if ctx.dry_run else None


def put_whole(ctx: Ctx, path: str, doc: dict[str, Any], version: int | None) -> Any:
    if version is not None:
        doc = {**doc, "version": version}
    return ctx.client.call("PUT", path, body=doc, query=_dry(ctx))
