"""`dccgate config check FILE`: check a configuration file without starting anything.

Exit 0 with `FILE: OK` when a service would load it; exit 1 with every problem, one a
line as `FILE:LINE: what is wrong; what would be right` (`workers.config.check`), or as
JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from workers.config.check import check_config_file

__all__ = ["add_config_parser", "run_config"]


def add_config_parser(sub: Any) -> None:
    """Add `config check FILE` to the `dccgate` sub-commands."""
    config = sub.add_parser("config", help="check a configuration file (starts nothing)")
    verbs = config.add_subparsers(dest="config_verb", required=True, metavar="VERB")
    check = verbs.add_parser(
        "check",
        help="every problem of FILE with its line and the fix; exit 0 if it is good",
        description="Check a TOML configuration file (docs/examples/dccgate.toml) as "
        "`dccgate run --config FILE` would load it, without starting anything: exit 0 if "
        "it is good, else 1 with every problem, its line and what would be right.",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument(
        "--json", dest="config_json", action="store_true", help="the problems as JSON"
    )


def run_config(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `config check`; returns the exit code."""
    out = sys.stdout if out is None else out
    name = str(args.file)
    problems = check_config_file(args.file)
    if args.config_json:
        doc = {
            "file": name,
            "ok": not problems,
            "problems": [{"line": p.line, "message": p.message} for p in problems],
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    elif problems:
        out.write("".join(p.render(name) + "\n" for p in problems))
        out.write(f"{name}: {len(problems)} problem(s)\n")
    else:
        out.write(f"{name}: OK\n")
    return 1 if problems else 0
