from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from broker.embedded import EmbeddedBroker, _probe, find_tansu
from broker.errors import EmbeddedBrokerError
from broker.follower import partition_counts
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics
from tests.integration.brokers import SessionBroker

# The broker the tests below start themselves is the embedded one, whatever --broker says.
_OWN_TANSU = pytest.mark.embedded_only(
    reason="starts its own embedded broker (tansu) to test it; the session broker is unused"
)


@_OWN_TANSU
def test_the_binary_comes_from_the_pinned_package() -> None:
    assert find_tansu().name.startswith("tansu")


@_OWN_TANSU
def test_a_bad_override_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DCCGATE_TANSU_BIN", str(tmp_path / "missing"))
    with pytest.raises(EmbeddedBrokerError, match="unset it"):
        find_tansu()


@_OWN_TANSU
def test_start_answers_and_stop_frees_the_port(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "b.log")
    broker.start_blocking()
    try:
        assert _probe(broker.host, broker.port, 1.0)
    finally:
        broker.stop_blocking()
    assert not _probe(broker.host, broker.port, 0.2)
    with socket.socket() as s:  # the port is free again
        s.bind((broker.host, broker.port))


@_OWN_TANSU
def test_a_port_in_use_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        broker = EmbeddedBroker(port=s.getsockname()[1], log_path=tmp_path / "b.log")
        with pytest.raises(EmbeddedBrokerError, match="log"):
            broker.start_blocking()


async def test_topic_creation_is_idempotent(kafka_broker: SessionBroker) -> None:
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    specs = Topics.with_prefix("idem.").specs(partitions=3)
    first = await ensure_topics(kafka, specs)
    second = await ensure_topics(kafka, specs)
    assert sorted(first) == sorted(s.name for s in specs)
    assert second == []


async def test_created_topics_are_served_at_once(kafka_broker: SessionBroker) -> None:
    # Apache Kafka answers CreateTopics before its broker serves the new topics: without the
    # wait in ensure_topics, a metadata request right after missed them 19 times in 20 (all
    # but the first round on a fresh broker).
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    for _ in range(3):
        topics = Topics.with_prefix(f"served-{uuid.uuid4().hex[:8]}.")
        specs = topics.specs(partitions=3)
        await ensure_topics(kafka, specs)
        counts = await partition_counts(kafka, topics.all())
        assert counts == {s.name: s.partitions for s in specs}


async def test_batched_records_keep_key_value_headers_timestamp_and_order(
    kafka_broker: SessionBroker,
) -> None:
    from broker.producer import BatchProducer, partition_for_key
    from tests.integration.helpers import read_topic

    kafka = KafkaSettings(
        bootstrap=kafka_broker.bootstrap, fetch_max_wait_ms=20, max_batch_bytes=16 * 1024
    )
    [spec] = [s for s in Topics.with_prefix("rt.").specs(partitions=3) if "sr.inbound" in s.name]
    await ensure_topics(kafka, [spec])
    # Recent timestamps: Apache Kafka deletes records older than the topic's retention
    # (7 days here) within a second or two, whole segments, the active one included.
    base_ms = int(time.time() * 1000) - 60_000
    async with BatchProducer(kafka) as producer:
        await producer.prepare([spec.name])
        batch = producer.batch()
        # 16 KiB batches and 600 x 100 B records: several batches per partition.
        for i in range(600):
            batch.add(
                spec.name,
                f"key-{i % 7}".encode(),
                b"%05d" % i + b"x" * 95,
                [("n", str(i).encode())],
                None,
                base_ms + i,
            )
        await producer.send(batch)
    records = await read_topic(kafka, spec.name, expect=600)
    assert len(records) == 600
    for rec in records:
        i = int(rec.value[:5])
        assert rec.key == f"key-{i % 7}".encode()
        assert rec.partition == partition_for_key(rec.key, 3)
        assert list(rec.headers) == [("n", str(i).encode())]
        assert rec.timestamp == base_ms + i
    for p in range(3):
        in_partition = [int(r.value[:5]) for r in records if r.partition == p]
        assert in_partition == sorted(in_partition)
