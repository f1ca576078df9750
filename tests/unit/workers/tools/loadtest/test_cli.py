"""The loadtest command's pure parts: the admin paths, the summary and the what-if diff."""

from __future__ import annotations

from pathlib import Path

from workers.config.configfile import load_config_file
from workers.tools.loadtest.cli import RunResult, difference, summary
from workers.tools.loadtest.gateway import _path_of
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.runner import RunStats
from workers.tools.loadtest.scenario import load_scenario

RUNAWAY = "90-B3-D5-1F-30-0A-00-00"


def test_admin_paths_of_control_keys() -> None:
    assert _path_of(f"users/{RUNAWAY}") == f"/v1/users/{RUNAWAY}"
    assert _path_of(f"adt.users/{RUNAWAY}") == f"/v1/adt/users/{RUNAWAY}"
    assert _path_of("alerts.storm-policy") == "/v1/alerts/storm-policy"
    assert _path_of("traffic") == "/v1/traffic"


def _result(accepted: int, throttled: int) -> RunResult:
    stats = RunStats(sent=accepted + throttled, answered=accepted + throttled)
    stats.by_user[RUNAWAY].update(accepted=accepted, throttled=throttled)
    stats.by_user["90-B3-D5-1F-30-02-00-00"].update(accepted=10)
    stats.installs["north"].update(ok=5, failed=1)
    report = ResultCollector(scenario="unit", seed=1, scale=1.0, duration_s=1.0).finish(
        1.0, gateway={}
    )
    return RunResult(stats=stats.as_dict(), report=report)


def test_summary_names_users_and_install_failure_rates() -> None:
    text = summary(load_scenario("runaway-user"), _result(150, 20))
    assert f"{RUNAWAY}  Runaway Energy Ltd" in text
    assert "accepted 150, throttled 20" in text
    assert "installs north    5 ok, 1 failed (16.7%)" in text


def test_summary_prints_percentiles_and_no_python_reprs() -> None:
    collector = ResultCollector(scenario="unit", seed=1, scale=1.0, duration_s=1.0)
    for i in range(1, 101):
        collector.request_answered(0.5, RUNAWAY, "7.2", "accepted", "I99", None, i / 1000)
    stats = RunStats(sent=100, answered=100)
    stats.alerts_raised.update(n24=157, steady=1369)
    stats.alerts_delivered.update(n24=157, steady=1369)
    stats.firmware.update(ok=3, failed=1)
    stats.failed_steps.update({"8.11 HAN log add ESME": 2})
    result = RunResult(stats=stats.as_dict(), report=collector.finish(1.0, gateway={}))
    text = summary(load_scenario("runaway-user"), result)
    assert "gateway latency       p50 50.0" in text, text
    assert "p99 99.0" in text
    assert "p99.9 100" in text
    assert "(100 answers)" in text
    assert "end-to-end latency    no answers" in text
    assert "alerts raised 1,526 (steady 1,369, n24 157)" in text
    assert "firmware meters: ok 3, failed 1" in text
    assert "failed steps: 8.11 HAN log add ESME 2" in text
    for repr_mark in ("{", "}", "[", "]", "'"):
        assert repr_mark not in text, (repr_mark, text)


def test_difference_shows_what_changed_per_user() -> None:
    text = difference(load_scenario("runaway-user"), _result(150, 20), _result(50, 120))
    assert "accepted -100 (150 -> 50), throttled +100 (20 -> 120)" in text
    assert "90-B3-D5-1F-30-02-00-00  Other Supply plc         no change" in text
    more_failed = _result(150, 20)
    more_failed.stats["installs"]["north"] = {"ok": 4, "failed": 2}
    more_failed.stats["alerts_delivered"] = {"n24": 3}
    text = difference(load_scenario("runaway-user"), _result(150, 20), more_failed)
    assert "  installs north: ok 5, failed 1 -> ok 4, failed 2" in text
    assert "  alerts delivered: none -> n24 3" in text
    assert "{" not in text
    assert "'" not in text


def test_the_proposed_file_replaces_the_scenarios_items() -> None:
    scenario = load_scenario("runaway-user")
    proposed = load_config_file(Path("docs/examples/whatif-runaway.toml"))
    items = {**scenario.gateway_items(), **proposed.items()}
    adt = items[f"adt.users/{RUNAWAY}"]
    assert adt.thresholds[0].max == 50  # type: ignore[attr-defined]
    assert items["traffic"] == scenario.gateway_items()["traffic"]


def test_run_stats_of_shards_add_up() -> None:
    a, b = RunStats(sent=3, elapsed_s=2.0), RunStats(sent=4, elapsed_s=5.0)
    a.by_user[RUNAWAY].update(accepted=2)
    b.by_user[RUNAWAY].update(accepted=1, throttled=3)
    b.outcomes.update(accepted=1)
    a.add(b)
    assert (a.sent, a.elapsed_s) == (7, 5.0)
    assert a.by_user[RUNAWAY] == {"accepted": 3, "throttled": 3}
    assert a.outcomes == {"accepted": 1}
