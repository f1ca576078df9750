"""A poison record that makes a whole batch raise (outside a processor's own per-record
guard) is found by deciding the batch in halves, dead-lettered with `processing_error:
batch`, and committed past: the loop goes on, every other record is decided once, and a
restarted loop does not meet the poison again (issue 12, item 3)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import BatchProducer, OutputBatch
from broker.settings import KafkaSettings
from tests.integration.helpers import read_topic
from workers.config.settings import Settings
from workers.runtime.loop import ServiceLoop
from workers.runtime.metrics import CommonMetrics

pytestmark = pytest.mark.usefixtures("topics_ready")

POISON = b"poison"


class _Echo:
    """Copies each record to the output topic; raises on the whole batch if it holds the
    poison (as a bug in batch-level code would)."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.batches = 0

    def process(
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> int:
        self.batches += 1
        n = 0
        for records in batch.values():
            for rec in records:
                out.add(self.out_topic, rec.key, rec.value)
                n += 1
        if any(rec.value == POISON for records in batch.values() for rec in records):
            raise OverflowError("a batch-level step overflowed")
        return n

    def after_send(self, report: int, now_ms: int) -> None:
        pass


def _loop(
    settings: Settings, kafka: KafkaSettings, processor: _Echo, group: str
) -> ServiceLoop[int]:
    topics = settings.topics
    return ServiceLoop(
        name="echo",
        settings=kafka,
        input_topics=[topics.sr_inbound],
        output_topics=[topics.sr_outbound, topics.deadletter],
        group_id=group,
        processor=processor,
        metrics=CommonMetrics(CollectorRegistry(), version="t"),
        deadletter_topic=topics.deadletter,
    )


async def test_the_poison_record_is_dead_lettered_and_the_rest_decided_once(
    settings: Settings, kafka: KafkaSettings
) -> None:
    topics = settings.topics
    values = [f"good-{n}".encode() for n in range(40)]
    values.insert(23, POISON)
    producer = BatchProducer(kafka)
    await producer.start()
    try:
        await producer.prepare([topics.sr_inbound])
        batch = producer.batch()
        for value in values:
            batch.add(topics.sr_inbound, b"k", value)  # one key: one partition, in order
        await producer.send(batch)
    finally:
        await producer.stop()

    group = f"{settings.topic_prefix}echo"
    processor = _Echo(topics.sr_outbound)
    loop = _loop(settings, kafka, processor, group)
    await asyncio.wait_for(loop.run(asyncio.Event(), idle_exit_s=1.5), 60)
    assert loop.status.error is None
    assert processor.batches > 1  # the batch was decided again, in halves

    outputs = await read_topic(kafka, topics.sr_outbound, expect=40)
    assert sorted(r.value for r in outputs) == sorted(v for v in values if v != POISON)
    [dead] = await read_topic(kafka, topics.deadletter, expect=1)
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.value == POISON
    assert headers["dccgate-dlq-kind"] == "processing_error"
    assert headers["dccgate-dlq-reason"] == (
        "processing_error: batch: OverflowError: a batch-level step overflowed"
    )
    assert headers["dccgate-dlq-offset"] == "23"

    # A restart of the group meets nothing: the poison's offset was committed like any other.
    again = _Echo(topics.sr_outbound)
    await asyncio.wait_for(
        _loop(settings, kafka, again, group).run(asyncio.Event(), idle_exit_s=1.5), 60
    )
    assert again.batches == 0
