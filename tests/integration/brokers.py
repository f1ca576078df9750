"""The broker the integration suite runs on: the embedded one (tansu) or Apache Kafka.

`pytest tests/integration --broker kafka` starts a 1-node Apache Kafka (KRaft) for the session
with deploy/kafka/kafka.py (jars fetched once with Maven into .kafka/, data in a temp dir, free
ports); the default `--broker embedded` starts tansu. Either way the tests get a
`SessionBroker` and its `.bootstrap`, and client settings tuned for tests on that broker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

import msgspec

from broker.embedded import EmbeddedBroker
from broker.settings import KafkaSettings
from workers.config.settings import Settings

__all__ = [
    "BROKER_KINDS",
    "BrokerKind",
    "SessionBroker",
    "kafka_launcher",
    "session_broker",
    "tuned_kafka_settings",
]

BrokerKind = Literal["embedded", "kafka"]
BROKER_KINDS: Final[tuple[BrokerKind, ...]] = ("embedded", "kafka")

_LAUNCHER = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.py"


@dataclass(frozen=True)
class SessionBroker:
    """The session's broker: what tests connect to, and which kind it is."""

    kind: BrokerKind
    bootstrap: str
    log_dir: Path
    """Where the broker writes its log: tansu.log, or Kafka's server.log (copied to
    kafka-server.log beside the cluster's data dir when the session ends)."""

    @property
    def embedded(self) -> bool:
        return self.kind == "embedded"


def tuned_kafka_settings(broker: SessionBroker, settings: Settings) -> KafkaSettings:
    """Client settings for `broker` and `settings`' topics, tuned for tests.

    The same on both brokers: session 1000 ms and heartbeat 100 ms, so a join and a crashed
    member's departure take about a second (Apache Kafka's own minimum session is lowered to
    500 ms by deploy/kafka/kafka.py; the embedded broker holds a join max(1 s, session/2));
    500 records per batch; fetch_max_wait_ms 20. On the embedded broker a fetch is not woken
    by new data, so 20 ms is the latency floor. On Kafka a fetch returns as soon as data
    arrives, but the wait still paces a worker with no input: its loop polls for
    4 x fetch_max_wait_ms and ticks after each empty poll, and an alert worker releases
    queued alerts only at a batch or a tick. At Kafka's default 100 ms the regional-capacity
    tests took 33 s instead of 16 s (docs/operations.md).
    """
    return msgspec.structs.replace(
        settings.kafka(broker.bootstrap, embedded=broker.embedded),
        session_timeout_ms=1_000,
        heartbeat_interval_ms=100,
        fetch_max_wait_ms=20,
        max_poll_records=500,
    )


def kafka_launcher() -> ModuleType:
    """deploy/kafka/kafka.py as a module (deploy/ is not a package): up(), down(),
    running_pid() for tests that start a cluster of their own."""
    name = "dccgate_local_kafka"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, _LAUNCHER)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the Kafka launcher {_LAUNCHER}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@contextmanager
def session_broker(kind: BrokerKind, work_dir: Path) -> Iterator[SessionBroker]:
    """Start a broker of `kind` with its files under `work_dir`; stop it (and, for Kafka,
    delete its data) on exit."""
    if kind == "embedded":
        embedded = EmbeddedBroker(log_path=work_dir / "tansu.log")
        embedded.start_blocking()
        try:
            yield SessionBroker(kind, embedded.bootstrap, work_dir)
        finally:
            embedded.stop_blocking()
        return
    launcher = kafka_launcher()
    data_dir = work_dir / "cluster"
    try:
        # die_with_parent: a session killed before its teardown leaves no JVM behind.
        bootstrap: str = launcher.up(
            data_dir, nodes=1, base_port=0, die_with_parent=True, out=False
        )
    except launcher.KafkaSetupError as exc:
        raise RuntimeError(f"--broker kafka: could not start Apache Kafka: {exc}") from exc
    node_dir = data_dir / "node-1"
    try:
        yield SessionBroker(kind, bootstrap, node_dir)
    finally:
        # down() deletes the data dir: keep the broker's log for a failed session.
        for name in ("server.log", "stdout.log"):
            with contextlib.suppress(OSError):
                shutil.copy(node_dir / name, work_dir / f"kafka-{name}")
        launcher.down(data_dir, grace_s=0, out=False)
