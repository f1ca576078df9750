"""Broker failover on a 3-node Apache Kafka: SIGKILL a broker mid-stream, lose nothing.

The cluster is the production shape: every topic with 3 replicas and
`min.insync.replicas=2`, every producer with `acks=all` (dccgate's default). A real
`dccgate worker router` process takes a 50,000-request stream; a quarter of the way in one
broker is SIGKILLed: the leader of `dcc.sr.inbound`'s first partition, or the broker that is
the router group's coordinator (the leader of its `__consumer_offsets` partition). Every
request still gets its answer and is forwarded; the longest pause in answers after the kill
is measured and printed (docs/operations.md records it). Then the broker is started again
and catches up: every partition of every topic is back to 3 in-sync replicas.

The alert worker is tested the same way in the middle of a storm: every normal alert is
delivered and the storm is accounted for exactly (SECMP0062).

Kafka only: the embedded broker is one node. The cluster is this module's own (3 JVMs),
started once for the module.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import ensure_topics
from tests.integration.alerts_helpers import (
    OutboundWatch,
    configured,
    storm_seen,
    stream_storm,
)
from tests.integration.brokers import SessionBroker, kafka_launcher, tuned_kafka_settings
from tests.integration.helpers import (
    await_until,
    read_topic,
    register_users,
    start_worker_process,
    wait_until,
    wait_until_async,
)
from workers.alerts import STORM_HEADER
from workers.config.model import StormParams, StormPolicy
from workers.config.settings import Settings
from workers.tools.bench import bench_users, make_requests

pytestmark = [
    pytest.mark.kafka_only(reason="broker failover needs a 3-node Apache Kafka cluster"),
    pytest.mark.slow,
]

NODES = 3
REPLICAS = 3
MIN_ISR = 2
TOTAL = 50_000
CHUNK = 1_000


@dataclass
class ThreeNodes:
    """The module's cluster: kill a node, start it again, find leaders."""

    launcher: ModuleType
    data_dir: Path
    bootstrap: str

    def kill(self, node_id: int) -> None:
        pid = self.launcher.running_pid(self.data_dir, node_id)
        assert pid is not None, f"node {node_id} is not running"
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: self.launcher.running_pid(self.data_dir, node_id) is None,
            timeout_s=10,
            what=f"node {node_id} survived SIGKILL",
        )

    def restart(self) -> None:
        """Start the nodes that are down, on their data (synchronous: run it in a thread).
        Not tied to the calling thread's life: the module's teardown stops them."""
        self.launcher.up(self.data_dir, nodes=NODES, base_port=0, die_with_parent=False, out=False)


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreeNodes]:
    launcher = kafka_launcher()
    work = tmp_path_factory.mktemp("kafka-3")
    data_dir = work / "cluster"
    bootstrap: str = launcher.up(
        data_dir, nodes=NODES, base_port=0, die_with_parent=True, out=False
    )
    try:
        yield ThreeNodes(launcher, data_dir, bootstrap)
    finally:
        for i in range(1, NODES + 1):
            with contextlib.suppress(OSError):
                shutil.copy(data_dir / f"node-{i}" / "server.log", work / f"server-{i}.log")
        launcher.down(data_dir, grace_s=0, out=False)


@pytest.fixture
def replicated(three_nodes: ThreeNodes, tmp_path: Path) -> tuple[Settings, KafkaSettings]:
    settings = Settings(
        topic_prefix=f"f{uuid.uuid4().hex[:10]}.",
        partitions=3,
        replication_factor=REPLICAS,
        min_insync_replicas=MIN_ISR,
    )
    broker = SessionBroker("kafka", three_nodes.bootstrap, tmp_path)
    return settings, tuned_kafka_settings(broker, settings)


async def _create_topics(settings: Settings, kafka: KafkaSettings) -> None:
    specs = settings.topics.specs(
        partitions=settings.partitions,
        replication_factor=REPLICAS,
        min_insync_replicas=MIN_ISR,
    )
    await ensure_topics(kafka, specs)


async def _partition_leader(kafka: KafkaSettings, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        for p in described["partitions"]:
            if p["partition"] == partition:
                return int(p["leader"])
        raise AssertionError(f"{topic} has no partition {partition}: {described}")
    finally:
        await admin.close()


async def _coordinator(kafka: KafkaSettings, group_id: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        return int(await admin.find_coordinator(group_id))
    finally:
        await admin.close()


async def _under_replicated(kafka: KafkaSettings, topics: list[str]) -> list[str]:
    """The partitions of `topics` with fewer than REPLICAS in-sync replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        short = []
        for described in await admin.describe_topics(topics):
            for p in described["partitions"]:
                if len(p["isr"]) < REPLICAS:
                    short.append(f"{described['topic']}[{p['partition']}] isr={p['isr']}")
        return short
    finally:
        await admin.close()


async def _bring_back(three_nodes: ThreeNodes, kafka: KafkaSettings, topics: list[str]) -> float:
    """Start the killed node again and wait until it has caught up; return the seconds."""
    started = time.monotonic()
    await asyncio.to_thread(three_nodes.restart)
    short: list[str] = []

    async def caught_up() -> bool:
        nonlocal short
        short = await _under_replicated(kafka, topics)
        return not short

    await await_until(caught_up, timeout_s=120, what=lambda: f"not caught up: {short}")
    return time.monotonic() - started


class AnswerClock:
    """Every answer on dcc.user.responses by request ID, with when each was first seen."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.first_seen_s: list[float] = []

    async def follow(self, kafka: KafkaSettings, topic: str) -> None:
        # No consumer group: a group that never commits would read everything again after
        # the rebalance a coordinator's death causes, and count it as duplicates.
        consumer = AIOKafkaConsumer(topic, group_id=None, **kafka.consumer_kwargs())
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=50, max_records=10_000)
                now = time.monotonic()
                for records in batch.values():
                    for rec in records:
                        request_id = orjson.loads(rec.value)["request_id"]
                        if request_id not in self.seen:
                            self.first_seen_s.append(now)
                        self.seen[request_id] += 1
        finally:
            await consumer.stop()

    def longest_gap_after(self, t_s: float) -> float:
        """The longest time with no new answer, from `t_s` on."""
        times = [t_s, *(t for t in self.first_seen_s if t >= t_s)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def _stream(kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for start in range(0, len(records), CHUNK):
            batch = producer.batch()
            for key, value in records[start : start + CHUNK]:
                batch.add(topic, key, value)
            await producer.send(batch)
            await asyncio.sleep(0.02)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.mark.parametrize("victim", ["inbound-leader", "group-coordinator"])
async def test_router_loses_nothing_when_a_broker_dies(
    three_nodes: ThreeNodes,
    replicated: tuple[Settings, KafkaSettings],
    tmp_path: Path,
    victim: str,
) -> None:
    settings, kafka = replicated
    topics = settings.topics
    await _create_topics(settings, kafka)
    records = make_requests(TOTAL, seed=11)
    await register_users(settings, kafka, bench_users(seed=11))
    expected = {orjson.loads(v)["request_id"] for _, v in records}
    clock = AnswerClock()
    watcher = asyncio.create_task(clock.follow(kafka, topics.user_responses))
    log = tmp_path / "router.log"
    router = start_worker_process(
        three_nodes.bootstrap,
        settings,
        log,
        env={
            "DCCGATE_REPLICATION_FACTOR": str(REPLICAS),
            "DCCGATE_MIN_INSYNC_REPLICAS": str(MIN_ISR),
            "DCCGATE_MAX_POLL_RECORDS": "500",
        },
    )
    try:
        streamer = asyncio.create_task(_stream(kafka, topics.sr_inbound, records))

        def started() -> bool:
            assert router.poll() is None, log.read_text()[-3000:]
            return len(clock.seen) >= TOTAL // 4

        await wait_until_async(started, timeout_s=90, what="the router answered too little")
        if victim == "inbound-leader":
            node = await _partition_leader(kafka, topics.sr_inbound, 0)
        else:
            node = await _coordinator(kafka, f"{settings.topic_prefix}dccgate-router")
        killed_at = time.monotonic()
        await asyncio.to_thread(three_nodes.kill, node)
        answered_at_kill = len(clock.seen)
        assert answered_at_kill < TOTAL, "the kill came too late to test anything"
        await streamer

        def all_answered() -> bool:
            assert router.poll() is None, log.read_text()[-3000:]
            return len(clock.seen) >= TOTAL

        await wait_until_async(
            all_answered,
            timeout_s=120,
            what=lambda: f"{len(clock.seen)} of {TOTAL} answered; {log.read_text()[-3000:]}",
        )
        pause_s = clock.longest_gap_after(killed_at)
        finished_s = clock.first_seen_s[-1] - killed_at
        catch_up_s = await _bring_back(three_nodes, kafka, list(topics.all()))
    finally:
        watcher.cancel()
        _stop([router])
    assert set(clock.seen) == expected
    forwards = await read_topic(kafka, topics.sr_outbound, expect=TOTAL, timeout_s=60)
    forwarded = collections.Counter(orjson.loads(r.value)["request_id"] for r in forwards)
    assert set(forwarded) == expected
    print(
        f"FAILOVER router victim={victim} node={node} answered_at_kill={answered_at_kill} "
        f"longest_pause_s={pause_s:.2f} rest_answered_in_s={finished_s:.2f} "
        f"duplicate_answers={sum(clock.seen.values()) - TOTAL} "
        f"duplicate_forwards={sum(forwarded.values()) - TOTAL} caught_up_in_s={catch_up_s:.1f}"
    )
    assert router.returncode == 0, log.read_text()[-3000:]


ROGUE = "00-DB-FF-FF-FF-FF-00-02"
STORM_N, NORMAL_N, CHUNKS = 20_000, 3_000, 40
MAX_ALERTS = 5


async def _storm(kafka: KafkaSettings, topic: str) -> None:
    """The storm and normal alerts interleaved, over about 8 s."""
    await stream_storm(
        kafka, topic, ROGUE, storm_n=STORM_N, normal_n=NORMAL_N, chunks=CHUNKS, over_s=8.0
    )


async def test_alert_worker_keeps_the_storm_exact_when_a_broker_dies(
    three_nodes: ThreeNodes, replicated: tuple[Settings, KafkaSettings], tmp_path: Path
) -> None:
    settings, kafka = replicated
    await _create_topics(settings, kafka)
    policy = StormPolicy(default=StormParams(window_s=600, max_alerts=MAX_ALERTS, period_s=1))
    log = tmp_path / "alerts.log"
    procs: list[subprocess.Popen[bytes]] = []
    async with (
        configured(settings, kafka, {"alerts.storm-policy": policy}),
        OutboundWatch(kafka, settings) as watch,
    ):
        try:
            procs.append(
                start_worker_process(
                    three_nodes.bootstrap,
                    settings,
                    log,
                    worker="alerts",
                    env={
                        "DCCGATE_REPLICATION_FACTOR": str(REPLICAS),
                        "DCCGATE_MIN_INSYNC_REPLICAS": str(MIN_ISR),
                        "DCCGATE_MAX_POLL_RECORDS": "500",
                    },
                )
            )
            streamer = asyncio.create_task(_storm(kafka, settings.topics.alerts_inbound))

            def mid_storm() -> bool:
                assert procs[0].poll() is None, log.read_text()[-3000:]
                copies = [h for _, _, h in watch.records if h.get(STORM_HEADER) == b"periodic"]
                return len(copies) >= 2

            await wait_until_async(mid_storm, timeout_s=90, what="no storm copies")
            node = await _partition_leader(kafka, settings.topics.alerts_inbound, 0)
            killed_at = time.monotonic()
            await asyncio.to_thread(three_nodes.kill, node)
            normal_at_kill = sum(1 for _, a, _ in watch.records if a.alert_code == "8F35")
            await streamer

            def done() -> bool:
                assert procs[0].poll() is None, log.read_text()[-3000:]
                normal = {a.payload for _, a, _ in watch.records if a.alert_code == "8F35"}
                # Every storm sequence seen has ended with its final copy.
                copies = {
                    (a.throttled_alert_sequence_id, h[STORM_HEADER])
                    for _, a, h in watch.records
                    if STORM_HEADER in h
                }
                started = {seq for seq, _ in copies}
                ended = {seq for seq, kind in copies if kind == b"final"}
                return bool(ended) and started == ended and len(normal) == NORMAL_N

            await wait_until_async(done, timeout_s=120, what=lambda: log.read_text()[-3000:])
            finished_s = time.monotonic() - killed_at
            await asyncio.sleep(1.0)  # late repeats show up too
            catch_up_s = await _bring_back(three_nodes, kafka, list(settings.topics.all()))
        finally:
            _stop(procs)
    normal = [a.payload for _, a, _ in watch.records if a.alert_code == "8F35"]
    assert set(normal) == {f"8F35-{i}" for i in range(NORMAL_N)}
    storm = [r for r in watch.records if r[1].device_id == ROGUE]
    seen = storm_seen(storm, STORM_N, MAX_ALERTS)
    # The device's alerts stop reaching the worker while their partition has no leader
    # (about broker.session.timeout.ms, 9 s): longer than period_s, the quiet time that ends
    # a storm, so the storm may end and a new one start when the alerts come back. Either
    # way storm_seen has checked that every alert is accounted for exactly once.
    assert 1 <= len(seen.sequences) <= 2
    print(
        f"FAILOVER alerts node={node} normal_at_kill={normal_at_kill} "
        f"normal_duplicates={len(normal) - NORMAL_N} storm={msgspec.structs.asdict(seen)} "
        f"done_in_s={finished_s:.2f} caught_up_in_s={catch_up_s:.1f}"
    )
    assert procs[0].returncode == 0, log.read_text()[-3000:]
