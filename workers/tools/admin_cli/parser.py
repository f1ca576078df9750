"""`dccgate admin`: the whole parser, one command group after another."""

from __future__ import annotations

import argparse
from typing import Any

from workers.tools.admin_cli import (
    cmd_adt,
    cmd_allocations,
    cmd_audit,
    cmd_certificates,
    cmd_config,
    cmd_exclusions,
    cmd_explain,
    cmd_forecasts,
    cmd_quarantine,
    cmd_raw,
    cmd_report,
    cmd_storm,
    cmd_tokens,
    cmd_traffic,
    cmd_users,
)
from workers.tools.admin_cli.tree import Tree, shared_options

__all__ = ["add_admin_parser"]

# In the order `dccgate admin --help` lists them.
_GROUPS = (
    cmd_users,
    cmd_tokens,
    cmd_certificates,
    cmd_allocations,
    cmd_traffic,
    cmd_adt,
    cmd_exclusions,
    cmd_storm,
    cmd_config,
    cmd_quarantine,
    cmd_forecasts,
    cmd_report,
    cmd_explain,
    cmd_audit,
    cmd_raw,
)


def add_admin_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `admin` and its sub-commands to `sub` (the `dccgate` sub-parsers action).

    Every dest is prefixed or specific so none collides with a Settings field, which
    `build_settings` would otherwise read as a flag.
    """
    admin: argparse.ArgumentParser = sub.add_parser(
        "admin",
        help="the admin API at a terminal: Users, tokens, allocations, audit, ...",
        description=(
            "Wrap the admin HTTP API. The token comes from DCCGATE_TOKEN (or --token-env "
            "NAME), never from a flag. `dccgate admin RESOURCE --help` lists the verbs."
        ),
        parents=[shared_options(suppress=False)],
        # No abbreviations: `--token SECRET` must be refused, not read as --token-env.
        allow_abbrev=False,
    )
    t = Tree(admin.add_subparsers(dest="admin_resource", required=True, metavar="RESOURCE"))

    for group in _GROUPS:
        group.register(t)
    return admin
