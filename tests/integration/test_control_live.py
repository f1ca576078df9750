"""A change made through the API on one process is in force on another within a second,
and a worker started later ends up with exactly the same configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from broker.embedded import free_port
from tests.integration.helpers import wait_healthy

pytestmark = pytest.mark.slow

TOKEN = "live-test-operator"
A = "90-B3-D5-1F-30-01-00-00"
ENV = {
    **os.environ,
    "DCCGATE_ADMIN_TOKEN": TOKEN,
    "DCCGATE_SESSION_TIMEOUT_MS": "1000",
    "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
}


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *argv],
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _health(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    return wait_healthy(port, proc, log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)


def test_change_on_one_process_applies_on_another_within_a_second(tmp_path: Path) -> None:
    kafka_port, api_port, worker_port, late_port = (free_port() for _ in range(4))
    gateway = _start(["run", "--kafka-port", str(kafka_port), "--http-port", str(api_port)],
                     tmp_path / "gateway.log")  # fmt: skip
    procs = [gateway]
    try:
        _health(api_port, gateway, tmp_path / "gateway.log")
        bootstrap = f"127.0.0.1:{kafka_port}"
        worker = _start(
            ["worker", "router", "--bootstrap", bootstrap, "--http-port", str(worker_port)],
            tmp_path / "worker.log",
        )
        procs.append(worker)
        _health(worker_port, worker, tmp_path / "worker.log")
        api = f"http://127.0.0.1:{api_port}"
        assert _http("PUT", f"{api}/v1/users/{A}", {"name": "A", "roles": ["IS"]})[0] == 200
        delays = []
        for version, rate in enumerate((10, 20, 30), start=1):
            status, doc = _http(
                "PUT", f"{api}/v1/allocations/{A}", {"rate_per_s": rate, "burst": 5}
            )
            assert (status, doc["version"]) == (200, version)
            written = time.monotonic()
            seen = None
            while time.monotonic() - written < 1.0:
                health = _health(worker_port, worker, tmp_path / "worker.log")
                if health["control"]["versions"].get(f"allocations/{A}") == version:
                    seen = time.monotonic() - written
                    break
                time.sleep(0.01)
            assert seen is not None, f"version {version} not applied by the worker within 1 s"
            delays.append(seen)
        print(f"applied on the other process after {[round(d * 1000) for d in delays]} ms")
        # A worker started afterwards rebuilds exactly the same configuration.
        late = _start(
            ["worker", "router", "--bootstrap", bootstrap, "--http-port", str(late_port)],
            tmp_path / "late.log",
        )
        procs.append(late)
        expected = _health(api_port, gateway, tmp_path / "gateway.log")["control"]["versions"]
        assert _health(late_port, late, tmp_path / "late.log")["control"]["versions"] == expected
        assert expected[f"allocations/{A}"] == 3
    finally:
        for proc in reversed(procs):
            _stop(proc)
    assert [p.returncode for p in procs] == [0, 0, 0]
