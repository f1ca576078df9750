"""The `dccgate` command: run, worker, send, bench, admin, loadtest.

Logging handlers and uvloop are set up here and nowhere else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import prometheus_client

from broker.errors import BrokerError
from broker.security import KafkaClientError, check_access, explain
from workers.config.settings import Settings, SettingsError, build_settings
from workers.tools.completion import SHELLS, completion_script
from workers.tools.configcheck import run_config

__all__ = ["main"]

log = logging.getLogger("dccgate")

_BANNER = """\
dccgate {version} is running.
  Kafka bootstrap : {bootstrap}{embedded}
  metrics, health : http://{http_host}:{http_port}/metrics  http://{http_host}:{http_port}/healthz
  admin API       : http://{http_host}:{http_port}/v1/  (OpenAPI: /openapi.json){token}
  web console     : http://{http_host}:{http_port}/ui/
  DUIS ingress    : {duis_url}serviceD, serviceS, serviceT  (signed DUIS XML)
  try it          : {me} send docs/examples/quickstart.jsonl
Ctrl-C drains the batch in flight and stops.
"""


def _me() -> str:
    """How to type this command here: `dccgate` if that is on PATH, else the path it was
    started by (`.venv/bin/dccgate` after `make run`)."""
    import os
    import shutil

    started = sys.argv[0] if sys.argv and sys.argv[0] else "dccgate"
    on_path = shutil.which("dccgate")
    if os.path.basename(started) != "dccgate" or (
        on_path and os.path.realpath(on_path) == os.path.realpath(started)
    ):
        return "dccgate"
    relative = os.path.relpath(started)
    return relative if not relative.startswith("..") else os.path.abspath(started)


def _token_lines(settings: Settings, made_up: str | None, me: str) -> str:
    """The banner's operator-token lines: the token made up for this run, or where the
    configured one comes from; and how to use it with the admin CLI."""
    if made_up:
        return (
            f"\n  operator token  : {made_up}  (made up for this run; set DCCGATE_TOKEN "
            "before starting to choose one)"
            f"\n  admin CLI       : export DCCGATE_TOKEN={made_up}; {me} admin config show"
        )
    if settings.admin_token:
        return (
            "\n  operator token  : the one in DCCGATE_TOKEN (set before starting)"
            f"\n  admin CLI       : {me} admin config show  (with that DCCGATE_TOKEN exported)"
        )
    return (
        "\n  operator token  : the one whose SHA-256 is admin.token_sha256 in "
        f"{settings.config_path}"
        f"\n  admin CLI       : export DCCGATE_TOKEN=<that token>; {me} admin config show"
    )


def _common(p: argparse.ArgumentParser, *, http: bool = True, duis: bool = False) -> None:
    if duis:
        _duis(p)
    p.add_argument("--bootstrap", help="Kafka bootstrap servers HOST:PORT (DCCGATE_BOOTSTRAP)")
    p.add_argument(
        "--topic-prefix", dest="topic_prefix", help="prefix for every topic (DCCGATE_TOPIC_PREFIX)"
    )
    if http:
        p.add_argument(
            "--http-port", dest="http_port", type=int, help="HTTP port (DCCGATE_HTTP_PORT, 8080)"
        )
        p.add_argument("--http-host", dest="http_host", help="HTTP address (127.0.0.1)")
        p.add_argument(
            "--open-users",
            dest="open_users",
            action="store_const",
            const=True,
            default=None,
            help="demos only: route requests of unregistered Users in any role "
            "(DCCGATE_OPEN_USERS; off by default)",
        )
    p.add_argument("--partitions", type=int, help="partitions per data topic when created (6)")
    p.add_argument(
        "--replication-factor",
        dest="replication_factor",
        type=int,
        help="replicas per topic when created (DCCGATE_REPLICATION_FACTOR, 1; 3 in production)",
    )
    p.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_false",
        default=None,
        help="do not create missing topics at start-up",
    )
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO (default), WARNING, ERROR")
    p.add_argument(
        "--exactly-once",
        dest="exactly_once",
        choices=("auto", "on", "off"),
        help="outputs and input offsets in one transaction (DCCGATE_EXACTLY_ONCE, auto: "
        "where the broker supports transactions; never on the embedded broker)",
    )
    p.add_argument(
        "--config",
        dest="config_path",
        help="TOML configuration file (DCCGATE_CONFIG); see docs/examples/dccgate.toml",
    )


def _duis(p: argparse.ArgumentParser) -> None:
    """The DUIS ingress's flags (docs/duis-ingress.md)."""
    p.add_argument("--duis-port", dest="duis_port", type=int, help="DUIS ingress port (8081)")
    p.add_argument("--duis-host", dest="duis_host", help="DUIS ingress address (127.0.0.1)")
    p.add_argument("--duis-tls-cert", dest="duis_tls_cert", help="PEM certificate: serve HTTPS")
    p.add_argument("--duis-tls-key", dest="duis_tls_key", help="PEM key of --duis-tls-cert")
    p.add_argument(
        "--duis-client-ca", dest="duis_client_ca", help="PEM CAs: require client certificates"
    )
    p.add_argument(
        "--duis-answer-wait-ms",
        dest="duis_answer_wait_ms",
        type=int,
        help="ms to wait for the router's decision before answering I99 pending (2000)",
    )


def _duis_tools(sub: Any, send: argparse.ArgumentParser) -> None:
    """`dccgate send --xml ...` and `dccgate dev make-certs DIR` (docs/duis-ingress.md)."""
    from workers.tools.send_xml import add_xml_arguments

    add_xml_arguments(send)
    dev = sub.add_parser("dev", help="development helpers")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    make_certs = dev_sub.add_parser(
        "make-certs", help="write a test PKI (P-256 keys, X.509 certificates) for demo Users"
    )
    make_certs.add_argument("directory", type=Path, help="where to write the files")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dccgate",
        description="Traffic-management gateway for a smart-metering hub, on Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"dccgate {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the whole gateway in one process (embedded broker)")
    _common(run, duis=True)
    run.add_argument(
        "--kafka-port",
        dest="kafka_port",
        type=int,
        help="port of the embedded broker on 127.0.0.1 (DCCGATE_KAFKA_PORT, 9092)",
    )
    run.add_argument("--log-dir", type=Path, help="where the embedded broker writes its log")

    worker = sub.add_parser("worker", help="one service against an existing Kafka cluster")
    worker.add_argument(
        "service",
        choices=["router", "alerts", "admin", "deliver", "ingress"],
        help="which service to run (deliver: push answers to the Users' response_url; "
        "ingress: the DUIS web services for signed XML)",
    )
    _common(worker, duis=True)

    send = sub.add_parser("send", help="submit Service Requests (JSON lines) and print answers")
    send.add_argument("file", nargs="?", type=Path, help="JSON-lines file (default: stdin)")
    _common(send, http=False)
    send.add_argument(
        "--kafka-port", dest="kafka_port", type=int, help="embedded broker port (9092)"
    )
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    send.add_argument("--json", action="store_true", help="print answers as JSON lines")
    send.add_argument(
        "--rate", type=float, help="send at this many lines a second (default: all at once)"
    )
    send.add_argument(
        "--summary", action="store_true", help="print outcomes per User instead of each answer"
    )

    bench = sub.add_parser(
        "bench", help="measure the router (or the alert worker) against a pass-through loop"
    )
    _common(bench, http=False)
    bench.add_argument("--messages", type=int, default=200_000, help="input records (200000)")
    bench.add_argument("--repeat", type=int, default=3, help="runs of each loop, alternating (3)")
    bench.add_argument("--json", action="store_true", help="end with one JSON line of results")
    bench.add_argument(
        "--checks",
        choices=["all", "duis"],
        default="all",
        help="all (default): also the service with every production check on (router: "
        "registered roles, replay protection, traffic management, ADT; --service alerts: "
        "storm policy, exclusions, regional capacity, MP102); duis: only the router's DUIS "
        "validation and traffic management, the alert worker plain and with regional capacity",
    )
    bench.add_argument(
        "--service", choices=["router", "alerts"], default="router", help="what to measure"
    )
    bench.add_argument(
        "--latency",
        action="store_true",
        help="measure the latency the router adds over a pass-through at 10/50/90%% of its "
        "capacity, instead of throughput (docs/benchmarks.md)",
    )
    bench.add_argument(
        "--duration", type=float, default=10.0, help="--latency: seconds per level (10)"
    )
    bench.add_argument(
        "--capacity",
        type=float,
        help="--latency: the router's capacity in requests/s (default: measured first)",
    )

    watch = sub.add_parser(
        "watch", help="print the records on a topic (forwards, alerts delivered, dead letters)"
    )
    watch.add_argument("topic", help="e.g. sr.outbound, alerts.outbound, deadletter")
    _common(watch, http=False)
    watch.add_argument(
        "--kafka-port", dest="kafka_port", type=int, help="embedded broker port (9092)"
    )
    watch.add_argument(
        "--since",
        metavar="WHEN",
        help="only records since WHEN: seconds, a duration back from now (30m, 1h, 2d) or an "
        "ISO 8601 time (default: all)",
    )
    watch.add_argument(
        "--partition",
        type=int,
        action="append",
        metavar="N",
        help="only partition N (repeatable; default: all)",
    )
    watch.add_argument("--offset", type=int, metavar="N", help="start each --partition at offset N")
    watch.add_argument("--idle", type=float, default=2.0, help="stop after SECONDS quiet (2)")
    watch.add_argument("--count", type=int, help="stop after this many records")
    watch.add_argument("--follow", action="store_true", help="keep following (Ctrl-C stops)")
    watch.add_argument(
        "--grep",
        action="append",
        default=[],
        metavar="TEXT",
        help="only records whose line contains TEXT; repeated, they must all match (AND), "
        "or at least one with --any (OR)",
    )
    watch.add_argument(
        "--any", dest="grep_any", action="store_true", help="repeated --grep: any one (OR)"
    )

    from workers.tools.admin_cli import add_admin_parser
    from workers.tools.configcheck import add_config_parser
    from workers.tools.loadtest.parser import add_loadtest_parser

    add_admin_parser(sub)
    add_loadtest_parser(sub)
    _duis_tools(sub, send)
    add_config_parser(sub)
    completion = sub.add_parser(
        "completion",
        help='print a shell completion script: eval "$(dccgate completion bash)"',
    )
    completion.add_argument("shell", choices=SHELLS, help="bash or zsh")
    return parser


def _version() -> str:
    """The installed distribution's version (as `workers.gateway.dccgate_version`, without
    importing the gateway to answer --version)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dccgate")
    except PackageNotFoundError:  # a source tree without install
        return "0+unknown"


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(
        max(logging.WARNING, logging.getLevelName(level.upper()))
    )


def _run_async(coro: Coroutine[Any, Any, None]) -> None:
    from workers.runtime.process import run

    run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dccgate` command; returns the exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    args = _parser().parse_args(argv)
    if args.command == "admin":
        # The admin client needs none of the gateway's settings, so a broken DCCGATE_*
        # variable of the gateway must not stop an operator's terminal session.
        from workers.tools.admin_cli import run_admin

        return run_admin(args)
    if args.command == "config":  # checks a file: starts nothing, needs no settings
        return run_config(args)
    if args.command == "completion":
        sys.stdout.write(completion_script(_parser(), args.shell))
        return 0
    if args.command == "dev":  # writes files: needs no settings
        from workers.tools.dev_certs import run_make_certs

        return run_make_certs(args.directory)
    if args.command == "send" and args.xml:  # talks HTTP to the ingress, not to Kafka
        from workers.tools.send_xml import run_send_xml

        return run_send_xml(args)
    flags = vars(args)
    try:
        settings = build_settings(flags)
    except SettingsError as exc:
        sys.stderr.write(f"dccgate: {exc}\n")
        return 2
    _setup_logging(settings.log_level)
    try:
        return _dispatch(args, settings)
    except (BrokerError, SettingsError, OSError, ValueError, KafkaClientError) as exc:
        # A refusal of a secured cluster (TLS, login, ACL) in one sentence, else the error.
        reason = explain(exc, settings.kafka_security, settings.bootstrap or "")
        sys.stderr.write(f"dccgate: {reason or exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


# The modules of the `loadtest` extra (pyproject.toml), which only the load test needs.
_LOADTEST_EXTRA = frozenset({"confluent_kafka", "hdrh"})


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from workers import gateway

    if args.command == "run":

        async def ready(bootstrap: str, http_port: int, token: str | None, duis_url: str) -> None:
            sys.stderr.write(
                _BANNER.format(
                    token=_token_lines(settings, token, _me()),
                    me=_me(),
                    version=gateway.dccgate_version(),
                    bootstrap=bootstrap,
                    embedded=" (embedded broker, memory storage: data is lost when it stops)"
                    if settings.bootstrap is None
                    else "",
                    http_host=settings.http_host,
                    http_port=http_port,
                    duis_url=duis_url,
                )
            )

        _run_async(gateway.run_gateway(settings, on_ready=ready, log_dir=args.log_dir))
        return 0
    if args.command == "worker":
        _run_async(gateway.run_worker(args.service, settings))
        return 0
    if args.command in ("send", "watch"):
        bootstrap = settings.bootstrap or f"127.0.0.1:{settings.kafka_port}"
        kafka = settings.kafka(bootstrap, embedded=settings.bootstrap is None)
        _run_async(
            check_access(
                bootstrap,
                kafka.security,
                client_id=kafka.client_id,
                timeout_ms=kafka.request_timeout_ms,
            )
        )
    if args.command == "watch":
        from workers.tools.watch import run_watch

        return run_watch(
            kafka,
            settings.topics,
            args.topic,
            since_s=None,
            since=args.since,
            idle_s=args.idle,
            count=args.count,
            follow=args.follow,
            grep=args.grep,
            any_match=args.grep_any,
            partitions=args.partition,
            offset=args.offset,
        )
    if args.command == "send":
        from workers.tools.send import run_send

        if args.rate is not None and not args.rate > 0:
            raise ValueError(f"--rate must be a positive number of lines a second, got {args.rate}")
        stream = args.file.open("rb") if args.file else sys.stdin.buffer
        with stream:
            return run_send(
                list(stream),
                settings=kafka,
                topics=settings.topics,
                timeout_s=args.timeout,
                as_json=args.json,
                rate_per_s=args.rate,
                summary=args.summary,
            )
    if args.command == "admin":
        from workers.tools.admin_cli import run_admin

        return run_admin(args)
    if args.command == "loadtest":
        try:
            from workers.tools.loadtest.cli import run_loadtest
        except ModuleNotFoundError as exc:
            if exc.name not in _LOADTEST_EXTRA:
                raise
            sys.stderr.write(
                f"dccgate loadtest needs the load-test extra ({exc.name} is missing): "
                "pip install 'dccgate[loadtest]' (make installs it)\n"
            )
            return 1
        return run_loadtest(args, settings)
    if args.command == "bench" and args.latency:
        from workers.tools.latency import run_latency

        return run_latency(
            settings, duration_s=args.duration, capacity_per_s=args.capacity, as_json=args.json
        )
    if args.command == "bench":
        from workers.tools.bench import run_bench

        return run_bench(
            settings,
            messages=args.messages,
            repeat=args.repeat,
            as_json=args.json,
            service=args.service,
            checks=args.checks,
        )
    raise AssertionError(args.command)  # argparse allows nothing else


if __name__ == "__main__":
    sys.exit(main())
