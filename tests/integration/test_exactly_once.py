"""Exactly-once on Apache Kafka: SIGKILL a worker mid-stream, start another, and a
read_committed reader sees every output exactly once (broker/transactions.py).

The same scenarios as test_crash_delivery.py and test_alerts_crash.py (whose helpers these
reuse), with `DCCGATE_EXACTLY_ONCE=on`: there the duplicates are bounded by the batches in
flight; here there are none. And a quarantine release interrupted by a SIGKILL of the admin
process forwards each released request once. Plus how the setting resolves on each broker.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from broker.consumer import Record
from broker.errors import TransactionsUnavailableError
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.schemas import QuarantinedRequest
from broker.settings import KafkaSettings
from broker.transactions import resolve_exactly_once
from tests.integration.alerts_helpers import (
    DNO,
    OutboundWatch,
    configured,
    kill_mid_storm,
    storm_seen,
)
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import start_worker_process, wait_until_async
from tests.integration.test_alerts_crash import CONFIG as STORM_CONFIG
from tests.integration.test_alerts_crash import MAX_ALERTS, NORMAL_N, ROGUE, STORM_N
from tests.integration.test_alerts_crash import _stream as _stream_alerts
from tests.integration.test_crash_delivery import _stream as _stream_requests
from workers.alerts import STORM_HEADER
from workers.config.settings import Settings
from workers.tools.bench import make_requests

KAFKA_ONLY = pytest.mark.kafka_only(
    reason="transactions: the embedded broker has none (aiokafka's InitProducerId is refused "
    "and read_committed does not hide aborted records)"
)

TOTAL = 50_000
MAX_POLL = 500
EOS_ENV = {"DCCGATE_EXACTLY_ONCE": "on", "DCCGATE_MAX_POLL_RECORDS": str(MAX_POLL)}


class _Reader:
    """Every record of a topic as a read_committed reader sees it, without a consumer group
    (a group member kicked out on a loaded machine would read everything again)."""

    def __init__(self, kafka: KafkaSettings, topic: str, field: str = "request_id") -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.docs: list[dict[str, Any]] = []
        self._field = field
        self._follower = TopicFollower(kafka, topic, self._apply, name="eos-test")

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            doc = orjson.loads(rec.value or b"null")
            self.docs.append(doc)
            self.seen[doc[self._field]] += 1

    async def __aenter__(self) -> _Reader:
        await self._follower.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._follower.stop()

    async def settle(self, expect: int, timeout_s: float = 60.0) -> None:
        """Wait until `expect` records arrived, then 1 s more for any late duplicate."""
        await wait_until_async(
            lambda: sum(self.seen.values()) >= expect,
            timeout_s=timeout_s,
            what=lambda: f"{sum(self.seen.values())} of {expect} records",
        )
        await asyncio.sleep(1.0)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


@KAFKA_ONLY
@pytest.mark.slow
@pytest.mark.usefixtures("topics_ready")
async def test_router_sigkill_mid_stream_no_duplicates(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    topics = settings.topics
    records = make_requests(TOTAL, seed=11)
    expected = {orjson.loads(v)["request_id"] for _, v in records}
    assert len(expected) == TOTAL
    assert kafka.isolation_level == "read_committed"  # what the readers read
    logs = [tmp_path / "router-1.log", tmp_path / "router-2.log"]
    # Any User (the registration is not the subject; test_crash_delivery.py registers).
    env = {**EOS_ENV, "DCCGATE_OPEN_USERS": "true"}
    procs = [start_worker_process(kafka_broker.bootstrap, settings, logs[0], env=env)]
    async with (
        _Reader(kafka, topics.user_responses) as answers,
        _Reader(kafka, topics.sr_outbound) as forwards,
    ):
        seen = answers.seen
        try:
            streamer = asyncio.create_task(_stream_requests(kafka, topics.sr_inbound, records))
            async with asyncio.timeout(60):
                while len(seen) < TOTAL // 4:
                    assert procs[0].poll() is None, logs[0].read_text()
                    await asyncio.sleep(0.01)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            answered_at_kill = len(seen)
            assert answered_at_kill < TOTAL, "the kill came too late to test anything"
            procs.append(start_worker_process(kafka_broker.bootstrap, settings, logs[1], env=env))
            await streamer
            async with asyncio.timeout(90):
                while len(seen) < TOTAL or len(forwards.seen) < TOTAL:
                    assert procs[1].poll() is None, logs[1].read_text()
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a late duplicate would arrive by now
        finally:
            _stop(procs)
    assert "exactly-once on" in logs[0].read_text()
    assert set(seen) == expected
    print(f"answered at kill {answered_at_kill}, answers {sum(seen.values())} for {TOTAL}")
    assert sum(seen.values()) == TOTAL, "a read_committed reader saw an answer twice"
    assert set(forwards.seen) == expected
    assert sum(forwards.seen.values()) == TOTAL, "a read_committed reader saw a forward twice"
    assert procs[1].returncode == 0


@KAFKA_ONLY
@pytest.mark.slow
@pytest.mark.usefixtures("topics_ready")
async def test_alert_worker_sigkill_mid_storm_no_duplicates(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    logs = [tmp_path / "alerts-1.log", tmp_path / "alerts-2.log"]
    procs: list[subprocess.Popen[bytes]] = []

    def start(log: Path) -> subprocess.Popen[bytes]:
        return start_worker_process(
            kafka_broker.bootstrap, settings, log, worker="alerts", env=EOS_ENV
        )

    async with (
        configured(settings, kafka, STORM_CONFIG),
        OutboundWatch(kafka, settings) as watch,
    ):
        try:
            streamer = asyncio.create_task(_stream_alerts(kafka, settings.topics.alerts_inbound))
            normal_at_kill = await kill_mid_storm(start, logs, procs, watch, streamer, NORMAL_N)
        finally:
            _stop(procs)
    assert "exactly-once on" in logs[0].read_text()
    normal = [a.payload for _, a, _ in watch.records if a.alert_code == "8F35"]
    assert sorted(normal) == sorted(f"8F35-{i}" for i in range(NORMAL_N)), "each alert once"
    storm = [r for r in watch.records if r[1].device_id == ROGUE and r[1].recipients == [DNO]]
    for _, a, h in storm:  # what the recipient saw of the storm, for a failure's report
        if STORM_HEADER in h:
            print(a.throttled_alert_sequence_id, h, a.throttled_alert_count, a.payload)
    seen = storm_seen(storm, STORM_N, MAX_ALERTS)
    print(
        f"normal delivered at the kill {normal_at_kill}; storm: {seen.at_once} at once, "
        f"{seen.periodic} periodic, {seen.suppressed} suppressed, {seen.repeats} repeats"
    )
    assert len(seen.sequences) == 1
    assert seen.repeats == 0, "a storm copy was delivered twice"
    at_once = [a.payload for _, a, h in storm if STORM_HEADER not in h]
    assert len(at_once) == len(set(at_once)), "an alert forwarded at once came twice"
    assert procs[1].returncode == 0


QUARANTINED = 3_000
OPERATOR_TOKEN = "exactly-once-test-operator-token-0123456789"
USER = "90-B3-D5-1F-30-01-00-00"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _release(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/quarantine/release",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def _quarantine(kafka: KafkaSettings, settings: Settings) -> list[str]:
    """Write QUARANTINED requests to dcc.sr.quarantine as a router would; their ids."""
    topic = settings.topics.sr_quarantine
    encode = msgspec.json.Encoder().encode
    ids = []
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        out = producer.batch()
        for n in range(QUARANTINED):
            request_id = f"{USER}:00-DB-00-00-00-01-{n // 256:02X}-{n % 256:02X}:{n}"
            original = {"request_id": request_id, "user_role": "IS", "srv": "7.2",
                        "command_variant": 4, "body": {}}  # fmt: skip
            held = QuarantinedRequest(
                id=request_id, user_id=USER, srv="7.2", kind="user_adt", rule="7.2/user",
                reason="test", at_s=time.time(), observed=2, limit=1, response_code="Q1",
                request=msgspec.Raw(orjson.dumps(original)),
            )  # fmt: skip
            out.add(topic, USER.encode(), encode(held))
            ids.append(request_id)
        await producer.send(out)
    return ids


@KAFKA_ONLY
@pytest.mark.slow
@pytest.mark.usefixtures("topics_ready")
async def test_quarantine_release_interrupted_by_sigkill_forwards_each_once(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    ids = await _quarantine(kafka, settings)
    env = {**EOS_ENV, "DCCGATE_ADMIN_TOKEN": OPERATOR_TOKEN}
    logs = [tmp_path / "admin-1.log", tmp_path / "admin-2.log"]
    procs: list[subprocess.Popen[bytes]] = []
    # Bulk decisions of 200 (one transaction each), one after the other until none is left.
    bulk = {"user_id": USER, "limit": 200}

    async def serve(log: Path) -> int:
        port = _free_port()
        procs.append(
            start_worker_process(
                kafka_broker.bootstrap, settings, log, worker="admin", http_port=port, env=env
            )
        )

        def ready() -> bool:
            assert procs[-1].poll() is None, log.read_text()[-3000:]
            nothing = {"user_id": USER, "to": "1970-01-02T00:00:00Z"}  # matches none
            return _release(port, nothing)[0] == 200

        await wait_until_async(ready, timeout_s=60, what=lambda: log.read_text()[-3000:])
        return port

    answered: list[int] = []

    def release_all(port: int) -> None:
        while True:
            status, doc = _release(port, bulk)
            assert status == 200, doc
            answered.append(len(doc["decided"]))
            if not doc["more"]:
                return

    async with (
        _Reader(kafka, settings.topics.sr_outbound) as forwards,
        _Reader(kafka, settings.topics.user_responses) as answers,
        _Reader(kafka, settings.topics.sr_quarantine, field="id") as book,
    ):
        try:
            port = await serve(logs[0])
            releases = asyncio.create_task(asyncio.to_thread(release_all, port))
            # Kill the admin process while its third bulk release is under way.
            await wait_until_async(lambda: len(answered) >= 2, timeout_s=60, what="2 releases")
            await asyncio.sleep(0.03)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            await asyncio.gather(releases, return_exceptions=True)  # the connection is cut
            released_before = sum(answered)
            assert released_before < QUARANTINED, "the kill came too late to test anything"
            port = await serve(logs[1])
            await asyncio.wait_for(asyncio.to_thread(release_all, port), timeout=60)
        finally:
            _stop(procs)
        await forwards.settle(QUARANTINED)
        await answers.settle(QUARANTINED)
        await book.settle(2 * QUARANTINED)
    assert "exactly-once on" in logs[0].read_text()
    print(f"released before the kill {released_before} of {QUARANTINED}")
    assert set(forwards.seen) == set(ids)
    assert sum(forwards.seen.values()) == QUARANTINED, "a release was forwarded twice"
    released = collections.Counter(
        d["request_id"] for d in answers.docs if d["outcome"] == "released"
    )
    assert set(released) == set(ids)
    assert sum(released.values()) == QUARANTINED, "a User was told twice"
    decisions = collections.Counter(d["id"] for d in book.docs if d.get("event") == "released")
    assert sum(decisions.values()) == QUARANTINED == len(decisions), "decided twice"


@KAFKA_ONLY
async def test_auto_resolves_on_with_apache_kafka(kafka: KafkaSettings) -> None:
    resolved = await resolve_exactly_once(kafka, "auto", embedded=False)
    assert resolved.exactly_once
    assert not (await resolve_exactly_once(kafka, "off", embedded=False)).exactly_once


async def test_on_is_refused_on_the_embedded_broker_and_auto_is_off(
    kafka: KafkaSettings,
) -> None:
    with pytest.raises(TransactionsUnavailableError, match="embedded broker"):
        await resolve_exactly_once(kafka, "on", embedded=True)
    assert not (await resolve_exactly_once(kafka, "auto", embedded=True)).exactly_once


@pytest.mark.embedded_only(reason="the embedded broker refuses aiokafka's InitProducerId")
async def test_on_against_a_broker_without_transactions_fails_with_a_clear_message(
    kafka: KafkaSettings,
) -> None:
    # As an operator would see it pointing a worker at a broker without transactions
    # (embedded=False: dccgate did not start this broker itself, so it has to ask it).
    probe = msgspec.structs.replace(kafka, request_timeout_ms=3_000)
    with pytest.raises(TransactionsUnavailableError, match="does not support transactions"):
        await resolve_exactly_once(probe, "on", embedded=False)
    assert not (await resolve_exactly_once(probe, "auto", embedded=False)).exactly_once
