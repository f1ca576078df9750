"""deploy/ is checked by the tools that will read it: promtool, amtool, and YAML/JSON parsers.

Docker is not available on the build machines, so the image and the compose stack are not
started here; their files must at least parse and agree with the metrics the code exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRICS_IN_CODE = {
    "dccgate_build_info",
    "dccgate_records_consumed_total",
    "dccgate_records_produced_total",
    "dccgate_router_decisions_total",
    "dccgate_deadletter_records_total",
    "dccgate_batch_size_records",
    "dccgate_batch_duration_seconds",
    "dccgate_forward_latency_seconds",
    "dccgate_assigned_partitions",
    "dccgate_traffic_active",
    "dccgate_traffic_active_seconds_total",
    "dccgate_traffic_activations_total",
    "dccgate_traffic_admitted_requests_per_second",
    "dccgate_traffic_capacity_requests_per_second",
    "dccgate_traffic_threshold_requests_per_second",
    "dccgate_traffic_oversubscribed",
    "dccgate_traffic_user_allocation_requests_per_second",
    "dccgate_traffic_user_rate_requests_per_second",
    "dccgate_traffic_user_limit_requests_per_second",
    "dccgate_traffic_throttled_total",
    "dccgate_traffic_shadow_would_throttle_total",
    "dccgate_alerts_received_total",
    "dccgate_alerts_forwarded_total",
    "dccgate_alerts_suppressed_total",
    "dccgate_alerts_active_storms",
    "dccgate_alerts_tracked_keys",
    "dccgate_alerts_regional_queued",
    "dccgate_alerts_regional_oldest_delay_seconds",
    "dccgate_alerts_regional_delay_seconds",
    "dccgate_alerts_input_paused",
    "dccgate_alerts_mp102_held",
    "dccgate_alerts_mp102_dropped_total",
    "dccgate_alerts_mp102_released_total",
    "dccgate_adt_quarantined_total",
    "dccgate_adt_shadow_would_quarantine_total",
    "dccgate_adt_user_nearest_threshold_ratio",
    "dccgate_adt_dcc_threshold_ratio",
    "dccgate_quarantine_pending",
    "dccgate_quarantine_oldest_pending_age_seconds",
    "dccgate_quarantine_pending_max_seconds",
    "dccgate_quarantine_decisions_total",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI; `make test` installs Debian's prometheus")
        pytest.skip(f"{name} not installed (Debian packages prometheus, prometheus-alertmanager)")
    return path


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_yaml_and_json_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.y*ml")) + sorted(DEPLOY.rglob("*.json"))
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":
            json.loads(text)
        else:
            list(yaml.safe_load_all(text))


def test_dashboards_and_rules_use_only_metrics_the_code_exports() -> None:
    used: set[str] = set()
    for path in [*DEPLOY.rglob("*.json"), *DEPLOY.rglob("*.rules.yml")]:
        used |= set(re.findall(r"dccgate_[a-z0-9_]+", path.read_text()))
    base = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert base <= METRICS_IN_CODE, base - METRICS_IN_CODE


def test_prometheus_config_rules_and_rule_tests() -> None:
    promtool = _tool("promtool")
    _run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    _run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "rules" / "dccgate.rules.yml"))
    _run(promtool, "test", "rules", str(DEPLOY / "prometheus" / "tests" / "dccgate.rules.test.yml"))


def test_alertmanager_config() -> None:
    amtool = _tool("amtool")
    _run(amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
