"""`dccgate admin traffic`: system traffic management (SECMP0067)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from workers.tools.admin_cli.command import Ctx, nothing_to_change, update
from workers.tools.admin_cli.errors import AdminCliError
from workers.tools.admin_cli.formatting import cell, format_fields, merge, split_list
from workers.tools.admin_cli.tree import Tree, dry_run_flag, shadow_flag, version_flag

__all__ = ["register", "traffic_changes"]


def _default_allocation(value: Any) -> str:
    if not isinstance(value, dict):
        return "none (a User without an allocation is never throttled)"
    shadow = " (shadow)" if value.get("shadow") else ""
    return f"{cell(value.get('rate_per_s'))}/s, burst {cell(value.get('burst'))}{shadow}"


def _from_forecasts(value: Any) -> str:
    if not isinstance(value, dict):
        return "off (Users without an allocation get the default)"
    return (
        f"peak-hour share {cell(value.get('peak_hour_share'))}, headroom "
        f"{cell(value.get('headroom_ratio'))}, burst {cell(value.get('burst_s'))} s"
    )


def _forecast_rule(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "peak_hour_share": args.forecast_peak_hour_share,
        "headroom_ratio": args.forecast_headroom_ratio,
        "burst_s": args.forecast_burst_s,
    }


def _traffic_fields(doc: Mapping[str, Any]) -> str:
    return format_fields(
        [
            ("CAPACITY/S", doc.get("capacity_per_s")),
            ("OPERATING THRESHOLD/S", doc.get("operating_threshold_per_s")),
            ("RESERVED SRVS", doc.get("reserved_srvs")),
            ("RESERVED SHARE", doc.get("reserved_share")),
            ("SHADOW", doc.get("shadow")),
            ("DEFAULT ALLOCATION", _default_allocation(doc.get("default_allocation"))),
            ("EXIT MARGIN RATIO", doc.get("exit_margin_ratio")),
            ("EXIT HOLD S", doc.get("exit_hold_s")),
            ("FROM FORECASTS", _from_forecasts(doc.get("allocations_from_forecasts"))),
            ("VERSION", doc.get("version")),
        ]
    )


def traffic_changes(args: argparse.Namespace, current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `traffic set` changes, `default_allocation` merged into the current one."""
    changes: dict[str, Any] = {
        "capacity_per_s": args.capacity,
        "operating_threshold_per_s": args.threshold,
        "reserved_srvs": None if args.reserved is None else split_list(args.reserved),
        "reserved_share": args.reserved_share,
        "shadow": args.shadow,
        "exit_margin_ratio": args.exit_margin_ratio,
        "exit_hold_s": args.exit_hold_s,
    }
    if args.default_rate is not None or args.default_burst is not None:
        base = current.get("default_allocation") or {}
        changes["default_allocation"] = merge(
            base, {"rate_per_s": args.default_rate, "burst": args.default_burst}
        )
    if args.from_forecasts or any(v is not None for v in _forecast_rule(args).values()):
        # Allocations from forecasts (docs/forecasts.md): on, with the parameters given.
        base = current.get("allocations_from_forecasts") or {}
        changes["allocations_from_forecasts"] = merge(base, _forecast_rule(args))
    return changes


def _traffic_get(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = ctx.client.call("GET", "/v1/traffic")
    return ctx.show(doc, lambda: _traffic_fields(doc))


def _traffic_set(ctx: Ctx, args: argparse.Namespace) -> int:
    default_given = args.default_rate is not None or args.default_burst is not None
    if args.no_default_allocation and default_given:
        raise AdminCliError(
            "--no-default-allocation and --default-rate/--default-burst contradict: give one",
            exit_code=2,
        )
    flags = (
        args.capacity,
        args.threshold,
        args.reserved,
        args.reserved_share,
        args.shadow,
        args.exit_margin_ratio,
        args.exit_hold_s,
    )
    forecasts_given = args.from_forecasts or any(
        v is not None for v in _forecast_rule(args).values()
    )
    if args.no_from_forecasts and forecasts_given:
        raise AdminCliError(
            "--no-from-forecasts and --from-forecasts/--forecast-* contradict: give one",
            exit_code=2,
        )
    if (
        all(v is None for v in flags)
        and not default_given
        and not args.no_default_allocation
        and not forecasts_given
        and not args.no_from_forecasts
    ):
        raise nothing_to_change("at least one of the flags of `traffic set --help`")
    clear = ("default_allocation",) if args.no_default_allocation else ()
    if args.no_from_forecasts:
        clear = (*clear, "allocations_from_forecasts")
    doc = update(
        ctx,
        "/v1/traffic",
        lambda current: traffic_changes(args, current),
        args.version,
        clear=clear,
    )
    return ctx.show(doc, lambda: _traffic_fields(doc))


def register(t: Tree) -> None:
    """Add `traffic get|set`."""
    traffic = t.resource("traffic", "system traffic management (SECMP0067)")
    t.leaf(traffic, "get", _traffic_get, "show traffic management")
    p = t.leaf(traffic, "set", _traffic_set, "set the fields given of traffic management")
    p.add_argument("--capacity", type=float, metavar="PER_S", help="capacity, requests per s")
    p.add_argument("--threshold", type=float, metavar="PER_S", help="operating threshold per s")
    p.add_argument(
        "--reserved", metavar="2.2,7.1", help="reserved Service Reference Variants ('' for none)"
    )
    p.add_argument("--reserved-share", type=float, metavar="S", help="share kept for them, 0-1")
    shadow_flag(p, "compute throttling, throttle nothing")
    p.add_argument("--default-rate", type=float, metavar="PER_S", help="default allocation rate")
    p.add_argument("--default-burst", type=int, metavar="N", help="default allocation burst")
    p.add_argument(
        "--exit-margin-ratio",
        type=float,
        metavar="R",
        help="hysteresis, 0-1: once active, off only under threshold x (1 - R) (0.05)",
    )
    p.add_argument(
        "--exit-hold-s",
        type=float,
        metavar="S",
        help="seconds the load must stay under that level before switching off (1; 0-3600)",
    )
    p.add_argument(
        "--no-default-allocation",
        action="store_true",
        help="remove the default allocation (Users without one are never throttled)",
    )
    p.add_argument(
        "--from-forecasts",
        action="store_true",
        help="derive the allocation of a User without one from its forecast for the month",
    )
    p.add_argument(
        "--forecast-peak-hour-share",
        type=float,
        metavar="S",
        help="with --from-forecasts: share of the month's requests in its busiest hour (0.004)",
    )
    p.add_argument(
        "--forecast-headroom-ratio",
        type=float,
        metavar="R",
        help="with --from-forecasts: multiplier over the expected peak rate (1.5)",
    )
    p.add_argument(
        "--forecast-burst-s",
        type=float,
        metavar="S",
        help="with --from-forecasts: seconds of the derived rate allowed at once (1)",
    )
    p.add_argument(
        "--no-from-forecasts",
        action="store_true",
        help="stop deriving allocations from forecasts",
    )
    version_flag(p)
    dry_run_flag(p)
