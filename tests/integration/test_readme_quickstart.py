"""The README's quick start, from a clean clone, as a new user runs it: `make run`, send the
example requests, see the answers, read the configuration in force, stop.

The clone is `git clone` of the repository's HEAD into a temporary directory (so it checks
what is committed, not the working tree). To stay fast it reuses this checkout's `.venv/`
(a symlink; the clone's `pyproject.toml` is dated back so `make` does not reinstall into
it) and runs the clone's code over it (`PYTHONPATH`). The commands are the README's own,
taken from its code blocks; the one change is the ports, free ones passed the way the
README says (`make run ARGS=...`, `send --kafka-port`, `DCCGATE_ADMIN_URL`), since the
defaults may be taken on a shared machine. `DCCGATE_QUICKSTART_REPO` clones another
repository instead (to try a change before it is committed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.embedded_only(reason="the quick start runs the embedded broker itself"),
    pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None,
                       reason="needs git and make"),
]  # fmt: skip

ROOT = Path(__file__).parents[2]
DEMO_TOKEN = "change-me-demo-operator-token-not-for-production"
START_S = 90.0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _blocks(readme: str) -> list[tuple[str, str]]:
    """The README's fenced code blocks: (language, text)."""
    return re.findall(r"^```(\w*)\n(.*?)^```", readme, flags=re.M | re.S)


def _command(blocks: list[tuple[str, str]], words: str) -> str:
    """The README's shell command line containing `words` (its comment dropped)."""
    for language, text in blocks:
        for line in text.splitlines():
            if language == "sh" and words in line:
                return line.split("  #")[0].strip()
    raise AssertionError(f"the README has no sh command with {words!r}")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = os.environ.get("DCCGATE_QUICKSTART_REPO", str(ROOT))
    target = tmp_path_factory.mktemp("quickstart") / "dccgate"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{source}", str(target)],
        check=True,
        timeout=60,
    )
    (target / ".venv").symlink_to(ROOT / ".venv")
    os.utime(target / "pyproject.toml", (0, 0))  # older than the venv's install stamp
    return target


@pytest.fixture
def env(clone: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DCCGATE_")}
    clean.pop("VIRTUAL_ENV", None)
    return {**clean, "PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def gateway(clone: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    ports = _free_ports(3)
    args = f"--kafka-port {ports[0]} --http-port {ports[1]} --duis-port {ports[2]}"
    proc = subprocess.Popen(
        ["make", "run", f"ARGS={args}"],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc, ports
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        if proc.stderr is not None:
            proc.stderr.close()


def _banner(proc: subprocess.Popen[str]) -> list[str]:
    """The banner's lines, read from the gateway's stderr as it starts."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"make run stopped ({proc.returncode}): {lines[-20:]}")
            continue
        if line.startswith("dccgate ") and "is running" in line:
            lines = [line.rstrip("\n")]
        elif lines:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                # Keep reading what it logs, so a full pipe never blocks it.
                threading.Thread(target=proc.stderr.read, daemon=True).start()
                return lines
    raise AssertionError(f"no banner within {START_S:g} s")


def test_the_readme_quick_start_runs_as_written(
    clone: Path, env: dict[str, str], gateway: tuple[subprocess.Popen[str], list[int]]
) -> None:
    proc, (kafka_port, http_port, duis_port) = gateway
    readme = (clone / "README.md").read_text()
    blocks = _blocks(readme)

    # The banner is the one the README shows (with this run's ports).
    printed = _banner(proc)
    [shown] = [t for lang, t in blocks if not lang and t.startswith("dccgate ")]
    expected = (
        shown.replace("127.0.0.1:9092", f"127.0.0.1:{kafka_port}")
        .replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
        .replace("127.0.0.1:8081", f"127.0.0.1:{duis_port}")
        .splitlines()
    )
    assert printed == expected

    # Send the example requests: the answers the README shows come back.
    send = _command(blocks, "dccgate send docs/examples/quickstart.jsonl")
    done = subprocess.run(
        f"{send} --kafka-port {kafka_port}",
        shell=True,
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = re.search(r"^\d+ sent: .*$", readme, flags=re.M)
    assert summary is not None
    assert summary[0] in (done.stdout + done.stderr).splitlines()
    assert "E2    user_role 'ED' may not use SRV 7.2" in done.stdout

    # The configuration in force, with the demo token the README gives.
    show = _command(blocks, "admin config show")
    export = _command(blocks, f"export DCCGATE_TOKEN={DEMO_TOKEN}")
    done = subprocess.run(
        f"{export}; {show}",
        shell=True,
        cwd=clone,
        env={**env, "DCCGATE_ADMIN_URL": f"http://127.0.0.1:{http_port}"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^traffic\s+file\s+1\s+config-file\s", done.stdout, flags=re.M)
    assert re.search(r"^alerts\.storm-policy\s+file\s+1", done.stdout, flags=re.M)

    # Ctrl-C stops it.
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) in (0, 2, -signal.SIGINT, 130), "make run did not stop"
