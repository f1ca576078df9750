"""`dccgate loadtest SCENARIO`: run a scenario against a gateway, show progress, report.

With `--embedded` a gateway is started for the run (`gateway.EmbeddedGateway`) and stopped
after it; otherwise the run drives the gateway on `--bootstrap` (default: the address
`dccgate run` uses, 127.0.0.1:9092), and configures it only if `--admin-url` and `--token`
are given. `--what-if PROPOSED.toml` runs the same seeded scenario twice on embedded
gateways, with the scenario's configuration and with the proposed one, and reports the
difference (docs/tuning-with-the-simulator.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.config.configfile import ConfigFileError, load_config_file
from workers.config.settings import Settings
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
) -> RunResult:
    """One run: start and configure the gateway if asked, drive it (in `workers`
    processes, `shards.py`), collect the results: into a `ResultCollector` and its report,
    or into `collector` (single process only)."""
    if workers > 1 and not isinstance(collector, ResultCollector | None):
        raise ValueError("a sharded run gathers its results in a ResultCollector")
    collector = collector or ResultCollector(
        scenario=scenario.name, seed=seed, scale=scale, duration_s=duration_s
    )

    async def drive(kafka: KafkaSettings, url: str | None) -> RunResult:
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
            )
            stats = await runner.run()
            elapsed_s, started_s = runner.now(), runner.started_at_s
        if progress is not None:
            progress.done()
        gateway = await asyncio.to_thread(scrape_metrics, url) if url else {}
        report = None
        if isinstance(collector, ResultCollector):
            report = collector.finish(elapsed_s, gateway=gateway, started_at_unix_s=started_s)
        return RunResult(stats=stats.as_dict(), report=report, gateway=gateway)

    if embedded:
        async with EmbeddedGateway() as gw:
            await asyncio.to_thread(apply_config, gw.admin_url, gw.token, items)
            kafka = msgspec.structs.replace(
                KafkaSettings(bootstrap=gw.bootstrap).for_embedded(), fetch_max_wait_ms=20
            )
            return await drive(kafka, gw.admin_url)
    if admin_url and token:
        await asyncio.to_thread(apply_config, admin_url, token, items)
        await asyncio.sleep(_FOLLOW_S)
    elif scenario.gateway.items():
        sys.stderr.write(
            "dccgate loadtest: the scenario's [gateway] configuration is not "
            "applied (give --admin-url and --token to apply it)\n"
        )
    kafka = KafkaSettings(bootstrap=bootstrap)
    if bootstrap.startswith(("127.0.0.1:", "localhost:")):
        kafka = msgspec.structs.replace(kafka.for_embedded(), fetch_max_wait_ms=20)
    return await drive(kafka, admin_url)


def summary(scenario: Scenario, result: RunResult) -> str:
    """The run's counts as a few readable lines."""
    s = result.stats
    lines = [
        f"scenario {scenario.name}: {s['sent']} requests sent ({s['resent']} resent), "
        f"{s['answered']} answered, {s['completed']} answered by devices, "
        f"{s['elapsed_s']:.1f} s"
    ]
    lines.append("outcomes per User:")
    for user, outcomes in s["by_user"].items():
        name = next((u.name for u in scenario.users if u.id == user), "")
        counts = "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        lines.append(f"  {user}  {name:<24} {counts}")
    for region, c in s["installs"].items():
        done = c.get("ok", 0) + c.get("failed", 0)
        lines.append(
            f"installs {region:<8} {c.get('ok', 0)} ok, {c.get('failed', 0)} failed "
            f"({c.get('failed', 0) / max(done, 1):.1%})"
        )
    if s["failed_steps"]:
        lines.append("failed steps: " + ", ".join(f"{k} {v}" for k, v in s["failed_steps"].items()))
    if s["firmware"]:
        lines.append(f"firmware: {s['firmware']}")
    if s["alerts_raised"]:
        lines.append(
            f"alerts raised {s['alerts_raised']}, delivered {s['alerts_delivered']}, "
            f"storm copies {s['storm_copies']} reporting {s['suppressed_reported']} "
            "suppressed"
        )
    lines.append(
        f"dead letters {s['deadlettered']}, unanswered {s['unanswered']}, "
        f"unfinished flows {s['unfinished_flows']}"
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
    for key in ("installs", "alerts_delivered"):
        if base.stats[key] != new.stats[key]:
            lines.append(f"  {key}: {base.stats[key]} -> {new.stats[key]}")
    if base.stats["storm_copies"] != new.stats["storm_copies"]:
        lines.append(f"  storm copies: {base.stats['storm_copies']} -> {new.stats['storm_copies']}")
    return "\n".join(lines) + "\n"


def run_loadtest(args: argparse.Namespace, settings: Settings) -> int:
    """The `dccgate loadtest` command; returns the exit code."""
    from workers.runtime.process import run

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
    }
    try:
        if args.what_if is not None:
            return _what_if(args, scenario, common, run)
        result = run(
            run_scenario(
                scenario,
                items=scenario.gateway_items(),
                embedded=args.embedded,
                admin_url=args.admin_url,
                token=args.token,
                **common,
            )
        )
    except (GatewayError, ConfigFileError, ShardError) as exc:
        sys.stderr.write(f"dccgate loadtest: {exc}\n")
        return 1
    _print(scenario, result, args.json)
    if args.report is not None and result.report is not None:
        paths = write_report(result.report, args.report)
        sys.stderr.write(f"report: {', '.join(str(p) for p in paths)}\n")
    return 0


def _print(scenario: Scenario, result: RunResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"stats": result.stats, "gateway": result.gateway}) + "\n")
    else:
        sys.stdout.write(summary(scenario, result))


def _what_if(args: argparse.Namespace, scenario: Scenario, common: dict[str, Any], run: Any) -> int:
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
    directory = args.report or Path("whatif-report")
    paths = [
        *write_whatif(compare(base.report, new.report), base.report, new.report, directory),
        *write_report(base.report, directory / "current"),
        *write_report(new.report, directory / "proposed"),
    ]
    sys.stderr.write(f"what-if report: {', '.join(str(p) for p in paths)}\n")
    return 0
