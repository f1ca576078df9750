"""`dccgate loadtest`'s command line, apart from the runner so that `dccgate --help` works
without the load-test extra (confluent-kafka, hdrhistogram) installed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workers.tools.loadtest.scenario import BUILT_IN

__all__ = ["add_loadtest_parser"]


class _RefuseSecret(argparse.Action):
    """`--token`: refused without echoing its value, which would be the secret itself
    (on the command line it lands in shell history and `ps`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            "--token is not taken on the command line (it would land in shell history "
            "and ps): export DCCGATE_TOKEN, or give --token-file F"
        )


def add_loadtest_parser(sub: Any) -> None:
    """Add `loadtest` to the `dccgate` sub-commands."""
    p = sub.add_parser(
        "loadtest",
        help="simulate installs, storms and runaway Users against a gateway (docs/loadtest.md)",
    )
    p.add_argument(
        "scenario",
        help=f"a scenario TOML file, or one of: {', '.join(BUILT_IN)}; or `compare` to "
        "compare two saved runs (dccgate loadtest compare A B [--report DIR])",
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="with compare: the two saved runs, directories written by --report or their "
        "report.json",
    )
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
    p.add_argument(
        "--report",
        type=Path,
        help="write report.json and report.html here (compare: compare.json and compare.html, "
        "default compare-report/)",
    )
    p.add_argument(
        "--threshold",
        action="append",
        metavar="EXPR",
        help="pass/fail check at the end, e.g. 'p99<500ms', 'quarantined==0', "
        "'error_rate<1%%'; repeatable; a failed one exits 99 (docs/loadtest.md, Thresholds)",
    )
    p.add_argument("--admin-url", dest="admin_url", help="admin API of the running gateway")
    p.add_argument(
        "--token-file",
        dest="token_file",
        type=Path,
        metavar="F",
        help="file holding the operator token for --admin-url (default: DCCGATE_TOKEN)",
    )
    p.add_argument("--token", action=_RefuseSecret, nargs="?", help=argparse.SUPPRESS)
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
    p.add_argument(
        "--via",
        choices=["kafka", "duis"],
        default="kafka",
        help="how requests reach the gateway: kafka (written to dcc.sr.inbound, default) or "
        "duis (signed DUIS XML POSTed to the ingress by simulated Users with keys of their "
        "own; docs/loadtest.md, Through the DUIS ingress)",
    )
    p.add_argument(
        "--duis-url",
        dest="duis_url",
        help="with --via duis and a running gateway: its DUIS ingress (default "
        "http://127.0.0.1:8081); --embedded uses its own",
    )
    p.add_argument(
        "--duis-ca",
        dest="duis_ca",
        type=Path,
        metavar="FILE",
        help="with --via duis and an https --duis-url: PEM CAs to trust",
    )
    p.add_argument(
        "--duis-in-flight",
        dest="duis_in_flight",
        type=int,
        default=64,
        help="with --via duis: requests POSTed and not yet answered, at most (64); when "
        "requests wait for this bound the run says so",
    )
    p.add_argument(
        "--duis-keys",
        dest="duis_keys",
        type=Path,
        metavar="DIR",
        help="with --via duis: where the simulated Users' keys and certificates are cached "
        "(default: DIR/duis-keys under --report, else .dccgate-loadtest/duis-keys)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--json", action="store_true", help="print the run's counts as JSON")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING (default), ERROR")
