"""deploy/'s dashboards and alert rules name only metrics the services really export, and
deploy/README.md's metric tables list exactly what they export.

The whole gateway runs in one process (router, alert worker, admin with the quarantine
service) and serves one /metrics page with every service's registry, so a renamed metric in
any of them fails here. The example configuration is loaded so that the collectors that
export only while a feature is configured (traffic management, ADT) export. The services
share that one registry, so this also checks that no family is exported twice (the process
and GC collectors, the consumer-lag collector).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from broker.embedded import free_port
from tests.deploy_docs import documented_metrics, readme
from tests.deploy_metrics import (
    METRIC_NAME,
    families_exported,
    family_types,
    metrics_used_by_deploy,
)
from tests.integration.helpers import wait_healthy, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.embedded_only(
        reason="a `dccgate run` with its own embedded broker, whatever --broker says; the "
        "metric names do not depend on the broker, so run once"
    ),
]

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

        declared = re.findall(rf"^# TYPE ({METRIC_NAME}) ", page, re.M)
        twice = sorted({name for name in declared if declared.count(name) > 1})
        assert twice == [], f"exported more than once on one registry: {twice}"

        exported, documented = family_types(page), documented_metrics(readme())
        assert sorted(set(exported) - set(documented)) == [], "exported, not in deploy/README.md"
        assert sorted(set(documented) - set(exported)) == [], "in deploy/README.md, not exported"
        wrong = {n: (t, exported[n]) for n, t in documented.items() if exported[n] != t}
        assert wrong == {}, f"deploy/README.md's type (documented, exported): {wrong}"
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=40)
