"""`dccgate loadtest SCENARIO`: run a scenario against a gateway, show progress, report.

With `--embedded` a gateway is started for the run (`gateway.EmbeddedGateway`) and stopped
after it; otherwise the run drives the gateway on `--bootstrap` (default: the address
`dccgate run` uses, 127.0.0.1:9092), and configures it only if `--admin-url` is given and
an operator token is in `DCCGATE_TOKEN` or the `--token-file` (never on the command
line). `--what-if PROPOSED.toml` runs the same seeded scenario twice on embedded gateways,
with the scenario's configuration and with the proposed one, and reports the difference
(docs/tuning-with-the-simulator.md). `--via duis` sends the requests as signed DUIS XML
through the gateway's ingress instead of writing them to Kafka (`duis.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from broker.security import KafkaSecurity
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.config.configfile import ConfigFileError, load_config_file
from workers.config.settings import Settings
from workers.config.tokens import token_from_env
from workers.tools.loadtest.duis import DuisClient, DuisError, UserPki, register
from workers.tools.loadtest.gateway import (
    EmbeddedGateway,
    GatewayError,
    apply_config,
    scrape_metrics,
)
from workers.tools.loadtest.progress import Progress
from workers.tools.loadtest.report import compare, write_report, write_whatif
from workers.tools.loadtest.report_schema import LoadTestReport
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.runner import Collector, Runner
from workers.tools.loadtest.scenario import Scenario, ScenarioError, load_scenario
from workers.tools.loadtest.shards import ShardError, run_sharded
from workers.tools.loadtest.terminal import (
    THRESHOLD_FAILED_EXIT,
    ThresholdError,
    apply_thresholds,
    counts,
    parse_thresholds,
    run_compare,
    summary_text,
)

__all__ = [
    "RunResult",
    "difference",
    "run_loadtest",
    "run_scenario",
    "summary",
]

_FOLLOW_S = 1.0
"""After configuring an external gateway, how long its workers get to follow dcc.control."""


class RunResult(msgspec.Struct, kw_only=True):
    """One run: the counts, the report (None when the caller collected the results its own
    way), the gateway's metrics at the end."""

    stats: dict[str, Any]
    report: LoadTestReport | None = None
    gateway: dict[str, object] = msgspec.field(default_factory=dict)


async def run_scenario(
    scenario: Scenario,
    *,
    items: dict[str, msgspec.Struct],
    seed: int,
    scale: float,
    duration_s: float,
    embedded: bool,
    bootstrap: str,
    topics: Topics,
    admin_url: str | None = None,
    token: str | None = None,
    progress: Progress | None = None,
    collector: Collector | None = None,
    workers: int = 1,
    security: KafkaSecurity | None = None,
    via: str = "kafka",
    duis_url: str | None = None,
    duis_in_flight: int = 64,
    duis_keys: Path | None = None,
    duis_ca: Path | None = None,
) -> RunResult:
    """One run: start and configure the gateway if asked, drive it (in `workers`
    processes, `shards.py`), collect the results: into a `ResultCollector` and its report,
    or into `collector` (single process only).

    via: `kafka` (requests written to dcc.sr.inbound) or `duis` (signed DUIS XML POSTed to
    the ingress at `duis_url`, or the embedded gateway's, trusting `duis_ca` for https; at
    most `duis_in_flight` at a time; the Users' keys cached in `duis_keys`, default a
    temporary directory).
    """
    if workers > 1 and not isinstance(collector, ResultCollector | None):
        raise ValueError("a sharded run gathers its results in a ResultCollector")
    if via not in ("kafka", "duis"):
        raise ValueError(f"via must be kafka or duis, got {via!r}")
    if via == "duis" and workers > 1:
        raise DuisError("--via duis runs in one process: drop --workers")
    collector = collector or ResultCollector(
        scenario=scenario.name, seed=seed, scale=scale, duration_s=duration_s
    )

    async def drive(
        kafka: KafkaSettings,
        url: str | None,
        token: str | None = token,
        ingress_url: str | None = duis_url,
    ) -> RunResult:
        duis = None
        if via == "duis":
            duis = await _duis_client(
                scenario,
                url,
                token,
                ingress_url or "http://127.0.0.1:8081",
                duis_in_flight,
                duis_keys,
                duis_ca,
            )
        if workers > 1:
            assert isinstance(collector, ResultCollector)
            sharded = await run_sharded(
                scenario,
                kafka=kafka,
                topics=topics,
                collector=collector,
                seed=seed,
                scale=scale,
                duration_s=duration_s,
                workers=workers,
                on_progress=progress,
            )
            stats, elapsed_s, started_s = sharded.stats, sharded.elapsed_s, sharded.started_at_s
        else:
            runner = Runner(
                scenario,
                kafka=kafka,
                topics=topics,
                collector=collector,
                seed=seed,
                scale=scale,
                duration_s=duration_s,
                on_progress=progress,
                duis=duis,
            )
            stats = await runner.run()
            elapsed_s, started_s = runner.now(), runner.started_at_s
        if progress is not None:
            progress.done()
        gateway = await asyncio.to_thread(scrape_metrics, url) if url else {}
        counted = stats.as_dict()
        if duis is not None:
            gateway = {**gateway, "duis": duis.stats.summary()}
            counted["duis"] = gateway["duis"]
        report = None
        if isinstance(collector, ResultCollector):
            report = collector.finish(elapsed_s, gateway=gateway, started_at_unix_s=started_s)
        return RunResult(stats=counted, report=report, gateway=gateway)

    if embedded:
        async with EmbeddedGateway() as gw:
            await asyncio.to_thread(apply_config, gw.admin_url, gw.token, items)
            kafka = msgspec.structs.replace(
                KafkaSettings(bootstrap=gw.bootstrap).for_embedded(), fetch_max_wait_ms=20
            )
            return await drive(kafka, gw.admin_url, gw.token, gw.duis_url)
    if admin_url and token:
        await asyncio.to_thread(apply_config, admin_url, token, items)
        await asyncio.sleep(_FOLLOW_S)
    elif scenario.gateway.items():
        sys.stderr.write(
            "dccgate loadtest: the scenario's [gateway] configuration is not "
            "applied (give --admin-url, with the operator token in DCCGATE_TOKEN or "
            "--token-file F, to apply it)\n"
        )
    kafka = KafkaSettings(bootstrap=bootstrap, security=security or KafkaSecurity())
    if bootstrap.startswith(("127.0.0.1:", "localhost:")):
        kafka = msgspec.structs.replace(kafka.for_embedded(), fetch_max_wait_ms=20)
    return await drive(kafka, admin_url)


async def _duis_client(
    scenario: Scenario,
    admin_url: str | None,
    token: str | None,
    ingress_url: str,
    in_flight: int,
    keys_dir: Path | None,
    ca_file: Path | None = None,
) -> DuisClient:
    """--via duis: the simulated Users' keys (made or loaded), their certificates
    registered, and the client that sends their requests."""
    from workers.duis import load_catalogue

    if not admin_url or not token:
        raise DuisError(
            "--via duis registers the simulated Users' certificates through the admin API: "
            "give --admin-url, with the operator token in DCCGATE_TOKEN or --token-file F "
            "(or use --embedded)"
        )
    directory = keys_dir or Path(tempfile.mkdtemp(prefix="dccgate-loadtest-keys-"))
    users = [(u.id, list(u.roles)) for u in scenario.users]
    pki = await asyncio.to_thread(UserPki(directory).prepare, users)
    await asyncio.to_thread(register, admin_url, token, pki)
    await asyncio.sleep(_FOLLOW_S)  # the ingress follows dcc.control for the certificates
    return DuisClient(ingress_url, pki, load_catalogue(), max_in_flight=in_flight, ca_file=ca_file)


def summary(scenario: Scenario, result: RunResult) -> str:
    """The run's counts and latency percentiles as a few readable lines (terminal.py)."""
    names = {u.id: u.name for u in scenario.users}
    stats = {k: v for k, v in result.stats.items() if k != "duis"}
    text = f"scenario {scenario.name}: " + summary_text(stats, result.report, names)
    duis = result.stats.get("duis")
    if duis:
        text += _duis_summary(duis)
    return text


def _duis_summary(duis: dict[str, Any]) -> str:
    """The DUIS lines of the summary: codes, agreement with dcc.user.responses, latency,
    and whether the in-flight bound held the rate back."""
    codes = ", ".join(f"{k} {v}" for k, v in duis["sync_codes"].items()) or "none"
    http = ", ".join(f"{k} {v}" for k, v in duis["http_status"].items()) or "none"
    lat = duis["sync_latency_ms"]
    lines = [
        f"DUIS ingress: {duis['posted']} POSTed; sync codes: {codes}; HTTP: {http}",
        f"  sync answer latency p50 {lat['p50']} ms, p99 {lat['p99']} ms; agreeing with "
        f"dcc.user.responses: {duis['agreed']}, disagreeing: {duis['disagreed']}, "
        f"no async answer: {duis['async_missing']}",
    ]
    if duis["unfinished"]:
        lines.append(f"  still queued or in flight at the end: {duis['unfinished']}")
    if duis["failures"]:
        lines.append(f"  not answered: {duis['failures']}")
    if duis["held_back"]:
        lines.append(
            f"  the in-flight bound ({duis['max_in_flight']}) held the rate back: "
            f"{duis['held_back']} requests waited (longest {duis['queue_wait_max_s']} s); "
            "raise --duis-in-flight or run more ingress processes"
        )
    return "\n".join(lines) + "\n"


def difference(scenario: Scenario, base: RunResult, new: RunResult) -> str:
    """What the proposed configuration changes: outcomes per User, installs, storm copies."""
    lines = ["== difference (proposed - current) =="]
    users = sorted(set(base.stats["by_user"]) | set(new.stats["by_user"]))
    for user in users:
        old, now = base.stats["by_user"].get(user, {}), new.stats["by_user"].get(user, {})
        changes = [
            f"{k} {now.get(k, 0) - old.get(k, 0):+d} ({old.get(k, 0)} -> {now.get(k, 0)})"
            for k in sorted(set(old) | set(now))
            if now.get(k, 0) != old.get(k, 0)
        ]
        name = next((u.name for u in scenario.users if u.id == user), "")
        lines.append(f"  {user}  {name:<24} {', '.join(changes) or 'no change'}")
    old_installs, new_installs = base.stats["installs"], new.stats["installs"]
    for region in sorted(set(old_installs) | set(new_installs)):
        old, now = old_installs.get(region, {}), new_installs.get(region, {})
        if old != now:
            lines.append(f"  installs {region}: {counts(old)} -> {counts(now)}")
    if base.stats["alerts_delivered"] != new.stats["alerts_delivered"]:
        lines.append(
            f"  alerts delivered: {counts(base.stats['alerts_delivered'])} -> "
            f"{counts(new.stats['alerts_delivered'])}"
        )
    if base.stats["storm_copies"] != new.stats["storm_copies"]:
        lines.append(f"  storm copies: {base.stats['storm_copies']} -> {new.stats['storm_copies']}")
    return "\n".join(lines) + "\n"


def _token(args: argparse.Namespace) -> str | None:
    """The operator token for --admin-url: from --token-file F, else DCCGATE_TOKEN."""
    if args.token_file is None:
        return token_from_env(os.environ)
    try:
        token: str = args.token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"--token-file {args.token_file}: cannot read it ({exc})") from None
    if not token:
        raise ConfigFileError(f"--token-file {args.token_file} is empty")
    return token


def run_loadtest(args: argparse.Namespace, settings: Settings) -> int:
    """The `dccgate loadtest` command; returns the exit code."""
    from workers.runtime.process import run

    if args.scenario == "compare":
        return run_compare(args)
    if getattr(args, "runs", None):
        sys.stderr.write(
            f"dccgate loadtest: unexpected arguments {' '.join(args.runs)!r} after the "
            "scenario (only `dccgate loadtest compare A B` takes two)\n"
        )
        return 2
    try:
        thresholds = parse_thresholds(getattr(args, "threshold", None))
    except ThresholdError as exc:
        sys.stderr.write(f"dccgate loadtest: {exc}\n")
        return 2
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        sys.stderr.write(f"dccgate loadtest: {exc}\n")
        return 2
    if args.scale is not None and not args.scale > 0:
        sys.stderr.write(f"dccgate loadtest: --scale must be positive, got {args.scale}\n")
        return 2
    if not 1 <= args.workers <= 64:
        sys.stderr.write(f"dccgate loadtest: --workers must be from 1 to 64, got {args.workers}\n")
        return 2
    if args.duration is not None and not 0 < args.duration <= 86_400:
        sys.stderr.write("dccgate loadtest: --duration must be from 0 to 86400 seconds\n")
        return 2
    seed = scenario.seed if args.seed is None else args.seed
    duration_s = scenario.duration_s if args.duration is None else args.duration
    progress = None if args.quiet else Progress(sys.stderr, tty=sys.stderr.isatty())
    common: dict[str, Any] = {
        "seed": seed,
        "scale": args.scale,
        "duration_s": duration_s,
        "bootstrap": args.bootstrap or settings.bootstrap or f"127.0.0.1:{settings.kafka_port}",
        "topics": settings.topics,
        "progress": progress,
        "workers": args.workers,
        "security": settings.kafka_security,
    }
    if getattr(args, "via", "kafka") == "duis" and (args.what_if is not None or args.workers > 1):
        sys.stderr.write(
            "dccgate loadtest: --via duis runs one process against one gateway: drop "
            "--what-if and --workers\n"
        )
        return 2
    try:
        if args.what_if is not None:
            return _what_if(args, scenario, common, run, thresholds)
        result = run(
            run_scenario(
                scenario,
                items=scenario.gateway_items(),
                embedded=args.embedded,
                admin_url=args.admin_url,
                token=_token(args),
                **common,
                **_duis_options(args),
            )
        )
    except (GatewayError, ConfigFileError, ShardError, DuisError) as exc:
        sys.stderr.write(f"dccgate loadtest: {exc}\n")
        return 1
    _print(scenario, result, args.json)
    passed = True
    if result.report is not None:
        report, passed = apply_thresholds(thresholds, result.report)
        if args.report is not None:
            paths = write_report(report, args.report)
            sys.stderr.write(f"report: {', '.join(str(p) for p in paths)}\n")
    return 0 if passed else THRESHOLD_FAILED_EXIT


def _duis_options(args: argparse.Namespace) -> dict[str, Any]:
    """run_scenario's --via arguments; the keys are cached in the run's --report directory
    unless --duis-keys says where."""
    via = getattr(args, "via", "kafka")
    if via != "duis":
        return {}
    keys = args.duis_keys
    if keys is None:
        keys = (args.report or Path(".dccgate-loadtest")) / "duis-keys"
    return {
        "via": via,
        "duis_url": args.duis_url,
        "duis_in_flight": args.duis_in_flight,
        "duis_keys": keys,
        "duis_ca": args.duis_ca,
    }


def _print(scenario: Scenario, result: RunResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"stats": result.stats, "gateway": result.gateway}) + "\n")
    else:
        sys.stdout.write(summary(scenario, result))


def _what_if(
    args: argparse.Namespace,
    scenario: Scenario,
    common: dict[str, Any],
    run: Any,
    thresholds: list[Any],
) -> int:
    if args.bootstrap:
        sys.stderr.write("dccgate loadtest: --what-if runs its own gateways; drop --bootstrap\n")
        return 2
    proposed = load_config_file(args.what_if)
    base_items = scenario.gateway_items()
    proposed_items = {**base_items, **proposed.items()}
    results = []
    for label, items in (("current", base_items), ("proposed", proposed_items)):
        sys.stderr.write(f"what-if: {label} configuration\n")
        result = run(run_scenario(scenario, items=items, embedded=True, **common))
        sys.stdout.write(f"== {label} ==\n")
        _print(scenario, result, args.json)
        results.append(result)
    base, new = results
    sys.stdout.write(difference(scenario, base, new))
    if base.report is None or new.report is None:
        return 0
    # The thresholds are about the proposal: checked against the proposed run.
    proposed_report, passed = apply_thresholds(thresholds, new.report)
    directory = args.report or Path("whatif-report")
    diff = compare(base.report, proposed_report)
    paths = [
        *write_whatif(diff, base.report, proposed_report, directory),
        *write_report(base.report, directory / "current"),
        *write_report(proposed_report, directory / "proposed"),
    ]
    sys.stderr.write(f"what-if report: {', '.join(str(p) for p in paths)}\n")
    return 0 if passed else THRESHOLD_FAILED_EXIT
