"""workers.ingress.publisher against the real broker: concurrent requests' records go in
few sends, each arrives exactly once with its headers, and every caller is acknowledged."""

from __future__ import annotations

import asyncio

import pytest

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from tests.integration.helpers import read_topic
from workers.config.settings import Settings
from workers.ingress.publisher import GroupPublisher

pytestmark = pytest.mark.usefixtures("topics_ready")


async def test_concurrent_records_are_sent_in_batches_and_each_arrives_once(
    settings: Settings, kafka: KafkaSettings
) -> None:
    topic = settings.topics.sr_inbound
    producer = BatchProducer(kafka)
    await producer.start()
    try:
        await producer.prepare([topic])
        publisher = GroupPublisher(producer)
        n = 300
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    publisher.send_one(
                        topic,
                        f"user-{i % 7}".encode(),
                        f"record-{i}".encode(),
                        headers=[("dccgate-duis-verified", f"{i:064d}".encode())],
                    )
                    for i in range(n)
                )
            ),
            60,
        )
        assert publisher.sends < n  # grouped: far fewer sends than records
    finally:
        await producer.stop()
    records = await read_topic(kafka, topic, expect=n)
    assert sorted(r.value for r in records) == sorted(f"record-{i}".encode() for i in range(n))
    for record in records:
        i = int(record.value.split(b"-")[1])
        assert record.key == f"user-{i % 7}".encode()
        assert dict(record.headers)["dccgate-duis-verified"] == f"{i:064d}".encode()
