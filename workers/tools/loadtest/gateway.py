"""The gateway under test: start one (`--embedded`), configure it, read its metrics.

`EmbeddedGateway` runs `dccgate run` as a child process on free ports, with its own
embedded broker, so the gateway has a core of its own and the load generator cannot slow
it down through the GIL; it dies with the load test (SIGTERM at the end, and the kernel's
parent-death signal if the load test is killed). `apply_config` writes a scenario's
configuration items through the admin API, the way an operator would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from broker.embedded import die_with_parent, free_port, stop_process
from workers.tools.admin_cli import AdminClient

__all__ = ["EmbeddedGateway", "GatewayError", "apply_config", "scrape_metrics"]

log = logging.getLogger(__name__)

# The metric families the report keeps from the gateway (docs/*.md name them all).
_KEPT_PREFIXES = (
    "dccgate_traffic_",
    "dccgate_alerts_",
    "dccgate_adt_",
    "dccgate_router_",
    "dccgate_deadletter_",
    "dccgate_consumer_lag_",
)


class GatewayError(RuntimeError):
    """The gateway could not be started, configured or read; the message says what to do."""


class EmbeddedGateway:
    """`dccgate run` in a child process, with its embedded broker on a free port.

    log_dir: where its log goes (default: a temporary directory).
    startup_timeout_s: how long to wait for /healthz, default 60 s.
    """

    def __init__(self, *, log_dir: Path | None = None, startup_timeout_s: float = 60.0) -> None:
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.duis_port = free_port()
        self.token = secrets.token_urlsafe(32)  # 43 characters: the gateway wants 32 or more
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="dccgate-loadtest-"))
        self.log_path = self.log_dir / "gateway.log"
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The embedded broker's address."""
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self) -> str:
        """The gateway's HTTP address (admin API, /metrics)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def duis_url(self) -> str:
        """The gateway's DUIS ingress (`/api/v1/serviceD|S|T` under it)."""
        return f"http://127.0.0.1:{self.duis_port}"

    def start_blocking(self) -> None:
        """Start the gateway and wait until /healthz says ok."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ports = ["--kafka-port", str(self.kafka_port), "--http-port", str(self.http_port)]
        ports += ["--duis-port", str(self.duis_port)]
        argv = [sys.executable, "-m", "workers.cli", "run", *ports, "--log-dir", str(self.log_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DCCGATE_")}
        env["DCCGATE_TOKEN"] = self.token
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise GatewayError(
                    f"the gateway exited with code {self._proc.returncode} at start; its log "
                    f"is {self.log_path}"
                )
            if _healthy(self.admin_url):
                return
            time.sleep(0.1)
        self.stop_blocking()
        raise GatewayError(
            f"the gateway did not become healthy within {self.startup_timeout_s:.0f} s; its "
            f"log is {self.log_path}"
        )

    def stop_blocking(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (drain and stop), then SIGKILL after `timeout_s`."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)

    async def __aenter__(self) -> EmbeddedGateway:
        await asyncio.to_thread(self.start_blocking)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop_blocking)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _path_of(key: str) -> str:
    """The admin API path of a dcc.control key: `adt.users/ID` -> `/v1/adt/users/ID`."""
    name, _, user_id = key.partition("/")
    path = "/v1/" + name.replace(".", "/")
    return f"{path}/{user_id}" if user_id else path


def apply_config(admin_url: str, token: str, items: dict[str, msgspec.Struct]) -> int:
    """PUT every item through the admin API (Users first); returns how many were written.

    Blocking (urllib): call it with `asyncio.to_thread`.
    """
    client = AdminClient(admin_url, token, timeout_s=10.0)
    order = sorted(items, key=lambda k: (not k.startswith("users/"), k))
    for key in order:
        body: dict[str, Any] = msgspec.to_builtins(items[key])
        try:
            client.call("PUT", _path_of(key), body=body)
        except Exception as exc:
            raise GatewayError(f"cannot configure {key} through {admin_url}: {exc}") from exc
    return len(order)


def scrape_metrics(admin_url: str) -> dict[str, object]:
    """The gateway's dccgate_traffic/alerts/adt/router metrics as {name{labels}: value}."""
    try:
        with urllib.request.urlopen(f"{admin_url}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        log.warning("cannot read %s/metrics: %s", admin_url, exc)
        return {}
    out: dict[str, object] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(_KEPT_PREFIXES):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
