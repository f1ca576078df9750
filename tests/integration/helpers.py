"""Helpers for integration tests: read a topic back, run a router in-process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from workers.loop import ServiceLoop
from workers.metrics import CommonMetrics
from workers.services import build_router
from workers.settings import Settings


async def read_topic(
    kafka: KafkaSettings, topic: str, *, expect: int, timeout_s: float = 30.0
) -> list[Any]:
    """Every record of `topic` from the start, waiting until at least `expect` arrived
    (and a short quiet period after, to catch extras such as duplicates)."""
    consumer = AIOKafkaConsumer(
        topic, group_id=f"reader-{uuid.uuid4().hex[:8]}", **kafka.consumer_kwargs()
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = sum(len(v) for v in batch.values())
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expect:
                if got == 0:
                    if quiet_until is None:
                        quiet_until = time.monotonic() + 0.5
                    elif time.monotonic() > quiet_until:
                        break
                else:
                    quiet_until = None
        return records
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def running_router(
    settings: Settings, kafka: KafkaSettings
) -> AsyncIterator[tuple[ServiceLoop, CollectorRegistry]]:
    """A router service loop running in this event loop until the block ends."""
    registry = CollectorRegistry()
    loop = build_router(settings, kafka, CommonMetrics(registry, version="test"))
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield loop, registry
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
