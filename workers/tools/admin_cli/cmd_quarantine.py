"""`dccgate admin quarantine`: requests held by anomaly detection, and decisions.

`release` and `delete` take one REQUEST_ID, or filters (`--user`, `--rule`, `--kind`,
`--from`, `--to`) for a bulk decision: every pending request that matches is decided, at
most `--limit` per call; those already decided are listed as skipped, never decided twice.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from typing import Any

from workers.tools.admin_cli.client import segment
from workers.tools.admin_cli.command import Ctx, Handler, uid
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.formatting import format_fields, format_table, iso_ms
from workers.tools.admin_cli.tree import Tree
from workers.tools.times import TIME_HELP, TimeError, iso_s, parse_when_s

__all__ = ["register"]

_KINDS = ("user_adt", "dcc_adt", "data_value")
_BULK_DEFAULT = 1000  # the API's BULK_LIMIT: most requests one bulk decision decides
_STATES = ("pending", "released", "deleted", "expired", "any")


def _rfc3339(text: str | None, flag: str) -> str | None:
    """--from / --to (a duration back from now or an ISO time) as the API's RFC 3339."""
    if text is None:
        return None
    try:
        return iso_s(parse_when_s(text, time.time()))
    except TimeError as exc:
        raise AdminCliError(f"{flag}: {exc}", exit_code=2) from None


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given on the command line, by their API names."""
    given = {
        "user_id": None if args.user is None else uid(args.user),
        "rule": args.rule,
        "kind": args.kind,
        "from": _rfc3339(args.q_from, "--from"),
        "to": _rfc3339(args.q_to, "--to"),
    }
    return {k: v for k, v in given.items() if v is not None}


def _quarantine_list(ctx: Ctx, args: argparse.Namespace) -> int:
    query = {**_filters(args), "state": args.state, "limit": args.limit}
    doc = ctx.client.call("GET", "/v1/quarantine", query=query)
    items = doc.get("items", [])
    if doc.get("more"):
        ctx.note("more requests match: narrow the filters, or --limit N (up to 10000)")
    return ctx.show(doc, lambda: _list_text(items))


def _list_text(items: Sequence[Mapping[str, Any]]) -> str:
    """The API's entries as a table; the reason and the rest are in `--json`."""
    head: tuple[str, ...] = ("REQUEST ID", "STATE", "SRV", "RULE", "OBSERVED", "LIMIT")
    head += ("QUARANTINED (UTC)",)
    rows: list[tuple[object, ...]] = [
        (
            e.get("id"),
            e.get("state"),
            e.get("srv"),
            e.get("rule"),
            e.get("observed"),
            e.get("limit"),
            _at(e, "at_s"),
        )
        for e in items
    ]
    if any(e.get("decided_by") or e.get("decided_at_s") for e in items):
        head += ("DECIDED (UTC)", "BY")
        rows = [
            (*row, _at(e, "decided_at_s"), e.get("decided_by"))
            for row, e in zip(rows, items, strict=True)
        ]
    return format_table(head, rows, empty="nothing is quarantined")


def _at(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    return iso_ms(int(value * 1000)) if isinstance(value, int | float) else "-"


def _field(key: str, value: Any) -> tuple[str, object]:
    """One field of an answer for `format_fields`: times (`*_s`, `*_ms` since the epoch)
    as ISO 8601 UTC, e.g. `AT (UTC)  2026-12-04T23:25:51.979Z`."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if key.endswith("_ms") and is_number:
        return key[:-3].replace("_", " ").upper() + " (UTC)", iso_ms(int(value))
    if key.endswith("at_s") and is_number:
        return key[:-2].replace("_", " ").upper() + " (UTC)", iso_ms(round(value * 1000))
    return key.replace("_", " ").upper(), value


def _bulk_text(decision: str, doc: Mapping[str, Any]) -> str:
    decided: Sequence[Mapping[str, Any]] = doc.get("decided", [])
    skipped: Sequence[Mapping[str, Any]] = doc.get("skipped", [])
    rows = [
        (e.get("id"), e.get("user_id"), e.get("srv"), e.get("rule"), _at(e, "at_s"))
        for e in decided
    ]
    head = ("REQUEST ID", "USER ID", "SRV", "RULE", "QUARANTINED (UTC)")
    text = f"{decision}d {len(decided)}, skipped {len(skipped)}\n"
    if rows:
        text += "\n" + format_table(head, rows)
    if skipped:
        skipped_rows = [(s.get("id"), s.get("state"), s.get("reason")) for s in skipped]
        text += "\nSKIPPED\n" + format_table(("REQUEST ID", "STATE", "REASON"), skipped_rows)
    return text


def _dry_run(ctx: Ctx, decision: str, filters: dict[str, Any]) -> int:
    """What a bulk decision would decide: the pending requests that match, as the API
    lists them now (the same filters and limit, oldest first); nothing is decided."""
    query = {**filters, "state": "pending", "limit": filters.get("limit", _BULK_DEFAULT)}
    doc = ctx.client.call("GET", "/v1/quarantine", query=query)
    items = doc.get("items", [])
    answer = {"dry_run": True, "decision": decision, "would_decide": len(items), **doc}
    if doc.get("more"):
        ctx.note(f"more pending requests match than {query['limit']}: one call decides those")
    return ctx.show(
        answer,
        lambda: (
            f"dry run: would {decision} {len(items)} pending request(s); nothing was "
            f"decided\n\n" + _list_text(items)
        ),
    )


def _quarantine_decide(decision: str) -> Handler:
    def decide(ctx: Ctx, args: argparse.Namespace) -> int:
        filters = _filters(args)
        if args.request_id is not None:
            if filters or args.limit is not None:
                raise AdminCliError(
                    f"give REQUEST_ID or filters, not both (`quarantine {decision} --help`)",
                    exit_code=2,
                )
            if ctx.dry_run:
                raise AdminCliError(
                    "--dry-run is for bulk decisions (filters); for one request, "
                    "`quarantine list --state any` shows its state",
                    exit_code=2,
                )
            path = f"/v1/quarantine/{segment(args.request_id)}/{decision}"
            doc = ctx.client.call("POST", path)
            pairs = [_field(k, v) for k, v in (doc or {}).items()]
            return ctx.show(doc, lambda: format_fields(pairs) or f"{decision}d {args.request_id}\n")
        if not filters:
            raise AdminCliError(
                f"give a REQUEST_ID, or at least one of --user, --rule, --kind, --from, --to "
                f"to {decision} every pending request that matches",
                exit_code=2,
            )
        if args.limit is not None:
            filters["limit"] = args.limit
        if ctx.dry_run:
            return _dry_run(ctx, decision, filters)
        doc = ctx.client.call("POST", f"/v1/quarantine/{decision}", body=filters)
        if doc.get("more"):
            ctx.note(f"more pending requests match: run the command again to {decision} them")
        return ctx.show(doc, lambda: _bulk_text(decision, doc))

    return decide


def _filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", metavar="USER_ID", help="only this User's")
    p.add_argument("--rule", metavar="RULE", help="only those caught by this rule id")
    p.add_argument("--kind", choices=_KINDS, help="only those caught by this kind of rule")
    p.add_argument(
        "--from",
        dest="q_from",
        metavar="TIME",
        help=f"quarantined at or after TIME: {TIME_HELP}",
    )
    p.add_argument(
        "--to", dest="q_to", metavar="TIME", help="quarantined before TIME (the same forms)"
    )


def register(t: Tree) -> None:
    """Add `quarantine list|release|delete`."""
    quarantine = t.resource("quarantine", "requests held by anomaly detection")
    p = t.leaf(quarantine, "list", _quarantine_list, "list quarantined requests")
    _filter_flags(p)
    p.add_argument("--state", choices=_STATES, help="pending (the default), ..., or any")
    p.add_argument("--limit", type=int, metavar="N", help="at most N (1000; up to 10000)")
    for decision, text in (
        ("release", "release for processing"),
        ("delete", "delete quarantined requests"),
    ):
        p = t.leaf(
            quarantine,
            decision,
            _quarantine_decide(decision),
            f"{text}: one REQUEST_ID, or every pending one the filters match",
        )
        p.add_argument("request_id", metavar="REQUEST_ID", nargs="?")
        _filter_flags(p)
        p.add_argument(
            "--limit", type=int, metavar="N", help="bulk: at most N per call (1000; up to 1000)"
        )
        p.add_argument(
            "--dry-run",
            dest="admin_dry_run",
            action="store_true",
            help="bulk: list the pending requests the decision would take; decide nothing",
        )
