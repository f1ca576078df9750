"""dccgate on a secured Apache Kafka: TLS, SASL (SCRAM-SHA-512 and PLAIN) and ACLs.

The module starts its own 1-node Kafka with a SASL_SSL listener (deploy/kafka/kafka.py
--secure), a CA made here (tests/tlsca.py), and the ACLs of
deploy/kafka/acls.py, and runs the processes as separate `dccgate` commands, each as its own
principal with only its own ACLs: the admin process registers a User, the router answers and
forwards that User's request sent by the ingress principal, the alert worker delivers an
alert the device side wrote. A principal without a write ACL on dcc.sr.inbound is refused
by the broker, and a wrong password or an unknown CA are refused with a clear message.

Apache Kafka only (the embedded broker has no TLS, SASL or ACLs): it runs in the Kafka leg.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from broker.embedded import free_port
from broker.producer import BatchProducer
from broker.security import KafkaSecurity
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics
from tests.integration.brokers import kafka_launcher
from tests.integration.helpers import wait_healthy, wait_until
from tests.tlsca import make_ca

pytestmark = [
    pytest.mark.kafka_only(reason="TLS, SASL and ACLs need Apache Kafka (a node of its own)"),
    pytest.mark.slow,
]

_ACLS = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "acls.py"
TOKEN = "secured-test-operator-token-32-characters"
USER = "90-B3-D5-1F-30-01-00-00"
METER = "00-DB-12-34-56-78-90-A0"
ROLES = ("router", "alerts", "admin", "ingress", "dsp")
LIVENESS_S = 90.0  # a deadline for a loaded 2-core machine, not a speed check


def _load_acls() -> ModuleType:
    name = "dccgate_kafka_acls"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _ACLS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Secured:
    """The secured node and what the test needs to reach it."""

    bootstrap: str
    folder: Path
    ca_file: Path
    passwords: dict[str, str]
    prefix: str

    def security(self, user: str, *, mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
        return KafkaSecurity(
            protocol="SASL_SSL",
            ca_file=str(self.ca_file),
            sasl_mechanism=mechanism,  # type: ignore[arg-type]
            sasl_username=user,
            sasl_password=self.passwords[user],
        )

    def kafka(self, user: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            security=self.security(user),
            fetch_max_wait_ms=20,
            request_timeout_ms=10_000,
        )

    def env(self, user: str, **extra: str) -> dict[str, str]:
        """The environment of a `dccgate` command run as `user` (password from a file)."""
        password_file = self.folder / f"{user}.password"
        password_file.write_text(self.passwords[user] + "\n")
        password_file.chmod(0o600)
        base = {k: v for k, v in os.environ.items() if not k.startswith("DCCGATE_")}
        return {
            **base,
            "DCCGATE_TOPIC_PREFIX": self.prefix,
            "DCCGATE_SESSION_TIMEOUT_MS": "1000",
            "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
            "DCCGATE_FETCH_MAX_WAIT_MS": "20",
            "DCCGATE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DCCGATE_KAFKA_SSL_CA_FILE": str(self.ca_file),
            "DCCGATE_KAFKA_SASL_USERNAME": user,
            "DCCGATE_KAFKA_SASL_PASSWORD_FILE": str(password_file),
            **extra,
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A 1-node Kafka with SASL_SSL and ACLs, the topics of a prefix of its own, and the
    ACLs of deploy/kafka/acls.py for them."""
    folder = tmp_path_factory.mktemp("secured")
    tls = folder / "tls"
    ca = make_ca(tls)
    ca.issue("broker", server=True)
    shutil.copy(tls / "broker-chain.pem", tls / "server.pem")
    acls = _load_acls()
    users = ["admin", "outsider", *(acls.default_principal(r)[5:] for r in ROLES)]
    passwords = {u: secrets.token_urlsafe(18) for u in users}
    (tls / "users.json").write_text(json.dumps(passwords))
    launcher = kafka_launcher()
    data_dir = folder / "cluster"
    bootstrap: str = launcher.up(
        data_dir, nodes=1, base_port=0, die_with_parent=True, out=False, secure_dir=tls
    )
    secured = Secured(bootstrap, folder, tls / "ca.pem", passwords, "sec.")
    try:
        asyncio.run(_prepare(secured, acls))
        yield secured
    finally:
        for name in ("server.log", "stdout.log"):
            if (data_dir / "node-1" / name).exists():
                shutil.copy(data_dir / "node-1" / name, folder / f"kafka-{name}")
        launcher.down(data_dir, grace_s=0, out=False)


async def _prepare(secured: Secured, acls: ModuleType) -> None:
    """As the super user: the topics, the roles' ACLs, and read ACLs for `outsider` on the
    topics `dccgate send` follows (so that only its write is refused)."""
    admin = secured.kafka("admin")
    topics = Topics.with_prefix(secured.prefix)
    await ensure_topics(admin, topics.specs(partitions=2))
    entries = acls.acl_entries(secured.prefix, {})
    entries += [
        ("User:outsider", acls.TOPIC, topic, acls.LITERAL, acls.READ)
        for topic in (topics.user_responses, topics.deadletter)
    ]
    await acls.apply(admin, entries)


def _dccgate(
    argv: list[str], env: dict[str, str], *, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _read_all(kafka: KafkaSettings, topic: str, want: int, timeout_s: float) -> list[Any]:
    """Every record of `topic` from the beginning, until `want` of them or the deadline."""
    consumer = AIOKafkaConsumer(group_id=None, **kafka.consumer_kwargs())
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        await consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def _request_line(n: int) -> bytes:
    return orjson.dumps(
        {
            "request_id": f"{USER}:{METER}:{2000 + n}",
            "user_role": "IS",
            "srv": "4.1.1",
            "command_variant": 1,
            "body": {},
            "region": "south",
        }
    )


def test_router_alerts_and_admin_work_with_only_their_acls(
    secured: Secured, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("admin", "router", "alerts")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ports}
    topics = Topics.with_prefix(secured.prefix)
    try:
        for name, port in ports.items():
            user = _load_acls().default_principal(name)[5:]
            env = secured.env(user, DCCGATE_TOKEN=TOKEN)
            argv = ["worker", name, "--bootstrap", secured.bootstrap, "--no-create-topics"]
            procs[name] = _start([*argv, "--http-port", str(port)], env, logs[name])
        for name, port in ports.items():
            wait_healthy(port, procs[name], logs[name], timeout_s=LIVENESS_S)
        for name in ("router", "alerts"):  # the probe's transaction is granted too
            assert "exactly-once on" in logs[name].read_text(), logs[name].read_text()[-3000:]

        # The admin process writes dcc.control (and dcc.audit) as dccgate-admin ...
        api = f"http://127.0.0.1:{ports['admin']}"
        status, doc = _http("PUT", f"{api}/v1/users/{USER}", {"name": "A", "roles": ["IS"]})
        assert status == 200, doc

        # ... which the router, as dccgate-router, reads.
        def registered() -> bool:
            health = wait_healthy(ports["router"], procs["router"], logs["router"])
            versions: dict[str, Any] = health["control"]["versions"]
            return any(USER in key for key in versions)

        wait_until(registered, timeout_s=LIVENESS_S, what="the router never saw the User")

        # The ingress principal sends (PLAIN, password in the environment this time).
        requests = tmp_path / "requests.jsonl"
        requests.write_bytes(b"\n".join(_request_line(n) for n in range(3)) + b"\n")
        env = secured.env(
            "dccgate-ingress",
            DCCGATE_KAFKA_SASL_MECHANISM="PLAIN",
            DCCGATE_KAFKA_SASL_PASSWORD=secured.passwords["dccgate-ingress"],
        )
        del env["DCCGATE_KAFKA_SASL_PASSWORD_FILE"]
        sent = _dccgate(
            ["send", str(requests), "--bootstrap", secured.bootstrap, "--json", "--timeout", "30"],
            env,
        )
        assert sent.returncode == 0, sent.stderr + sent.stdout
        answers = [json.loads(line) for line in sent.stdout.splitlines() if line.strip()]
        assert [a["kind"] for a in answers] == ["answer"] * 3, sent.stdout

        # Forwarded: the device side reads them from dcc.sr.outbound.
        dsp = secured.kafka("dccgate-dsp")
        forwarded = asyncio.run(_read_all(dsp, topics.sr_outbound, 3, timeout_s=20))
        ids = {orjson.loads(r.value)["request_id"] for r in forwarded}
        assert {f"{USER}:{METER}:{2000 + n}" for n in range(3)} <= ids

        # The device side writes an alert; the alert worker delivers it to its recipient.
        asyncio.run(_send_alert(dsp, topics.alerts_inbound))
        ingress = secured.kafka("dccgate-ingress")
        delivered = asyncio.run(_read_all(ingress, topics.alerts_outbound, 1, timeout_s=30))
        assert [r.key for r in delivered] == [USER.encode()]
        assert orjson.loads(delivered[0].value)["device_id"] == METER
    finally:
        for proc in procs.values():
            _stop(proc)
    for name, proc in procs.items():
        log = logs[name].read_text()
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{log}"
        assert "AuthorizationFailed" not in log, f"{name} was refused something:\n{log}"


async def _send_alert(kafka: KafkaSettings, topic: str) -> None:
    alert = {
        "device_id": METER,
        "alert_code": "8F35",
        "recipients": [USER],
        "region": "south",
        "raised_at_ms": 1_700_000_000_000,
        "payload": "secured",
    }
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        batch = producer.batch()
        batch.add(topic, METER.encode(), orjson.dumps(alert))
        await producer.send(batch)


def test_a_principal_without_a_write_acl_on_inbound_is_refused(
    secured: Secured, tmp_path: Path
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(_request_line(99) + b"\n")
    done = _dccgate(
        ["send", str(requests), "--bootstrap", secured.bootstrap, "--timeout", "5"],
        secured.env("outsider"),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("dccgate: Kafka at "), message
    assert "refused SASL user 'outsider' (SCRAM-SHA-512) access to a topic" in message
    assert f"{secured.prefix}dcc.sr.inbound" in message
    # Nothing reached the topic.
    admin = secured.kafka("admin")
    inbound = Topics.with_prefix(secured.prefix).sr_inbound
    records = asyncio.run(_read_all(admin, inbound, 10_000, timeout_s=1))
    assert all(b":2099" not in r.value for r in records)


@pytest.mark.parametrize("problem", ["wrong password", "unknown CA"])
def test_a_wrong_password_or_an_unknown_ca_is_refused_clearly(
    secured: Secured, tmp_path: Path, problem: str
) -> None:
    env = secured.env("dccgate-router")
    if problem == "wrong password":
        (secured.folder / "dccgate-router.password").write_text("not-the-password\n")
        expected = (
            "refused the login of SASL user 'dccgate-router' (SCRAM-SHA-512): wrong user "
            "name or password"
        )
    else:
        other = make_ca(tmp_path / "other", "another CA")
        env["DCCGATE_KAFKA_SSL_CA_FILE"] = str(other.pem)
        expected = "the broker's certificate was not accepted"
    done = _dccgate(["worker", "router", "--bootstrap", secured.bootstrap], env, timeout_s=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dccgate: "), done.stderr
    assert expected in last, done.stderr
    assert secured.passwords["dccgate-router"] not in done.stderr
