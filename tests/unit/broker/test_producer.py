from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BrokerError
from broker.producer import OutputBatch, partition_for_key


@given(key=st.binary(min_size=0, max_size=64), partitions=st.integers(1, 500))
def test_partition_matches_the_java_and_aiokafka_murmur2(key: bytes, partitions: int) -> None:
    expected = (murmur2(key) & 0x7FFFFFFF) % partitions
    assert partition_for_key(key, partitions) == expected


def test_known_key_lands_where_kafka_puts_it() -> None:
    # Fixed point so a change of hash library cannot silently move every User's partition.
    assert partition_for_key(b"00-DB-12-34-56-78-90-A0", 6) == 1


def test_output_batch_groups_records_by_partition_and_counts_topics() -> None:
    out = OutputBatch({"a": 4, "b": 1})
    out.add("a", b"k1", b"v1")
    out.add("a", b"k1", b"v2")
    out.add("b", None, b"v3")
    out.add("a", None, b"v4", partition=3)
    assert out.counts == {"a": 3, "b": 1}
    assert len(out) == 4
    p = partition_for_key(b"k1", 4)
    placed = [(topic, partition, value) for topic, partition, (_, value, _, _) in out.records()]
    assert sorted(placed) == sorted(
        [("a", p, b"v1"), ("a", p, b"v2"), ("b", 0, b"v3"), ("a", 3, b"v4")]
    )
    # In the order added within a partition.
    assert [v for t, q, v in placed if (t, q) == ("a", p)] == [b"v1", b"v2"]


def test_output_batch_refuses_a_topic_it_does_not_know() -> None:
    with pytest.raises(BrokerError, match="not prepared"):
        OutputBatch({}).add("nope", b"k", b"v")


async def test_batches_carry_each_records_headers_and_share_no_state() -> None:
    # Records without headers share one empty list in the C batch builder; those with
    # headers (a tuple, or a list of their own) keep theirs, in order, duplicates too.
    from aiokafka.record.default_records import DefaultRecordBatch

    from broker import producer as module
    from broker.producer import BatchProducer
    from broker.settings import KafkaSettings

    client = BatchProducer(KafkaSettings(bootstrap="127.0.0.1:9"))
    try:
        headers = [("dccgate-srv", b"4.1.1"), ("x", b""), ("x", b"2")]
        records: list[module.OutputRecord] = [
            (b"k0", b"v0", (), None),
            (b"k1", b"v1", tuple(headers), 1_700_000_000_000),
            (None, None, [], None),
            (b"k3", b"v3", list(headers[:1]), None),
            (b"k4", b"v4", (), None),
        ]
        (builder,) = client._builders("t", records)
        read = list(DefaultRecordBatch(bytes(builder._builder.build())))
    finally:
        await client.stop()
    assert [(r.key, r.value, list(r.headers)) for r in read] == [
        (b"k0", b"v0", []),
        (b"k1", b"v1", headers),
        (None, None, []),
        (b"k3", b"v3", headers[:1]),
        (b"k4", b"v4", []),
    ]
    assert read[1].timestamp == 1_700_000_000_000
    assert module._NO_HEADERS == []
