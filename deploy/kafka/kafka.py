"""A local Apache Kafka (KRaft) of 1 or 3 nodes on 127.0.0.1, for development and tests.

    .venv/bin/python deploy/kafka/kafka.py up [--nodes 1|3] [--base-port 19092]
                                              [--data-dir DIR] [--quiet] [--secure DIR]
    .venv/bin/python deploy/kafka/kafka.py status [--data-dir DIR]
    python3 deploy/kafka/kafka.py down [--data-dir DIR] [--grace-s 5]
    python3 deploy/kafka/kafka.py fetch

`up` fetches the broker jars once with Maven (pom.xml beside this file pins the version),
formats each node's KRaft storage, starts the nodes in the background with `java`, waits until
every broker answers a metadata request, and prints `bootstrap: HOST:PORT[,HOST:PORT...]` as
its last line. Run again while the cluster is up, it starts nothing and prints the same line;
nodes that are down (a reboot, a crash) are started again on their existing data. `down` stops
the nodes and deletes DIR. `status` prints the bootstrap line if every node is up and answers,
or exits 1. `make kafka-up` / `make kafka-down` run this script; deploy/kafka/README.md tells
the rest (ports, logs, settings, timings).

Each node is a combined broker + controller. Node i (1-based) listens on
base_port + i - 1 (clients, PLAINTEXT) and on base_port + nodes + i - 1 (the KRaft
controller quorum, one voter per node), so the cluster uses 2 x nodes ports from base_port.
`--base-port 0` picks free ports instead (for a test fixture; the bootstrap line tells which).

`--secure DIR` starts a secured cluster instead: the client port is a SASL_SSL listener
(TLS with DIR/server.pem, the broker's key and certificate chain, signed by DIR/ca.pem;
SASL SCRAM-SHA-512 and PLAIN for every user of DIR/users.json, {"name": "password"}, whose
`admin` is the super user and the brokers' own login); the controller port is SASL_PLAINTEXT
with PLAIN for `admin` only; ACLs are enforced (StandardAuthorizer, no ACL means no access).
SCRAM credentials are written into the storage by the format step (`--add-scram`). The
files stay where they are (cluster.json names DIR); see deploy/README.md, "TLS and SASL".

Standard library only, except the readiness check, which uses aiokafka (the project's
client), imported only by `up` and `status`: `down` and `fetch` run with the system python3.
From Python (a test fixture): up(), status() and down() below; see the README.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
POM = HERE / "pom.xml"
LOG4J2_CONFIG = HERE / "log4j2.properties"
# Everything this script downloads or writes by default lives here (ignored by git).
WORK = REPO / ".kafka"
DEFAULT_DATA_DIR = WORK / "run"
DEFAULT_BASE_PORT = 19092
HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
# Heap per node: enough for test traffic; 3 nodes + the test suite fit a 2-core/24 GiB box.
DEFAULT_HEAP_MB = 512
DEFAULT_TIMEOUT_S = 120.0
# SIGTERM first (a clean shutdown), SIGKILL after this: the data is deleted anyway, and
# the last of 3 nodes would wait 5 s or more for a controller quorum that is gone.
STOP_GRACE_S = 5.0
# Kafka 4.x brokers need Java 17 (KIP-1013).
MIN_JAVA = 17
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class KafkaSetupError(Exception):
    """Something the operator must fix; the message says what."""


@dataclass(frozen=True)
class Cluster:
    """What `up` decided, saved as DIR/cluster.json so `status`, `down` and a second `up`
    find the same nodes."""

    version: str
    cluster_id: str
    broker_ports: list[int]
    controller_ports: list[int]
    secure_dir: str | None = None
    """With --secure: the folder of ca.pem, server.pem and users.json; None: PLAINTEXT."""

    @property
    def nodes(self) -> int:
        return len(self.broker_ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{port}" for port in self.broker_ports)


# --- the jars -------------------------------------------------------------------------------


def pinned_version() -> str:
    """The Kafka version pinned in pom.xml (`<kafka.version>`): the one source of truth."""
    found = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text())
    if found is None:
        raise KafkaSetupError(f"{POM} has no <kafka.version> property")
    return found.group(1)


def lib_dir(version: str) -> Path:
    return WORK / f"lib-{version}"


def fetch(version: str, *, out: bool = True) -> Path:
    """Copy kafka_2.13 and its runtime dependencies into .kafka/lib-VERSION/, unless there.

    A marker file holds the pom's sha256, so editing pom.xml fetches again. Maven's own
    cache (~/.m2) makes a second fetch quick; the first one takes seconds (README.md).
    """
    target = lib_dir(version)
    marker = target / ".complete"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    WORK.mkdir(exist_ok=True)
    # Two `up`s at once (parallel test sessions) must not fetch into the same folder.
    with open(WORK / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == digest:
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaSetupError(
                "mvn (Apache Maven) is not on PATH: install it (Debian: apt-get install maven)"
            )
        if out:
            print(f"fetching Apache Kafka {version} jars with Maven into {target} (once)")
        started = time.monotonic()
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KafkaSetupError(
                f"Maven could not fetch Kafka {version} (exit {done.returncode}); "
                f"its output:\n{done.stdout}{done.stderr}"
            )
        if not any(partial.glob("kafka_2.13-*.jar")):
            raise KafkaSetupError(f"Maven ran but {partial} has no kafka_2.13 jar")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        marker.write_text(digest + "\n")
        if out:
            print(f"fetched in {time.monotonic() - started:.1f} s")
    return target


def java_bin() -> str:
    """$JAVA_HOME/bin/java if set, else `java` on PATH; checks that it is Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise KafkaSetupError("no java found: install a JDK 17+ or set JAVA_HOME")
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    # `java -version` prints e.g. `openjdk version "17.0.15" 2025-04-15` on stderr.
    try:
        quoted = done.stderr.split('"')[1]
        major = int(quoted.split(".")[0])
    except (IndexError, ValueError):
        raise KafkaSetupError(f"cannot read the version of {java}: {done.stderr!r}") from None
    if major < MIN_JAVA:
        raise KafkaSetupError(
            f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA}+ (set JAVA_HOME to one)"
        )
    return java


# --- configuration --------------------------------------------------------------------------


def server_properties(cluster: Cluster, node_id: int, node_dir: Path) -> str:
    """The server.properties of node `node_id` (1-based): a combined broker + controller."""
    n = cluster.nodes
    replicas = min(n, 3)
    # With 3 replicas, a transaction commit needs 2 of them in sync (Kafka's own default).
    min_isr = min(replicas, 2)
    voters = ",".join(f"{i + 1}@{HOST}:{port}" for i, port in enumerate(cluster.controller_ports))
    broker_port = cluster.broker_ports[node_id - 1]
    controller_port = cluster.controller_ports[node_id - 1]
    if cluster.secure_dir is not None:
        listeners = _secure_listeners(Path(cluster.secure_dir), broker_port, controller_port)
    else:
        listeners = f"""\
listeners=PLAINTEXT://{HOST}:{broker_port},CONTROLLER://{HOST}:{controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{broker_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""
    return f"""\
# Written by deploy/kafka/kafka.py at every start of this node; edit the script, not this file.

# --- KRaft: every node is a broker and a voter of the controller quorum
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
{listeners}controller.listener.names=CONTROLLER
log.dirs={node_dir / "data"}

# --- a small machine (2 cores), several nodes and a test suite on it
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
# The cleaner's dedupe buffer is on the heap (128 MiB by default); 16 MiB holds
# about 650k keys per cleaning pass, plenty here.
log.cleaner.dedupe.buffer.size=16777216

# --- topics: dccgate creates every topic it uses, so a missing one is a bug to see at once
# (the embedded broker, tansu, auto-creates and cannot be told not to).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={replicas}
# Per topic (dccgate sets min.insync.replicas=2 on its topics when told to); 1 here so a
# topic created with 1 replica still takes acks=all writes.
min.insync.replicas=1
delete.topic.enable=true

# --- internal topics, sized for {n} node(s); fewer partitions than the default 50, so the
# first consumer group or transaction of a session does not wait for 50 leaders.
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}

# --- consumer groups, as tests use them
# Members join and get partitions at once, not after the default 3 s.
group.initial.rebalance.delay.ms=0
# The default minimum is 6 s; tests use session_timeout_ms=1000 and heartbeat 100 ms.
group.min.session.timeout.ms=500

# --- retention and compaction happen in seconds, not minutes, so a test can see them with
# small per-topic settings (segment.ms=100, min.cleanable.dirty.ratio=0.01,
# delete.retention.ms=100, retention.ms=...). segment.bytes cannot go under 1 MiB on Kafka 4
# (KIP-1030); the internal topic config internal.segment.bytes can (1024 tried), but it is
# Kafka's own test hook, not a public setting.
log.initial.task.delay.ms=1000
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=1000
log.segment.delete.delay.ms=1000
"""


# --- a secured cluster (--secure DIR) ------------------------------------------------------

SUPER_USER = "admin"
SECURE_FILES = ("ca.pem", "server.pem", "users.json")


def secure_users(secure_dir: Path) -> dict[str, str]:
    """DIR/users.json: {"name": "password"}, which must name the super user `admin`."""
    missing = [name for name in SECURE_FILES if not (secure_dir / name).is_file()]
    if missing:
        raise KafkaSetupError(f"--secure {secure_dir}: missing {', '.join(missing)}")
    try:
        users = json.loads((secure_dir / "users.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KafkaSetupError(f"{secure_dir / 'users.json'} is not readable JSON: {exc}") from None
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise KafkaSetupError(f"{secure_dir / 'users.json'} must be an object of name: password")
    if SUPER_USER not in users:
        raise KafkaSetupError(f"{secure_dir / 'users.json'} must name the super user {SUPER_USER}")
    for name, password in users.items():
        # Names and passwords go into JAAS and --add-scram, which quote with "".
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or not re.fullmatch(
            r"[A-Za-z0-9_.~+/=-]{8,128}", password
        ):
            raise KafkaSetupError(
                f"{secure_dir / 'users.json'}: user {name!r}: names are letters, digits and "
                "_.- (64 at most); passwords 8 to 128 of letters, digits and _.~+/=-"
            )
    return users


def _jaas_plain(users: dict[str, str], *, only: str | None = None) -> str:
    """A PlainLoginModule config: the super user's own login and the users it accepts."""
    admin = users[SUPER_USER]
    accepted = " ".join(
        f'user_{name}="{password}"' for name, password in users.items() if only in (None, name)
    )
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{SUPER_USER}" password="{admin}" {accepted};'
    )


def _secure_listeners(secure_dir: Path, broker_port: int, controller_port: int) -> str:
    users = secure_users(secure_dir)
    admin = users[SUPER_USER]
    scram = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{SUPER_USER}" password="{admin}";'
    )
    return f"""\
listeners=SASL_SSL://{HOST}:{broker_port},CONTROLLER://{HOST}:{controller_port}
advertised.listeners=SASL_SSL://{HOST}:{broker_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
# --- TLS: the broker's key and chain, and the CA that clients' certificates may be signed by
ssl.keystore.type=PEM
ssl.keystore.location={secure_dir / "server.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={secure_dir / "ca.pem"}
ssl.client.auth=requested
ssl.endpoint.identification.algorithm=https
# --- SASL: SCRAM-SHA-512 (credentials in the metadata, from `format --add-scram`) and PLAIN
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}
listener.name.sasl_ssl.plain.sasl.jaas.config={_jaas_plain(users)}
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={_jaas_plain(users, only=SUPER_USER)}
# --- ACLs: none means no access; the super user (brokers, operators) may do everything
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{SUPER_USER}
"""


def _scram_args(cluster: Cluster) -> list[str]:
    """`--add-scram` arguments of the format step: a SCRAM-SHA-512 credential per user."""
    if cluster.secure_dir is None:
        return []
    users = secure_users(Path(cluster.secure_dir))
    return [
        arg
        for name, password in users.items()
        for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
    ]


def client_security(cluster: Cluster) -> dict[str, object]:
    """aiokafka keyword arguments to reach `cluster` as its super user (PLAINTEXT: none)."""
    if cluster.secure_dir is None:
        return {}
    import ssl

    secure_dir = Path(cluster.secure_dir)
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": ssl.create_default_context(cafile=str(secure_dir / "ca.pem")),
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": SUPER_USER,
        "sasl_plain_password": secure_users(secure_dir)[SUPER_USER],
    }


# --- processes ------------------------------------------------------------------------------


def _node_dir(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}"


def _cmdline(pid: int) -> str:
    """The command line of process `pid`, or "" if there is no such process (or a zombie)."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        # Linux. /proc/PID/cmdline reads as empty now and then while the process is busy
        # (measured: about 1% of reads while a JVM starts), so an empty read is retried.
        for _ in range(100):
            try:
                raw = (proc / "cmdline").read_bytes()
                if raw:
                    return raw.replace(b"\0", b" ").decode(errors="replace")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return ""
            if state in ("Z", "X"):  # exited, not yet reaped
                return ""
            time.sleep(0.01)
        return ""
    # No /proc (macOS): ask ps.
    done = subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def running_pid(data_dir: Path, node_id: int) -> int | None:
    """The pid of node `node_id` if it runs. The pid file alone is not trusted (pids are
    reused): the process must be a kafka.Kafka with this node's server.properties."""
    node_dir = _node_dir(data_dir, node_id)
    try:
        pid = int((node_dir / "pid").read_text())
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    if "kafka.Kafka" in cmdline and str(node_dir / "server.properties") in cmdline:
        return pid
    return None


def _log_tail(data_dir: Path, node_id: int, lines: int = 30) -> str:
    node_dir = _node_dir(data_dir, node_id)
    parts = []
    for name in ("stdout.log", "server.log"):
        path = node_dir / name
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- last lines of {path}\n" + "\n".join(tail))
    return "\n".join(parts)


def _server_jvm_argv(
    java: str, lib: Path, node_dir: Path, heap_mb: int, full_jit: bool
) -> list[str]:
    """The `java` options of a node (a long-lived JVM)."""
    # C1 only unless full_jit. Measured on 2 busy cores: a node is ready after 3.3-4 s of
    # CPU instead of 6-6.7 s (wall time about halved), and 2 million 100-byte records
    # (confluent-kafka, acks=all) cost the broker 3.7-4.6 s of CPU instead of 6.2-11.7 s,
    # as C2 spends its own CPU compiling during a run that short. C2 may win on a
    # long benchmark: --full-jit.
    jit = [] if full_jit else ["-XX:TieredStopAtLevel=1"]
    return [
        java,
        f"-Xmx{heap_mb}m",
        "-Xms64m",
        *jit,
        # Kafka's own launcher uses G1 with short pauses.
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        # A node out of memory dies (and the readiness check or the test says so) instead of
        # limping on.
        "-XX:+ExitOnOutOfMemoryError",
        *_common_jvm_options(lib, node_dir),
    ]


def _tool_jvm_argv(java: str, lib: Path, node_dir: Path) -> list[str]:
    """The `java` options of a short-lived tool (StorageTool). C1 only, serial GC and one
    compiler thread: formatting takes about 2 s instead of 4.5 s on 2 busy cores."""
    return [
        java,
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-XX:CICompilerCount=1",
        "-XX:+UseSerialGC",
        *_common_jvm_options(lib, node_dir),
    ]


def _common_jvm_options(lib: Path, node_dir: Path) -> list[str]:
    return [
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={node_dir}",
        "-cp",
        f"{lib}/*",
    ]


def _format(java: str, lib: Path, cluster: Cluster, data_dir: Path, out: bool) -> None:
    """Format the KRaft storage of every node not yet formatted, in parallel (a JVM each).

    Static quorum (controller.quorum.voters) so every node formats alike, with no
    --standalone/--initial-controllers.
    """
    todo = [
        i
        for i in range(1, cluster.nodes + 1)
        if not (_node_dir(data_dir, i) / "data" / "meta.properties").exists()
    ]
    if not todo:
        return
    started = time.monotonic()
    procs = {}
    for i in todo:
        node_dir = _node_dir(data_dir, i)
        argv = [
            *_tool_jvm_argv(java, lib, node_dir),
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(node_dir / "server.properties"),
            "--cluster-id",
            cluster.cluster_id,
            *_scram_args(cluster),
        ]
        procs[i] = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    failed = []
    for i, proc in procs.items():
        output, _ = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"node {i} (exit {proc.returncode}):\n{output}")
    if failed:
        raise KafkaSetupError(
            "formatting the KRaft storage failed (`kafka.py down --data-dir "
            f"{data_dir}`, or make kafka-down, starts afresh) for " + "\n".join(failed)
        )
    if out:
        nodes = ", ".join(map(str, todo))
        print(
            f"formatted the KRaft storage of node(s) {nodes} in {time.monotonic() - started:.1f} s"
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Kafka binds with SO_REUSEADDR too, so a port in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports, from the kernel (bound together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


# The nodes this process started, when up() is called in-process (a test fixture): kept so
# that a Popen is not garbage-collected while its node runs (that warns "subprocess ... is
# still running", an error under pytest's filterwarnings=error), and reaped by down().
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Ask Linux to SIGTERM this process when its parent thread exits (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_node(
    java: str,
    lib: Path,
    data_dir: Path,
    node_id: int,
    *,
    heap_mb: int,
    full_jit: bool,
    die_with_parent: bool,
    secure: bool = False,
) -> int:
    node_dir = _node_dir(data_dir, node_id)
    # TLS 1.3 lets a peer half-close: Java then answers a client's close_notify only with
    # this set, and Python's SSL transport (aiokafka's, under asyncio or uvloop) waits
    # 30 s for that answer at every connection close, so a worker took 31 s to stop on a
    # secured node without it, 2 s with it (deploy/README.md, "TLS and SASL").
    tls = ["-Djdk.tls.acknowledgeCloseNotify=true"] if secure else []
    argv = [
        *_server_jvm_argv(java, lib, node_dir, heap_mb, full_jit),
        *tls,
        "kafka.Kafka",
        str(node_dir / "server.properties"),
    ]
    with open(node_dir / "stdout.log", "ab") as log:
        # A session of its own: the node outlives `make` and a Ctrl-C in the terminal that
        # started it; `down` (or kill PID) stops it.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    (node_dir / "pid").write_text(f"{proc.pid}\n")
    _CHILDREN[proc.pid] = proc
    return proc.pid


# --- readiness ------------------------------------------------------------------------------


async def _brokers_answering(
    bootstrap: str, security: dict[str, object] | None = None
) -> tuple[int, bool]:
    """(number of live brokers, whether a controller is known) from one metadata request."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=5000,
        metadata_max_age_ms=1000,
        **(security or {}),  # type: ignore[arg-type]
    )
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return len(metadata.brokers()), metadata.controller is not None
    finally:
        await client.close()


def _no_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no event loop in this thread: asyncio.run() can make its own
    raise KafkaSetupError(
        "up()/status()/wait_ready() run their own event loop: call them from synchronous "
        "code (a plain fixture), or run `kafka.py up` as a subprocess"
    )


def wait_ready(cluster: Cluster, data_dir: Path, timeout_s: float) -> None:
    """Poll until every broker is registered and answers metadata, a controller elected.

    Raises KafkaSetupError, with the end of the node's log, if a node process dies or the
    deadline passes.
    """
    from aiokafka.errors import KafkaError

    _no_running_loop()
    # aiokafka logs every refused connection at ERROR while the nodes start: not news here.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        _poll_ready(cluster, data_dir, timeout_s, KafkaError)
    finally:
        aiokafka_log.setLevel(level)


def _node_alive(data_dir: Path, node_id: int) -> bool:
    """Whether node `node_id` runs: Popen.poll() if this process started it (exact),
    else its pid file and command line."""
    try:
        pid = int((_node_dir(data_dir, node_id) / "pid").read_text())
    except (OSError, ValueError):
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    return running_pid(data_dir, node_id) is not None


def _poll_ready(
    cluster: Cluster, data_dir: Path, timeout_s: float, kafka_error: type[Exception]
) -> None:
    deadline = time.monotonic() + timeout_s
    seen = (0, False)
    while True:
        for i in range(1, cluster.nodes + 1):
            if not _node_alive(data_dir, i):
                raise KafkaSetupError(
                    f"Kafka node {i} exited while starting (`kafka.py down --data-dir "
                    f"{data_dir}` stops the others).\n{_log_tail(data_dir, i)}"
                )
        # Refused connections and not-yet-ready brokers are what we are waiting out.
        with contextlib.suppress(kafka_error, OSError, TimeoutError):
            seen = asyncio.run(_brokers_answering(cluster.bootstrap, client_security(cluster)))
            if seen == (cluster.nodes, True):
                return
        if time.monotonic() > deadline:
            raise KafkaSetupError(
                f"Kafka did not become ready in {timeout_s:.0f} s ({seen[0]} of "
                f"{cluster.nodes} brokers answering); see the logs under {data_dir} "
                f"(`kafka.py down --data-dir {data_dir}` stops the nodes).\n"
                + _log_tail(data_dir, 1)
            )
        time.sleep(0.25)


# --- the commands ---------------------------------------------------------------------------


def _load(data_dir: Path) -> Cluster | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    return Cluster(**json.loads(path.read_text()))


def _new_cluster_id() -> str:
    """What `kafka-storage.sh random-uuid` prints: 16 random bytes, URL-safe base64, unpadded,
    and, like Kafka's Uuid.randomUuid(), never starting with "-": one in 64 would, and the
    storage tool then reads `--cluster-id -xyz` as a missing value (seen here)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def up(
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    nodes: int = 1,
    base_port: int = DEFAULT_BASE_PORT,
    heap_mb: int = DEFAULT_HEAP_MB,
    full_jit: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    die_with_parent: bool = False,
    out: bool = True,
    secure_dir: Path | None = None,
) -> str:
    """Start (or find running) a cluster in `data_dir`; return its bootstrap servers.

    data_dir: where node data, configs and logs live (default .kafka/run); deleted by down().
    nodes: 1 or 3 combined broker+controller nodes (default 1).
    base_port: first of 2 x nodes ports on 127.0.0.1 (default 19092); 0 picks free ports.
    heap_mb: -Xmx of each node in MiB (default 512).
    full_jit: let the JVM compile with C2 too (default False: C1 only, which starts in
        half the time and is as fast for test-sized runs; see _server_jvm_argv).
    timeout_s: how long to wait for the nodes to answer (default 120 s).
    die_with_parent: the nodes get SIGTERM when the calling thread exits, e.g. a test
        session killed before its teardown (Linux; default False: `make kafka-up` exits at
        once and its nodes must outlive it). Call up() from the main thread then.
    out: print progress lines on stdout (default True).
    secure_dir: start a secured cluster (SASL_SSL, ACLs) with the files in this folder
        (see the module's doc); default None, PLAINTEXT.

    Synchronous (it runs its own event loop for the readiness check): call it from a plain
    function or fixture, not from inside a running event loop.
    """
    if nodes not in (1, 3):
        raise KafkaSetupError(f"nodes must be 1 or 3, not {nodes}")
    _no_running_loop()
    version = pinned_version()
    data_dir = data_dir.resolve()
    secure = str(secure_dir.resolve()) if secure_dir is not None else None
    if secure_dir is not None:
        secure_users(secure_dir)  # refuse a bad folder before starting anything
    cluster = _load(data_dir)
    if cluster is not None and cluster.secure_dir != secure:
        raise KafkaSetupError(
            f"{data_dir} holds a cluster secured with {cluster.secure_dir}, not {secure}: "
            f"`kafka.py down --data-dir {data_dir}` first, or use another data dir"
        )
    if cluster is not None:
        wanted_ports = base_port == 0 or cluster.broker_ports[0] == base_port
        if cluster.nodes != nodes or not wanted_ports or cluster.version != version:
            raise KafkaSetupError(
                f"{data_dir} holds a Kafka {cluster.version} cluster of {cluster.nodes} "
                f"node(s) on {cluster.bootstrap}, not {nodes} node(s) of {version} from port "
                f"{base_port}: run `make kafka-down` (or `kafka.py down --data-dir {data_dir}`) "
                "first, or use another data dir"
            )
    started = time.monotonic()
    lib = fetch(version, out=out)
    java = java_bin()
    if cluster is None:
        if base_port == 0:
            ports = _free_ports(2 * nodes)
        else:
            ports = list(range(base_port, base_port + 2 * nodes))
        cluster = Cluster(
            version=version,
            cluster_id=_new_cluster_id(),
            broker_ports=ports[:nodes],
            controller_ports=ports[nodes:],
            secure_dir=secure,
        )
    down_nodes = [i for i in range(1, nodes + 1) if running_pid(data_dir, i) is None]
    busy = [
        port
        for i in down_nodes
        for port in (cluster.broker_ports[i - 1], cluster.controller_ports[i - 1])
        if not _port_free(port)
    ]
    if busy:
        raise KafkaSetupError(
            f"port(s) {', '.join(map(str, busy))} on {HOST} are in use by another process: "
            "stop it, or choose other ports (make kafka-up KAFKA_PORT=...)"
        )
    if not (data_dir / STATE_FILE).exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2) + "\n")
    if down_nodes:
        for i in down_nodes:
            node_dir = _node_dir(data_dir, i)
            node_dir.mkdir(exist_ok=True)
            (node_dir / "server.properties").write_text(server_properties(cluster, i, node_dir))
        _format(java, lib, cluster, data_dir, out)
        for i in down_nodes:
            pid = _start_node(
                java,
                lib,
                data_dir,
                i,
                heap_mb=heap_mb,
                full_jit=full_jit,
                die_with_parent=die_with_parent,
                secure=cluster.secure_dir is not None,
            )
            if out:
                print(f"started node {i} (pid {pid}), log {_node_dir(data_dir, i)}/server.log")
    wait_ready(cluster, data_dir, timeout_s)
    if out and down_nodes:
        print(f"Kafka {version}: {nodes} node(s) ready in {time.monotonic() - started:.1f} s")
    return cluster.bootstrap


def status(data_dir: Path = DEFAULT_DATA_DIR) -> str | None:
    """The bootstrap servers if every node in `data_dir` runs and answers, else None.
    Synchronous, as up()."""
    _no_running_loop()
    data_dir = data_dir.resolve()
    cluster = _load(data_dir)
    if cluster is None:
        return None
    if any(running_pid(data_dir, i) is None for i in range(1, cluster.nodes + 1)):
        return None
    try:
        wait_ready(cluster, data_dir, timeout_s=5.0)
    except KafkaSetupError:
        return None
    return cluster.bootstrap


def down(
    data_dir: Path = DEFAULT_DATA_DIR, *, grace_s: float = STOP_GRACE_S, out: bool = True
) -> None:
    """Stop every node of the cluster in `data_dir` and delete `data_dir`.

    grace_s: SIGTERM to all nodes at once, then SIGKILL to those still running after this
    many seconds (default 5; 0 kills at once, fine since the data is deleted anyway). A
    single node stops in about 1 s. Of 3 nodes, the last one to stop waits for a controller
    quorum that has already gone (its Raft client gives the leadership up for 5 s) and is
    killed at the 5 s mark; with a longer grace it stops by itself after 6 to 16 s.
    Does nothing if `data_dir` does not exist; refuses to delete a folder that is not a
    cluster's.
    """
    data_dir = data_dir.resolve()
    if not data_dir.exists():
        if out:
            print(f"no local Kafka in {data_dir}")
        return
    if not (data_dir / STATE_FILE).exists() and any(data_dir.iterdir()):
        raise KafkaSetupError(f"{data_dir} has no {STATE_FILE}: not deleting a foreign folder")
    pids = [
        pid
        for node_dir in sorted(data_dir.glob("node-*"))
        if (pid := running_pid(data_dir, int(node_dir.name.split("-")[1]))) is not None
    ]
    started = time.monotonic()
    alive = _signal_and_wait(pids, signal.SIGTERM if grace_s > 0 else signal.SIGKILL, grace_s)
    killed = len(alive)
    if alive:
        alive = _signal_and_wait(alive, signal.SIGKILL, 10.0)
    if alive:
        raise KafkaSetupError(f"Kafka process(es) {alive} survived SIGKILL; {data_dir} kept")
    shutil.rmtree(data_dir)
    if out:
        how = f", {killed} killed after {grace_s:.0f} s" if killed and grace_s > 0 else ""
        if how and killed < len(pids):
            how += " (as expected: the last nodes had no controller quorum left)"
        print(
            f"stopped {len(pids)} Kafka node(s) in {time.monotonic() - started:.1f} s{how}; "
            f"deleted {data_dir}"
        )


def _signal_and_wait(pids: list[int], signum: signal.Signals, wait_s: float) -> list[int]:
    """Send `signum` to `pids`; return those still alive after `wait_s` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    deadline = time.monotonic() + wait_s
    alive = [pid for pid in pids if _alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in pids:
        if pid not in alive:
            _CHILDREN.pop(pid, None)  # our own child (in-process use): poll() reaped it
    return alive


def _alive(pid: int) -> bool:
    """Whether `pid` (known to be one of our nodes) has not exited yet.

    Not by its command line: an exiting process drops its memory (cmdline reads empty)
    before it closes its files, so it would look gone while it still holds its ports. A
    zombie has closed everything and counts as gone; our own children are reaped.
    """
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    if not Path("/proc/self").exists():  # no /proc (macOS)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kafka.py", description=__doc__.split("\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "status", "down"):
        cmd = sub.add_parser(name)
        cmd.add_argument(
            "--data-dir",
            type=Path,
            default=DEFAULT_DATA_DIR,
            help="node data, configs and logs (default: .kafka/run in the repo)",
        )
        if name == "down":
            cmd.add_argument(
                "--grace-s",
                type=float,
                default=STOP_GRACE_S,
                help="SIGTERM, then SIGKILL after this many seconds; 0 kills at once "
                f"(default {STOP_GRACE_S:.0f})",
            )
        if name == "up":
            cmd.add_argument("--nodes", type=int, choices=(1, 3), default=1)
            cmd.add_argument(
                "--base-port",
                type=int,
                default=DEFAULT_BASE_PORT,
                help="first of 2 x nodes ports on 127.0.0.1; 0 picks free ports "
                f"(default {DEFAULT_BASE_PORT})",
            )
            cmd.add_argument("--heap-mb", type=int, default=DEFAULT_HEAP_MB)
            cmd.add_argument(
                "--full-jit",
                action="store_true",
                help="compile with C2 too (default: C1 only, quicker to start)",
            )
            cmd.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
            cmd.add_argument("--quiet", action="store_true", help="print only the bootstrap line")
            cmd.add_argument(
                "--secure",
                type=Path,
                default=None,
                metavar="DIR",
                help="SASL_SSL and ACLs with DIR/ca.pem, DIR/server.pem, DIR/users.json "
                "(deploy/README.md); default PLAINTEXT",
            )
    sub.add_parser("fetch", help="only fetch the jars (once)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(pinned_version()))
        elif args.command == "up":
            bootstrap = up(
                args.data_dir,
                nodes=args.nodes,
                base_port=args.base_port,
                heap_mb=args.heap_mb,
                full_jit=args.full_jit,
                timeout_s=args.timeout_s,
                out=not args.quiet,
                secure_dir=args.secure,
            )
            print(f"bootstrap: {bootstrap}", flush=True)
        elif args.command == "status":
            found = status(args.data_dir)
            if found is None:
                print(f"no local Kafka answering in {args.data_dir}", file=sys.stderr)
                return 1
            print(f"bootstrap: {found}")
        else:
            down(args.data_dir, grace_s=args.grace_s)
    except KafkaSetupError as exc:
        print(f"kafka.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
