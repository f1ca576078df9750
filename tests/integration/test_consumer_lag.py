"""`dccgate_consumer_lag_records` on a real broker: the high watermark each fetch returns,
minus the offset after the latest batch the worker decided (issue 18, item 3)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import BatchProducer, OutputBatch
from broker.settings import KafkaSettings
from workers.config.settings import Settings
from workers.runtime.loop import ServiceLoop
from workers.runtime.metrics import CommonMetrics

pytestmark = pytest.mark.usefixtures("topics_ready")

WRITTEN = 100
PER_BATCH = 10


class _PauseAfterFirst:
    """Decides batches without output, and wants no more input after the first one until
    `resume()`: the loop then pauses its partitions (backpressure), so nothing more is
    decided and no fetch updates the high watermark."""

    def __init__(self) -> None:
        self.decided = 0
        self._wants = True

    def process(
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> None:
        first = self.decided == 0
        self.decided += sum(len(records) for records in batch.values())
        if first:
            self._wants = False

    def after_send(self, report: None, now_ms: int) -> None:
        pass

    def held_floor(self) -> dict[TopicPartition, int]:
        return {}

    def wants_input(self) -> bool:
        return self._wants

    def resume(self) -> None:
        self._wants = True


async def _until(check: Callable[[], bool], what: Callable[[], str]) -> None:
    for _ in range(600):  # 30 s
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what())


async def test_lag_is_what_the_worker_has_not_decided_yet(
    settings: Settings, kafka: KafkaSettings
) -> None:
    topic = settings.topics.sr_inbound
    producer = BatchProducer(kafka)
    await producer.start()
    try:
        await producer.prepare([topic])
        batch = producer.batch()
        for n in range(WRITTEN):
            batch.add(topic, b"one-key", b"%d" % n)  # one key: one partition
        await producer.send(batch)
    finally:
        await producer.stop()

    registry = CollectorRegistry()
    processor = _PauseAfterFirst()
    loop = ServiceLoop(
        name="lagged",
        settings=msgspec.structs.replace(kafka, max_poll_records=PER_BATCH),
        input_topics=[topic],
        output_topics=[],
        group_id=f"{settings.topic_prefix}lagged",
        processor=processor,
        metrics=CommonMetrics(registry, version="t"),
    )

    def lag_samples() -> dict[str, float]:
        return {
            s.labels["partition"]: s.value
            for family in registry.collect()
            if family.name == "dccgate_consumer_lag_records"
            for s in family.samples
            if s.labels["service"] == "lagged" and s.labels["topic"] == topic
        }

    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        # The first fetch saw the whole partition; one batch of it is decided, then input
        # is paused: the lag is the rest.
        await _until(lambda: bool(lag_samples()), lambda: "no lag after the first batch")
        await asyncio.sleep(0.3)  # polls go on while paused, and decide nothing
        assert processor.decided == PER_BATCH
        assert list(lag_samples().values()) == [WRITTEN - PER_BATCH]
        # Resumed, it works the backlog off and the lag falls to 0.
        processor.resume()
        await _until(
            lambda: processor.decided == WRITTEN and list(lag_samples().values()) == [0],
            lambda: f"decided {processor.decided} of {WRITTEN}, lag {lag_samples()}",
        )
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    # Stopped: it owns no partition, so it reports none.
    assert lag_samples() == {}
