"""In-memory records for unit tests: what a processor reads, and what it wrote.

`FakeRecord` is a consumed record (`broker.consumer.Record`) built by keyword, so no test
depends on the order of aiokafka's `ConsumerRecord` fields. `written` reads an
`OutputBatch` through its public `records()`, and `read_back` turns what was written into
the records a consumer of that topic would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker.consumer import Record
from broker.producer import OutputBatch

__all__ = ["FakeRecord", "Written", "read_back", "written"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeRecord:
    """A consumed record (satisfies `broker.consumer.Record`). `timestamp` is in epoch ms."""

    topic: str
    partition: int = 0
    offset: int = 0
    timestamp: int = 1_000
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """One record of an `OutputBatch`, and the partition it was placed in."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp_ms: int | None


def written(out: OutputBatch, topic: str) -> list[Written]:
    """The records `out` holds for `topic`, by partition, then in the order added."""
    return [
        Written(
            topic=t,
            partition=p,
            key=key,
            value=value,
            headers=headers,
            timestamp_ms=ts_ms,
        )
        for t, p, (key, value, headers, ts_ms) in out.records()
        if t == topic
    ]


def read_back(out: OutputBatch, topic: str, *, timestamp: int = 1_000) -> list[Record]:
    """The records of `topic` in `out` as a consumer would read them back from an empty
    topic: offsets count from 0 in each partition."""
    offsets: dict[int, int] = {}
    records: list[Record] = []
    for w in written(out, topic):
        offset = offsets.get(w.partition, 0)
        offsets[w.partition] = offset + 1
        records.append(
            FakeRecord(
                topic=topic,
                partition=w.partition,
                offset=offset,
                timestamp=w.timestamp_ms if w.timestamp_ms is not None else timestamp,
                key=w.key,
                value=w.value,
                headers=w.headers,
            )
        )
    return records
