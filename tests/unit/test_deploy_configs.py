"""deploy/ is checked by the tools that will read it: promtool, amtool, and YAML/JSON parsers.

Docker is not available on the build machines, so the image and the compose stack are not
started here; their files must at least parse. That they name only metrics the services
export is checked against a running gateway (tests/integration/test_deploy_metrics.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_metrics import metrics_used_by_deploy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


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


def test_dashboards_and_rules_name_metrics() -> None:
    # That each of them is exported is checked against a running gateway's /metrics page:
    # tests/integration/test_deploy_metrics.py.
    assert len(metrics_used_by_deploy()) > 20


def test_prometheus_config_rules_and_rule_tests() -> None:
    promtool = _tool("promtool")
    _run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    _run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "rules" / "dccgate.rules.yml"))
    _run(promtool, "test", "rules", str(DEPLOY / "prometheus" / "tests" / "dccgate.rules.test.yml"))


def test_alertmanager_config() -> None:
    amtool = _tool("amtool")
    _run(amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
