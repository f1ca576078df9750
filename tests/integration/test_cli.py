"""The README's promise, as a user types it: `dccgate run`, then `dccgate send`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import msgspec
import pytest

from broker.embedded import free_port
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import wait_healthy
from workers.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "examples" / "quickstart.jsonl"
DCCGATE = [sys.executable, "-m", "workers.cli"]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_run_then_send_shows_every_kind_of_answer(
    kafka_broker: SessionBroker, settings: Settings, tmp_path: Path
) -> None:
    """On the embedded leg as `make run` does it: `dccgate run` starts its own embedded
    broker. With `--broker kafka`, `run`, `send` and `watch` all get `--bootstrap` of the
    session's Apache Kafka (and a topic prefix of this test's own)."""
    kafka_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "DCCGATE_SESSION_TIMEOUT_MS": "1000",
        "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
    }
    if kafka_broker.embedded:
        where = ["--kafka-port", str(kafka_port)]
        settings = msgspec.structs.replace(settings, topic_prefix="")
    else:
        where = ["--bootstrap", kafka_broker.bootstrap]
        env["DCCGATE_TOPIC_PREFIX"] = settings.topic_prefix
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [
                *DCCGATE,
                "run",
                # As `make run` does: the example Users are registered in their roles.
                "--config",
                str(ROOT / "docs" / "examples" / "dccgate.toml"),
                *where,
                "--http-port",
                str(http_port),
                # Any free port: the banner shows the one bound, not the flag's 0.
                "--duis-port",
                "0",
                "--log-dir",
                str(tmp_path),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        health = wait_healthy(
            http_port,
            gateway,
            log,
            ready=lambda d: bool(d["services"]["router"]["assigned_partitions"]),
        )
        assert health["embedded_broker"] is kafka_broker.embedded
        # The banner comes once the DUIS ingress is listening, with its real port.
        duis = re.search(r"DUIS ingress +: http://127\.0\.0\.1:(\d+)/api/v1/", log.read_text())
        assert duis is not None, log.read_text()
        assert int(duis.group(1)) != 0
        assert _get(f"http://127.0.0.1:{duis.group(1)}/healthz")[0] in (200, 503)
        sent = subprocess.run(
            [*DCCGATE, "send", str(QUICKSTART), *where, "--timeout", "20"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        lines = sent.stdout.splitlines()
        assert len(lines) == 10
        text = sent.stdout
        assert sum(" accepted    I99 " in line for line in lines) == 3
        for code in ("E2", "E12", "E100", "E101", "E102"):
            assert f" {code} " in text
        assert "dead-lettered   invalid_json" in text
        assert "dead-lettered   invalid_schema" in text
        assert "10 sent: 3 accepted, 5 not accepted, 2 dead-lettered" in sent.stderr
        status, metrics = _get(f"http://127.0.0.1:{http_port}/metrics")
        assert status == 200
        assert b'dccgate_router_decisions_total{code="I99",outcome="accepted"} 3.0' in metrics
        assert b"dccgate_build_info{" in metrics
        watched = subprocess.run(
            [*DCCGATE, "watch", "sr.outbound", *where, "--idle", "0.5"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert watched.returncode == 0, watched.stderr
        assert len(watched.stdout.splitlines()) == 3  # the three accepted requests, forwarded
        assert f"3 records on {settings.topics.sr_outbound}" in watched.stderr
        argv = [*DCCGATE, "watch", "deadletter", *where, "--idle", "0.5"]
        dead = subprocess.run(
            [*argv, "--grep", "invalid_json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert len(dead.stdout.splitlines()) == 1, dead.stdout
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=40)
    assert gateway.returncode == 0, log.read_text()
    assert "dccgate 0.1.0 is running" in log.read_text() or "is running" in log.read_text()
    assert (tmp_path / "tansu.log").exists() is kafka_broker.embedded


def test_worker_needs_a_bootstrap() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DCCGATE_BOOTSTRAP"}
    done = subprocess.run(
        [*DCCGATE, "worker", "router"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "--bootstrap" in done.stderr


def test_bad_setting_is_named_and_exits_2() -> None:
    done = subprocess.run(
        [*DCCGATE, "run", "--http-port", "99999"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--http-port" in done.stderr


@pytest.mark.slow
def test_bench_prints_the_figures_as_json(kafka_broker: SessionBroker) -> None:
    done = subprocess.run(
        [
            *DCCGATE,
            "bench",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--messages",
            "3000",
            "--json",
            "--partitions",
            "2",
            "--repeat",
            "2",
        ],
        env={
            **os.environ,
            "DCCGATE_SESSION_TIMEOUT_MS": "1000",
            "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["messages"] == 3000
    assert len(result["router_samples"]) == len(result["passthrough_samples"]) == 2
    assert result["passthrough_msgs_per_s"] > 0
    assert result["router_msgs_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["router_msgs_per_s"] / result["passthrough_msgs_per_s"], rel=0.01
    )


@pytest.mark.slow
def test_bench_of_the_alert_worker_reports_every_check_on(kafka_broker: SessionBroker) -> None:
    done = subprocess.run(
        [
            *DCCGATE,
            "bench",
            "--service",
            "alerts",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--messages",
            "3000",
            "--json",
            "--partitions",
            "2",
            "--repeat",
            "1",
        ],
        env={
            **os.environ,
            "DCCGATE_SESSION_TIMEOUT_MS": "1000",
            "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "alerts, all checks" in done.stdout
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["service"] == "alerts"
    assert result["checks"] == "all"
    assert len(result["alerts_all_checks_samples"]) == len(result["passthrough_samples"]) == 1
    assert result["alerts_all_checks_msgs_per_s"] > 0
    assert result["all_checks_ratio"] == pytest.approx(
        result["alerts_all_checks_msgs_per_s"] / result["passthrough_msgs_per_s"], rel=0.01
    )
