"""deploy/'s dashboards and alert rules name only metrics the services really export.

The whole gateway runs in one process (router, alert worker, admin with the quarantine
service) and serves one /metrics page with every service's registry, so a renamed metric in
any of them fails here. The example configuration is loaded so that the collectors that
export only while a feature is configured (traffic management, ADT) export.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from broker.embedded import free_port
from tests.deploy_metrics import families_exported, metrics_used_by_deploy
from tests.integration.helpers import wait_healthy, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docs" / "examples" / "dccgate.toml"


def _page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_every_metric_deploy_uses_is_exported(tmp_path: Path) -> None:
    kafka_port, http_port = free_port(), free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        ports = ["--kafka-port", str(kafka_port), "--http-port", str(http_port)]
        gateway = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run", "--config", str(CONFIG), *ports],
            env={**os.environ, "DCCGATE_SESSION_TIMEOUT_MS": "1000"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(http_port, gateway, log, ready=lambda d: "traffic" in d["control"]["versions"])
        used = metrics_used_by_deploy()

        # The traffic collector exports once the router has applied the configuration.
        def traffic_exported() -> str | None:
            page = _page(http_port)
            return page if "dccgate_traffic_capacity" in page else None

        page = wait_until(
            traffic_exported,
            timeout_s=10,
            what=lambda: "the traffic metrics never appeared",
        )
        missing = used - families_exported(page)
        assert missing == set(), f"deploy/ uses metrics no service exports: {sorted(missing)}"
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=40)
