"""`dccgate loadtest`: each built-in scenario, scaled down to a few seconds, against an
embedded gateway (`--embedded`: `dccgate run` in a child process with its own embedded
broker), asserting on what the scenario is designed to show.

Tolerances follow from the seed and the sample size: counts that are Poisson or binomial
are checked within three standard deviations of what the scenario configures.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from broker.topics import Topics
from workers.config.settings import Settings
from workers.tools.loadtest.cli import RunResult, run_scenario
from workers.tools.loadtest.generator import Shard
from workers.tools.loadtest.scenario import Scenario, load_scenario

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.embedded_only(
        reason="the load-test tool with a gateway and embedded broker of its own (--embedded), "
        "whatever --broker says; about 2 minutes, so run once"
    ),
]


class RecordingCollector:
    """Records the calls the runner makes to its collector (ResultCollector's interface), so
    the tests can assert on each one."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.installs: list[tuple[str, bool, str | None]] = []
        self.firmware: list[tuple[str, bool, str | None]] = []
        self.delivered: list[tuple[str, str | None, int]] = []
        self.answered: list[tuple[str, str, str, str | None]] = []
        self.events: list[tuple[str, str]] = []

    def request_sent(self, t_s: float, user_id: str, srv: str, n: int = 1) -> None:
        self.calls["sent"] += n

    def request_answered(
        self,
        t_s: float,
        user_id: str,
        srv: str,
        outcome: str,
        response_code: str,
        rule: str | None,
        latency_s: float,
    ) -> None:
        assert latency_s >= 0
        self.answered.append((user_id, outcome, response_code, rule))

    def request_completed(
        self, t_s: float, user_id: str, srv: str, region: str, ok: bool, latency_s: float
    ) -> None:
        assert latency_s >= 0
        self.calls["completed"] += 1

    def install_finished(self, t_s: float, region: str, ok: bool, failed_step: str | None) -> None:
        self.installs.append((region, ok, failed_step))

    def firmware_finished(self, t_s: float, region: str, ok: bool, failed_step: str | None) -> None:
        self.firmware.append((region, ok, failed_step))

    def alert_raised(self, t_s: float, region: str, alert_code: str) -> None:
        self.calls["alert_raised"] += 1

    def alert_delivered(
        self,
        t_s: float,
        region: str,
        alert_code: str,
        storm_copy: str | None,
        throttled_count: int,
        *,
        primary: bool = True,
    ) -> None:
        if primary:  # one entry per alert, not per recipient (as ResultCollector counts)
            self.delivered.append((alert_code, storm_copy, throttled_count))

    def deadlettered(self, t_s: float, reason: str) -> None:
        self.calls["deadlettered"] += 1

    def event(self, t_s: float, kind: str, detail: str) -> None:
        self.events.append((kind, detail))


async def _run(
    name: str, *, duration_s: float, scale: float = 1.0
) -> tuple[Scenario, RunResult, RecordingCollector]:
    scenario = load_scenario(name)
    collector = RecordingCollector()
    result = await run_scenario(
        scenario,
        items=scenario.gateway_items(),
        seed=scenario.seed,
        scale=scale,
        duration_s=duration_s,
        embedded=True,
        bootstrap="",
        topics=Topics.with_prefix(""),
        collector=collector,
    )
    stats = result.stats
    assert stats["deadlettered"] == 0
    assert stats["unanswered"] == 0
    assert stats["produce_failed"] == 0
    # every submission is answered once, a resent (throttled) one again
    assert stats["answered"] == stats["sent"] + stats["resent"]
    assert collector.calls["sent"] == stats["sent"] + stats["resent"]
    assert len(collector.answered) == stats["answered"]
    return scenario, result, collector


def _within(observed: float, n: int, p: float, sigmas: float = 3.0) -> bool:
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


async def test_install_day_north_fails_about_one_in_six_others_complete() -> None:
    scenario, result, collector = await _run("install-day", duration_s=4.0, scale=4.0)
    installs = result.stats["installs"]
    north = installs["north"]
    n_north = north.get("ok", 0) + north.get("failed", 0)
    assert n_north >= 30  # about 4 s x 12/s
    assert _within(north.get("failed", 0), n_north, scenario.regions.north.install_failure_rate)
    for region in ("central", "south"):
        done = installs[region].get("ok", 0) + installs[region].get("failed", 0)
        assert done >= 30
        assert installs[region].get("ok", 0) >= 0.9 * done
    assert result.stats["unfinished_flows"] == 0
    # every step was answered by the gateway (nothing rejected: the sequence is valid DUIS)
    assert set(result.stats["outcomes"]) == {"accepted"}
    assert set(result.stats["failure_reasons"]) <= {"device failure"}
    assert len(collector.installs) == sum(sum(c.values()) for c in installs.values())
    assert all(step is None for _, ok, step in collector.installs if ok)
    assert all(step for _, ok, step in collector.installs if not ok)
    # background: reads, one profile burst at t = 2 s, steady alerts all delivered
    assert result.stats["by_source"]["profile"]["accepted"] == 4000
    assert result.stats["alerts_delivered"]["steady"] == result.stats["alerts_raised"]["steady"]
    assert any(k.startswith("dccgate_router_") for k in result.gateway)


async def test_alert_storm_is_contained_and_other_alerts_get_through() -> None:
    scenario, result, collector = await _run("alert-storm", duration_s=5.0, scale=0.5)
    raised = result.stats["alerts_raised"]
    delivered = result.stats["alerts_delivered"]
    storm = scenario.faults.alert_storm[0]
    assert raised["storm"] > 2000  # 5 devices x 200/s x 4 s
    # per rogue device: the first max_alerts at once, then one copy a period, and a final one
    policy = scenario.gateway.alerts.storm_policy
    assert policy is not None
    per_device = policy.default.max_alerts + storm.duration_s / policy.default.period_s + 3
    assert delivered["storm"] <= storm.devices * per_device
    assert result.stats["storm_copies"] > 0
    # accounting: forwarded at once + periodic copies + suppressed = raised
    finals = sum(1 for code, copy, _ in collector.delivered if copy == "final")
    assert finals == storm.devices
    assert delivered["storm"] - finals + result.stats["suppressed_reported"] == raised["storm"]
    assert delivered["steady"] == raised["steady"] > 100
    assert any(kind == "storm" for kind, _ in collector.events)
    # Every storm sent its final copy (above), so none is active at the end, and the gateway
    # exports the gauge that says so (a missing gauge fails too).
    assert result.gateway.get("dccgate_alerts_active_storms") == 0.0, result.gateway


async def test_runaway_user_is_throttled_and_quarantined_others_are_not() -> None:
    scenario, result, collector = await _run("runaway-user", duration_s=4.0)
    runaway = scenario.faults.runaway_user[0].user
    by_user = result.stats["by_user"]
    assert by_user[runaway]["throttled"] > 50
    assert by_user[runaway]["quarantined"] > 50
    # its ADT: at most 150 7.2 requests processed in the hour
    assert by_user[runaway]["accepted"] <= 150
    for user, outcomes in by_user.items():
        if user != runaway:
            assert set(outcomes) == {"accepted"}, (user, outcomes)
    codes = {(outcome, code) for _, outcome, code, _ in collector.answered}
    assert ("throttled", "T1") in codes
    assert ("quarantined", "Q1") in codes
    kinds = {kind for kind, _ in collector.events}
    assert {"fault", "throttling", "quarantine"} <= kinds


async def test_firmware_campaign_fails_at_its_rate_and_raises_false_outages() -> None:
    scenario, result, collector = await _run("firmware-campaign", duration_s=6.0)
    campaign = scenario.faults.firmware_campaign[0]
    firmware = result.stats["firmware"]
    n = firmware.get("ok", 0) + firmware.get("failed", 0)
    assert n == campaign.devices
    # the report's table: each meter once, in the campaign's region, failures with their step
    assert len(collector.firmware) == n
    assert {region for region, _, _ in collector.firmware} == {campaign.region}
    assert all((step is None) == ok for _, ok, step in collector.firmware)
    assert _within(firmware.get("failed", 0), n, campaign.failure_rate)
    raised = result.stats["alerts_raised"]
    assert _within(raised["outage"], firmware["ok"], campaign.false_outage_share)
    assert raised["restore"] == raised["outage"]
    # AD1 goes to the network operator only, the restore to the supplier: one copy each
    delivered = result.stats["alerts_delivered"]
    assert delivered["outage"] == raised["outage"]
    assert delivered["restore"] == raised["restore"]


async def test_noisy_neighbour_only_the_noisy_user_is_throttled() -> None:
    scenario, result, _ = await _run("noisy-neighbour", duration_s=4.0)
    noisy = scenario.faults.runaway_user[0].user
    by_user = result.stats["by_user"]
    assert by_user[noisy]["throttled"] > by_user[noisy]["accepted"] > 0
    for user in scenario.background.readers:
        assert set(by_user[user]) == {"accepted"}, by_user[user]
        assert by_user[user]["accepted"] > 200  # 80/s each for 4 s


async def test_install_day_in_two_generator_processes_adds_up() -> None:
    scenario = load_scenario("install-day")
    result = await run_scenario(
        scenario,
        items=scenario.gateway_items(),
        seed=scenario.seed,
        scale=4.0,
        duration_s=4.0,
        embedded=True,
        bootstrap="",
        topics=Topics.with_prefix(""),
        workers=2,
    )
    stats = result.stats
    assert (stats["deadlettered"], stats["unanswered"], stats["produce_failed"]) == (0, 0, 0)
    assert stats["answered"] == stats["sent"] + stats["resent"]
    # the installer and one reader are one shard's Users, the other reader the other's
    shards = [Shard(index=k, count=2, partitions=Settings().partitions) for k in range(2)]
    readers = scenario.background.readers
    assert {k for k, shard in enumerate(shards) for u in readers if shard.owns_user(u)} == {0, 1}
    assert set(stats["by_user"]) == {scenario.installs.user, *readers}  # type: ignore[union-attr]
    north = stats["installs"]["north"]
    n_north = north.get("ok", 0) + north.get("failed", 0)
    assert n_north >= 30
    assert _within(north.get("failed", 0), n_north, scenario.regions.north.install_failure_rate)
    assert stats["unfinished_flows"] == 0
    assert stats["by_source"]["profile"]["accepted"] == 4000
    # shard 0 reads every shard's delivered alerts, also the installs' last N24s
    assert stats["alerts_delivered"] == stats["alerts_raised"]
    assert stats["alerts_raised"]["steady"] > 0
    assert stats["alerts_raised"]["n24"] > 0
    # the merged report counts what the shards counted, once
    report = result.report
    assert report is not None
    assert report.totals.sent == stats["sent"] + stats["resent"]
    assert report.totals.answered == stats["answered"]
    assert report.totals.installs_ok + report.totals.installs_failed == sum(
        sum(c.values()) for c in stats["installs"].values()
    )
    assert report.totals.alerts_raised == sum(stats["alerts_raised"].values())
    assert sum(b.sent for b in report.buckets) == report.totals.sent


def test_cli_runs_a_built_in_scenario_embedded_and_stops_by_itself(tmp_path: Any) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli", "loadtest", "noisy-neighbour", "--embedded"),
            *("--duration", "2", "--scale", "0.5", "--seed", "9", "--quiet", "--json"),
            *("--workers", "2", "--report", str(tmp_path)),
            *("--threshold", "sent>=100", "--threshold", "quarantined==0"),
        ],
        capture_output=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert lines[-3:][0] == "thresholds: 2 passed, 0 failed"
    doc = json.loads(next(line for line in lines if line.startswith("{")))
    assert doc["stats"]["sent"] > 100
    assert doc["stats"]["outcomes"]["accepted"] > 0
    assert any(k.startswith("dccgate_traffic_") for k in doc["gateway"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["totals"]["sent"] == doc["stats"]["sent"] + doc["stats"]["resent"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert [t["passed"] for t in report["thresholds"]] == [True, True]
    assert sum(r["count"] for r in report["srv_latency"]) == report["totals"]["answered"]
    assert all(s["start_s"] <= s["end_s"] for s in report["spans"])
    html = (tmp_path / "report.html").read_text()
    assert 'class="nodata"' not in html
    assert '<section id="gateway">' in html  # the gateway's metrics, curated
    # The saved run compares with itself: every change is none.
    compared = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli", "loadtest", "compare"),
            *(str(tmp_path), str(tmp_path / "report.json"), "--report", str(tmp_path / "cmp")),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert compared.returncode == 0, compared.stderr.decode()
    assert "no change" in compared.stdout.decode()
    assert (tmp_path / "cmp" / "compare.html").stat().st_size > 10_000


def test_cli_refuses_a_bad_scenario_with_the_field_named(tmp_path: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[regions.north]\ninstalls_per_s = -1\n')
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "loadtest", str(bad), "--embedded"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "line 3" in proc.stderr.decode()
    assert "installs_per_s" in proc.stderr.decode()


def test_cli_what_if_reports_both_runs_and_the_difference(tmp_path: Any) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli", "loadtest", "runaway-user"),
            *("--what-if", "docs/examples/whatif-runaway.toml", "--duration", "3", "--quiet"),
            *("--report", str(tmp_path), "--threshold", "quarantined==0"),
        ],
        capture_output=True,
        timeout=200,
        check=False,
    )
    # The proposed run quarantines the loop's excess: its threshold fails, exit code 99.
    assert proc.returncode == 99, proc.stderr.decode()
    assert "FAIL  quarantined==0" in proc.stdout.decode()
    out = proc.stdout.decode()
    assert "== current ==" in out
    assert "== proposed ==" in out
    runaway = load_scenario("runaway-user").faults.runaway_user[0].user
    line = next(ln for ln in out.split("== difference")[1].splitlines() if runaway in ln)
    assert "accepted -" in line  # the proposal's lower ADT maximum lets fewer through
    for name in (
        "whatif.json",
        "whatif.html",
        "current/report.json",
        "current/report.html",
        "proposed/report.json",
        "proposed/report.html",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    current = json.loads((tmp_path / "current" / "report.json").read_text())
    proposed = json.loads((tmp_path / "proposed" / "report.json").read_text())
    assert current["seed"] == proposed["seed"]
    assert current["totals"]["outcomes"] != proposed["totals"]["outcomes"]
    assert proposed["thresholds"][0]["passed"] is False
    assert current["thresholds"] == []
    whatif = (tmp_path / "whatif.html").read_text()
    assert "Main effect: <b>" in whatif
    assert "fewer requests accepted" in whatif
