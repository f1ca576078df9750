"""Delivery across a crash: SIGKILL a router mid-stream, start another, lose nothing.

A real `dccgate worker router` process against the session's broker; the stream is 50,000
requests. Every request must get an answer and be forwarded; duplicates may only come from
the batches that were in flight at the kill (max_batches_in_flight x max_poll_records).
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import read_topic, register_users, start_worker_process
from workers.config.settings import Settings
from workers.tools.bench import bench_users, make_requests

pytestmark = [pytest.mark.usefixtures("topics_ready"), pytest.mark.slow]

TOTAL = 50_000
CHUNK = 1_000
MAX_POLL = 500
IN_FLIGHT = 2


def _start_router(broker: SessionBroker, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return start_worker_process(
        broker.bootstrap,
        settings,
        log,
        env={
            "DCCGATE_MAX_POLL_RECORDS": str(MAX_POLL),
            "DCCGATE_MAX_BATCHES_IN_FLIGHT": str(IN_FLIGHT),
        },
    )


async def _watch_answers(kafka: KafkaSettings, topic: str, seen: collections.Counter[str]) -> None:
    consumer = AIOKafkaConsumer(
        topic, group_id=f"watch-{uuid.uuid4().hex[:8]}", **kafka.consumer_kwargs()
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    seen[orjson.loads(rec.value)["request_id"]] += 1
    finally:
        await consumer.stop()


async def _stream(kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for start in range(0, len(records), CHUNK):
            batch = producer.batch()
            for key, value in records[start : start + CHUNK]:
                batch.add(topic, key, value)
            await producer.send(batch)
            await asyncio.sleep(0.02)


async def test_sigkill_mid_stream_loses_nothing(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    topics = settings.topics
    records = make_requests(TOTAL, seed=7)
    await register_users(settings, kafka, bench_users(seed=7))
    expected = {orjson.loads(v)["request_id"] for _, v in records}
    assert len(expected) == TOTAL
    seen: collections.Counter[str] = collections.Counter()
    watcher = asyncio.create_task(_watch_answers(kafka, topics.user_responses, seen))
    first = _start_router(kafka_broker, settings, tmp_path / "router-1.log")
    second = None
    try:
        streamer = asyncio.create_task(_stream(kafka, topics.sr_inbound, records))
        async with asyncio.timeout(60):
            while len(seen) < TOTAL // 4:
                assert first.poll() is None, (tmp_path / "router-1.log").read_text()
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        answered_at_kill = len(seen)
        assert answered_at_kill < TOTAL, "the kill came too late to test anything"
        second = _start_router(kafka_broker, settings, tmp_path / "router-2.log")
        await streamer
        async with asyncio.timeout(90):
            while len(seen) < TOTAL:
                assert second.poll() is None, (tmp_path / "router-2.log").read_text()
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # let any late duplicate arrive before counting
    finally:
        watcher.cancel()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert set(seen) == expected
    answer_duplicates = sum(seen.values()) - TOTAL
    print(f"answered at kill {answered_at_kill}, duplicate answers {answer_duplicates}")
    bound = IN_FLIGHT * MAX_POLL
    assert answer_duplicates <= bound
    forwards = await read_topic(kafka, topics.sr_outbound, expect=TOTAL, timeout_s=60)
    forwarded = collections.Counter(orjson.loads(r.value)["request_id"] for r in forwards)
    assert set(forwarded) == expected
    assert sum(forwarded.values()) - TOTAL <= bound
    # The second router stopped on SIGTERM with exit code 0 (drained and committed).
    assert second is not None
    assert second.returncode == 0
