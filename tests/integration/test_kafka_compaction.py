"""Compaction and restore on Apache Kafka: `dcc.control`, `dcc.state.router` and
`dcc.state.alerts` are compacted (broker/topics.py creates them with cleanup.policy=compact),
and a worker started after the compaction restores from what is left exactly the state the
previous one had: the configuration, a User's ADT windows and anti-replay memory
(workers/router/adt_state.py, workers/duis/validate.py), and a running alert storm
(workers/alerts/storm_changelog.py).

Compaction is forced per topic (a segment rolled every 100 ms, `min.cleanable.dirty.ratio`
0.01, tombstones kept 100 ms; the test cluster's cleaner looks every second,
deploy/kafka/kafka.py), and the test checks that it happened: every key that was written
many times is, after the cleaner ran, in the log at most twice (the newest of the closed
segments and the one in the active segment, which Kafka never cleans).

Apache Kafka only: the embedded broker does not compact (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry

from adt.config import AdtValues, Threshold
from adt.engine import AdtEngine
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import ensure_topics
from tests.integration.alerts_helpers import SUPPLIER, alert, running_alerts
from tests.integration.helpers import await_until, wait_until_async
from workers.admin.service import AdminService
from workers.config.model import StormParams, StormPolicy, User
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.duis.validate import DuisValidator
from workers.router.service import RouterService, build_router
from workers.runtime.metrics import CommonMetrics
from workers.tools.send import send_requests

pytestmark = [
    pytest.mark.kafka_only(reason="the embedded broker does not compact"),
    pytest.mark.slow,
]

A = "90-B3-D5-1F-30-01-00-00"
TARGET = "00-DB-12-34-56-78-90-A0"
ROGUE = "00-DB-FF-FF-FF-FF-00-09"
STORM_CODE = "8F1F"
TOKEN = "compaction-test-operator-token-32-chars"
# Writes of the same keys, each in a segment of its own (more than segment.ms apart).
ROUNDS = 8
SEGMENT_MS = 100
FORCE_COMPACTION = {
    "segment.ms": str(SEGMENT_MS),
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "100",
}
# How long the cleaner may take before the test calls it stuck (it looks every second):
# a liveness deadline, not a speed check.
COMPACTED_WITHIN_S = 60.0


async def _records(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of `topic`, from each partition's start to its end now."""
    consumer = AIOKafkaConsumer(group_id=None, **kafka.consumer_kwargs())
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def _cleanup_policies(kafka: KafkaSettings, names: list[str]) -> dict[str, str | None]:
    """`cleanup.policy` of each topic, as the cluster describes it."""
    admin = AIOKafkaAdminClient(**kafka.admin_kwargs())
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, None) for name in names]
        )
    finally:
        await admin.close()
    found: dict[str, str | None] = {}
    for response in described:
        for resource in response.resources:
            entries = {entry[0]: entry[1] for entry in resource[4]}
            found[resource[3]] = entries.get("cleanup.policy")
    return found


def _per_key(records: list[Any]) -> collections.Counter[bytes]:
    return collections.Counter(r.key for r in records)


@contextlib.asynccontextmanager
async def _control(settings: Settings, kafka: KafkaSettings) -> AsyncIterator[AdminService]:
    reader = ControlReader(kafka, settings.topics.control)
    await reader.start()
    await reader.wait_caught_up()
    admin = AdminService(msgspec.structs.replace(settings, admin_token=TOKEN), kafka, reader)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.stop()
        await reader.stop()


@contextlib.asynccontextmanager
async def _router(
    settings: Settings, kafka: KafkaSettings, reader: ControlReader
) -> AsyncIterator[RouterService]:
    """A router following `reader`'s configuration, running until the block ends, with
    its partitions assigned (and so its state restored)."""
    router = build_router(
        settings, kafka, CommonMetrics(CollectorRegistry(), version="test"), reader=reader
    )
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    try:

        def assigned() -> bool:
            assert not task.done(), task.exception()
            return bool(router.status.assigned)

        await wait_until_async(assigned, timeout_s=30, what="no partitions assigned")
        yield router
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _state(router: RouterService) -> tuple[AdtEngine, DuisValidator]:
    """The router's ADT engine and anti-replay books."""
    assert router.adt is not None
    assert router.validator is not None
    return router.adt.engine, router.validator


def _request(counter: int) -> bytes:
    return orjson.dumps(
        {
            "request_id": f"{A}:{TARGET}:{counter}",
            "user_role": "IS",
            "srv": "7.2",
            "command_variant": 4,
            "body": {},
        }
    )


async def _alerts(kafka: KafkaSettings, topic: str, first: int, n: int) -> None:
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        batch = producer.batch()
        for i in range(first, first + n):
            batch.add(topic, ROGUE.encode(), alert(ROGUE, STORM_CODE, i, recipients=[SUPPLIER]))
        await producer.send(batch)


async def _until_compacted(
    kafka: KafkaSettings, topic: str, keys: list[bytes], written: int
) -> collections.Counter[bytes]:
    """Wait until each of `keys`, written `written` times, is in `topic` at most twice."""
    seen: collections.Counter[bytes] = collections.Counter()

    async def compacted() -> bool:
        nonlocal seen
        seen = _per_key(await _records(kafka, topic))
        return all(0 < seen[k] <= 2 for k in keys)

    await await_until(
        compacted,
        timeout_s=COMPACTED_WITHIN_S,
        what=lambda: (
            f"{topic} not compacted: { ({k: seen[k] for k in keys}) } of {written} writes each"
        ),
    )
    return seen


async def test_a_worker_restores_the_same_state_from_compacted_logs(
    settings: Settings, kafka: KafkaSettings
) -> None:
    topics = settings.topics
    compacted = {topics.control, topics.state_router, topics.state_alerts}
    specs = [
        msgspec.structs.replace(s, configs={**s.configs, **FORCE_COMPACTION})
        if s.name in compacted
        else s
        for s in topics.specs(partitions=2)
    ]
    assert all(s.configs["cleanup.policy"] == "compact" for s in specs if s.name in compacted)
    await ensure_topics(kafka, specs)
    # On the cluster, as broker/topics.py asked (the forcing settings are this test's).
    assert await _cleanup_policies(kafka, sorted(compacted)) == dict.fromkeys(
        sorted(compacted), "compact"
    )
    control_key = f"adt.users/{A}".encode()
    policy = StormPolicy(default=StormParams(window_s=3600, max_alerts=3, period_s=3600))

    async with _control(settings, kafka) as admin:
        await admin.writer.put(
            f"users/{A}", User(name="A", roles=["IS"]), by="t", expected_version=None
        )
        await admin.writer.put("alerts.storm-policy", policy, by="t", expected_version=None)
        # The same control key written ROUNDS times, each in a segment of its own.
        for n in range(1, ROUNDS + 1):
            values = AdtValues(thresholds=(Threshold(srv="7.2", window_s=3600, max=100 + n),))
            await admin.writer.put(
                control_key.decode(), values, by="t", expected_version=n - 1 if n > 1 else None
            )
            await asyncio.sleep(SEGMENT_MS * 1.5 / 1000)

        first_reader = ControlReader(kafka, topics.control)
        await first_reader.start()
        await first_reader.wait_caught_up()
        try:
            async with (
                _router(settings, kafka, first_reader) as router,
                running_alerts(settings, kafka, first_reader) as (alerts, _, _),
            ):
                # ROUNDS batches for the same User, SRV and target: each writes the same ADT
                # key and the same replay key to dcc.state.router.
                for n in range(1, ROUNDS + 1):
                    result = await send_requests(
                        [_request(1000 + n)], settings=kafka, topics=topics, timeout_s=30, out=None
                    )
                    assert [a["outcome"] for a in result.answers] == ["accepted"]
                    await asyncio.sleep(SEGMENT_MS * 1.5 / 1000)
                # A storm of ROGUE, its snapshot written ROUNDS times.
                for n in range(ROUNDS):
                    await _alerts(kafka, topics.alerts_inbound, n * 5, 5)
                    await asyncio.sleep(SEGMENT_MS * 1.5 / 1000)
                guard = alerts.processor.guard

                def storm_counted() -> bool:
                    state = guard.storm_state(ROGUE, STORM_CODE)
                    return state is not None and state.suppressed + state.pending >= ROUNDS * 5 - 3

                await wait_until_async(storm_counted, timeout_s=30, what="the storm not counted")
                now_s = time.time() + 1
                engine, validator = _state(router)
                windows_before = engine.snapshot_user(A, now_s)
                book = validator.book(A)
                replay_before = (dict(book.last), book.floor)
                storm_before = guard.storm_state(ROGUE, STORM_CODE)
                versions_before = first_reader.snapshot.versions()
        finally:
            await first_reader.stop()

    # Every key written ROUNDS times: after the cleaner, at most twice in the log.
    state_keys = [f"{A}/7.2".encode(), f"{A}:{TARGET}".encode()]
    for topic, keys in (
        (topics.control, [control_key]),
        (topics.state_router, state_keys),
        (topics.state_alerts, [ROGUE.encode()]),
    ):
        left = await _until_compacted(kafka, topic, keys, ROUNDS)
        # What the cleaner left, for docs/operations.md (the assertion is in the wait).
        print(f"{topic}: {ROUNDS} writes of each key, left {[left[k] for k in keys]}")

    # Workers started now restore from the compacted logs alone.
    second_reader = ControlReader(kafka, topics.control)
    await second_reader.start()
    await second_reader.wait_caught_up()
    try:
        assert second_reader.snapshot.versions() == versions_before
        assert versions_before[control_key.decode()] == ROUNDS
        async with (
            _router(settings, kafka, second_reader) as router,
            running_alerts(settings, kafka, second_reader) as (alerts, _, _),
        ):
            await wait_until_async(
                lambda: router.adt_state is not None and router.adt_state.restored_users >= 1,
                timeout_s=30,
                what="the second router restored no ADT windows",
            )
            engine, validator = _state(router)
            assert windows_before is not None
            assert engine.snapshot_user(A, now_s) == windows_before
            book = validator.book(A)
            assert (dict(book.last), book.floor) == replay_before
            assert replay_before[0] == {TARGET: 1000 + ROUNDS}
            guard = alerts.processor.guard
            # Assigned partitions are marked before their restore has finished.
            await wait_until_async(
                lambda: guard.storm_state(ROGUE, STORM_CODE) is not None,
                timeout_s=30,
                what="the second alert worker restored no storm",
            )
            storm_after = guard.storm_state(ROGUE, STORM_CODE)
            assert storm_before is not None
            assert storm_after is not None
            # The changelog keeps the next period boundary in whole milliseconds.
            assert storm_after.due_s == pytest.approx(storm_before.due_s, abs=0.001)
            assert msgspec.structs.replace(storm_after, due_s=0.0) == msgspec.structs.replace(
                storm_before, due_s=0.0
            )
    finally:
        await second_reader.stop()
