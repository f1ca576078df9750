"""`dccgate admin` as an operator types it, against a real `dccgate run` gateway."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.embedded import free_port
from tests.integration.helpers import wait_healthy

pytestmark = pytest.mark.embedded_only(
    reason="a `dccgate run` with its own embedded broker, whatever --broker says; the admin "
    "CLI does not depend on the broker (test_admin_api runs the admin API on each), so run once"
)

ROOT = Path(__file__).resolve().parents[2]
DCCGATE = [sys.executable, "-m", "workers.cli"]
OPERATOR_TOKEN = "op-live-test-secret-of-at-least-32-characters"
SUPPLIER = "90-B3-D5-1F-30-0A-00-00"
NETWORK = "90-B3-D5-1F-30-0B-00-00"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `dccgate run` subprocess (embedded broker) on free ports; its admin API's URL."""
    tmp = tmp_path_factory.mktemp("admin-cli")
    kafka_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "DCCGATE_TOKEN": OPERATOR_TOKEN,
        "DCCGATE_SESSION_TIMEOUT_MS": "1000",
        "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
    }
    log = tmp / "run.log"
    with log.open("wb") as out:
        ports = ["--kafka-port", str(kafka_port), "--http-port", str(http_port)]
        gateway = subprocess.Popen(
            [*DCCGATE, "run", *ports, "--log-dir", str(tmp)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_healthy(http_port, gateway, log)
        yield url
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=40)
    assert gateway.returncode == 0, log.read_text()


def admin(url: str, token: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`dccgate admin ARGV` with `token` in DCCGATE_TOKEN."""
    env = {**os.environ, "DCCGATE_ADMIN_URL": url, "DCCGATE_TOKEN": token}
    return subprocess.run(
        [*DCCGATE, "admin", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_operator_sets_up_a_user_who_reads_only_its_own(gateway_url: str) -> None:
    url, op = gateway_url, OPERATOR_TOKEN
    ok(admin(url, op, "users", "set", SUPPLIER, "--name", "Live Supply Ltd", "--roles", "IS,GS"))
    ok(admin(url, op, "users", "set", NETWORK, "--name", "Live Networks", "--roles", "ED"))
    listed = ok(admin(url, op, "users", "list"))
    assert listed.splitlines()[0].split() == ["USER", "ID", "NAME", "ROLES", "VERSION"]
    assert any(SUPPLIER in line and "Live Supply Ltd" in line for line in listed.splitlines())

    issued = admin(url, op, "tokens", "issue", SUPPLIER)
    user_token = ok(issued).strip()
    assert user_token.startswith("dcg_")
    assert "shown only this once" in issued.stderr

    ok(admin(url, op, "allocations", "set", SUPPLIER, "--rate", "50", "--burst", "100"))
    ok(admin(url, op, "allocations", "set", NETWORK, "--rate", "7", "--burst", "8"))
    # A partial change keeps the rest: GET, merge, PUT with the version read.
    ok(admin(url, op, "allocations", "set", SUPPLIER, "--shadow"))

    mine = ok(admin(url, user_token, "allocations", "get", SUPPLIER))
    assert "RATE/S   50" in mine
    assert "BURST    100" in mine
    assert "SHADOW   yes" in mine
    as_json = json.loads(ok(admin(url, user_token, "--json", "allocations", "get", SUPPLIER)))
    assert as_json == {
        "rate_per_s": 50.0, "burst": 100, "shadow": True, "version": 2, "source": "api"
    }  # fmt: skip

    refused = admin(url, user_token, "allocations", "get", NETWORK)
    assert refused.returncode == 1
    assert "HTTP 403" in refused.stderr
    assert refused.stdout == ""
    assert admin(url, user_token, "audit").returncode == 1

    audit = ok(admin(url, op, "audit", "--limit", "50"))
    lines = audit.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "BY", "ACTION", "KEY", "VERSION"]
    changes = [line.split()[1:] for line in lines[1:]]
    assert ["operator:bootstrap", "put", f"users/{SUPPLIER}", "1"] in changes
    assert ["operator:bootstrap", "put", f"allocations/{SUPPLIER}", "1"] in changes
    assert ["operator:bootstrap", "put", f"allocations/{SUPPLIER}", "2"] in changes
    assert any(c[1] == "token.issue" for c in changes)
    filtered = ok(admin(url, op, "audit", "--key-prefix", f"allocations/{SUPPLIER}"))
    assert len(filtered.splitlines()) == 3  # the header and the two puts


@pytest.mark.slow
def test_exclusions_and_traffic_merge_against_the_real_api(gateway_url: str) -> None:
    url, op = gateway_url, OPERATOR_TOKEN
    ok(admin(url, op, "exclusions", "set", "8F3F,8F35"))
    ok(admin(url, op, "exclusions", "add", "8f36"))
    ok(admin(url, op, "exclusions", "remove", "8F3F"))
    doc = json.loads(ok(admin(url, op, "exclusions", "get", "--json")))
    assert doc["alert_codes"] == ["8F35", "8F36"]

    ok(admin(url, op, "traffic", "set", "--capacity", "1000", "--threshold", "800"))
    defaults = ["--default-rate", "5", "--default-burst", "10"]
    ok(admin(url, op, "traffic", "set", "--reserved", "2.2,7.1", *defaults))
    traffic = json.loads(ok(admin(url, op, "get", "traffic")))
    assert traffic["capacity_per_s"] == 1000.0
    assert traffic["reserved_srvs"] == ["2.2", "7.1"]
    assert traffic["default_allocation"] == {"rate_per_s": 5.0, "burst": 10, "shadow": False}
    stale = admin(url, op, "traffic", "set", "--capacity", "900", "--version", "1")
    assert stale.returncode == 1
    assert "HTTP 409" in stale.stderr
    invalid = admin(url, op, "traffic", "set", "--threshold", "5000")
    assert invalid.returncode == 1
    assert "HTTP 422" in invalid.stderr


def test_nothing_listening_names_the_url_and_dccgate_run() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = admin(url, "x", "users", "list")
    assert done.returncode == 1
    assert url in done.stderr
    assert "dccgate run" in done.stderr


def test_a_redirect_is_not_followed_with_the_token() -> None:
    seen: list[str | None] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/v1/users")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = admin(f"http://127.0.0.1:{server.server_port}", "tok", "users", "list")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert done.returncode == 1
    assert "HTTP 302: redirected to http://127.0.0.1:1/v1/users" in done.stderr
    assert seen == ["Bearer tok"]
