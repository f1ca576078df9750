"""The load generator's confluent-kafka producer against the session's broker: every record
queued with `produce_many` arrives, placed by murmur2 as the gateway's own producer places it,
also when librdkafka's queue fills up on the way."""

from __future__ import annotations

import asyncio

from broker.producer import partition_for_key
from broker.replay import read_to_end
from broker.settings import KafkaSettings
from workers.config.settings import Settings
from workers.tools.loadtest.fastproducer import FastProducer


async def test_produce_many_delivers_every_record_through_a_full_queue(
    kafka: KafkaSettings, settings: Settings, topics_ready: None
) -> None:
    topic = settings.topics.sr_inbound
    records = [(f"user-{n % 37}".encode(), f"value-{n}".encode()) for n in range(3_000)]
    producer = FastProducer(kafka.bootstrap, queue_records=100)  # full 29 times over
    try:
        for start in range(0, len(records), 1_000):
            producer.produce_many(topic, records[start : start + 1_000], [("h", b"1")])
        await asyncio.to_thread(producer.flush, 30.0)
    finally:
        producer.close()
    assert producer.produced == 3_000
    read = await read_to_end(kafka, topic, range(settings.partitions), name="fastproducer")
    # Every record came back with its value: none is missing, none a tombstone.
    values = sorted(rec.value for rec in read if rec.value is not None)
    assert values == sorted(value for _, value in records)
    for rec in read:
        assert rec.key is not None
        assert rec.partition == partition_for_key(rec.key, settings.partitions)
        assert list(rec.headers) == [("h", b"1")]
