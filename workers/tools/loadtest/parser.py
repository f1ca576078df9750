"""`dccgate loadtest`'s command line, apart from the runner so that `dccgate --help` works
without the load-test extra (confluent-kafka, hdrhistogram) installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.tools.loadtest.scenario import BUILT_IN

__all__ = ["add_loadtest_parser"]


def add_loadtest_parser(sub: Any) -> None:
    """Add `loadtest` to the `dccgate` sub-commands."""
    p = sub.add_parser(
        "loadtest",
        help="simulate installs, storms and runaway Users against a gateway (docs/loadtest.md)",
    )
    p.add_argument("scenario", help=f"a scenario TOML file, or one of: {', '.join(BUILT_IN)}")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--bootstrap", help="Kafka of a running gateway, HOST:PORT (default 127.0.0.1:9092)"
    )
    where.add_argument(
        "--embedded", action="store_true", help="start a gateway for the run, stop it after"
    )
    p.add_argument("--topic-prefix", dest="topic_prefix", help="the gateway's topic prefix")
    p.add_argument("--duration", type=float, help="seconds of traffic (the scenario's default)")
    p.add_argument("--seed", type=int, help="random seed (the scenario's default)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every rate (1.0)")
    p.add_argument("--report", type=Path, help="write report.json and report.html here")
    p.add_argument("--admin-url", dest="admin_url", help="admin API of the running gateway")
    p.add_argument("--token", help="operator token for --admin-url (configures the gateway)")
    p.add_argument(
        "--what-if",
        dest="what_if",
        type=Path,
        help="a proposed dccgate configuration file: run twice and report the difference",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="generator processes, each sending the traffic of some Users (1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--json", action="store_true", help="print the run's counts as JSON")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING (default), ERROR")
