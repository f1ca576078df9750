"""broker/fetched.py against aiokafka's own reader: the same records, the same positions.

Record batches are built with aiokafka's batch builder (the bytes a broker returns in a
fetch): plain and transactional data, commit and abort markers, offsets missing from a batch
(compaction), a fetch position inside a batch, headers, null keys and values. Each is read
by aiokafka's `PartitionRecords` and by `FetchedRecords` over a `PartitionRecords` of its
own, in the same steps, and every record and every `next_fetch_offset` must agree.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer.fetcher import FetchError, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import fetched
from broker.consumer import Record
from broker.fetched import MIRRORED_VERSION, ConsumedRecord, FetchedRecords

TP = TopicPartition("dcc.sr.inbound", 3)
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
_CRC_OFFSET, _ATTRIBUTES_OFFSET, _CONTROL = 17, 21, 0x20


@dataclass(frozen=True)
class Batch:
    """One record batch: its base offset, the offset deltas of the records it still holds,
    and what they are."""

    base: int
    deltas: tuple[int, ...]
    keys: tuple[bytes | None, ...]
    values: tuple[bytes | None, ...]
    headers: tuple[tuple[tuple[str, bytes], ...], ...]
    producer_id: int = -1
    control: int | None = None
    """0: an abort marker, 1: a commit marker (a control batch of the producer)."""


def encode(batch: Batch) -> bytes:
    """The batch as a broker sends it in a fetch response."""
    transactional = batch.producer_id >= 0
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(transactional),
        producer_id=batch.producer_id,
        producer_epoch=0 if transactional else -1,
        base_sequence=0 if transactional else -1,
        batch_size=1 << 20,
    )
    if batch.control is not None:
        builder.append(
            0, 1_700_000_000_000, struct.pack(">hh", 0, batch.control), b"\0\0\0\0\0\0", []
        )
    else:
        for delta, key, value, headers in zip(
            batch.deltas, batch.keys, batch.values, batch.headers, strict=True
        ):
            builder.append(delta, 1_700_000_000_000 + delta, key, value, list(headers))
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, batch.base)
    if batch.control is not None:
        (attributes,) = struct.unpack_from(">h", data, _ATTRIBUTES_OFFSET)
        struct.pack_into(">h", data, _ATTRIBUTES_OFFSET, attributes | _CONTROL)
        struct.pack_into(">I", data, _CRC_OFFSET, calc_crc32c(bytes(data[_ATTRIBUTES_OFFSET:])))
    return bytes(data)


def source(
    data: bytes, aborted: list[tuple[int, int]], fetch_offset: int, isolation: int
) -> PartitionRecords:
    return PartitionRecords(
        TP, MemoryRecords(data), aborted, fetch_offset, None, None, True, isolation
    )


def fields(rec: Record) -> tuple[object, ...]:
    return (
        rec.topic,
        rec.partition,
        rec.offset,
        rec.timestamp,
        rec.key,
        rec.value,
        tuple(rec.headers),
    )


def read_in_steps(records: object, steps: list[int]) -> list[tuple[object, ...]]:
    """Read `records` (a PartitionRecords or FetchedRecords) as aiokafka's FetchResult does:
    `steps` records at a time with a `for` that stops early (its getall with max_records),
    then to the end, and never again once a `for` has run out; after each step, what was
    read and `next_fetch_offset`."""
    trace: list[tuple[object, ...]] = []
    for step in [*steps, -1]:
        got = []
        for rec in records:  # type: ignore[attr-defined]
            got.append(fields(rec))
            if len(got) == step:
                break
        else:
            trace.append((tuple(got), records.next_fetch_offset))  # type: ignore[attr-defined]
            return trace
        trace.append((tuple(got), records.next_fetch_offset))  # type: ignore[attr-defined]
    raise AssertionError("the last step reads to the end")


_bytes = st.none() | st.binary(max_size=12)
_header = st.tuples(st.text(max_size=6), st.binary(max_size=6))


@st.composite
def fetches(draw: st.DrawFn) -> tuple[list[Batch], list[tuple[int, int]], int]:
    """A fetch of one partition: its batches, the aborted transactions the broker lists,
    and the fetch position."""
    batches: list[Batch] = []
    offset = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["plain", "txn", "abort", "commit"]))
        producer_id = draw(st.integers(1, 3)) if kind != "plain" else -1
        if kind in ("abort", "commit"):
            batches.append(
                Batch(offset, (0,), (None,), (None,), ((),), producer_id, int(kind == "commit"))
            )
            offset += 1
            continue
        # Offset deltas with gaps, as compaction leaves them; the batch ends at the last.
        deltas = sorted(draw(st.sets(st.integers(0, 8), min_size=1, max_size=5)))
        n = len(deltas)
        batches.append(
            Batch(
                offset,
                tuple(deltas),
                tuple(draw(st.lists(_bytes, min_size=n, max_size=n))),
                tuple(draw(st.lists(_bytes, min_size=n, max_size=n))),
                tuple(tuple(draw(st.lists(_header, max_size=2))) for _ in range(n)),
                producer_id,
            )
        )
        offset += deltas[-1] + 1 + draw(st.integers(0, 2))
    aborted = sorted(
        draw(st.lists(st.tuples(st.integers(1, 3), st.integers(0, offset)), max_size=3)),
        key=lambda a: a[1],
    )
    return batches, aborted, draw(st.integers(0, max(0, offset - 1)))


@settings(max_examples=300, deadline=None)
@given(
    fetch=fetches(),
    isolation=st.sampled_from([READ_UNCOMMITTED, READ_COMMITTED]),
    steps=st.lists(st.integers(1, 4), max_size=4),
)
def test_the_fast_reader_reads_what_aiokafka_reads(
    fetch: tuple[list[Batch], list[tuple[int, int]], int], isolation: int, steps: list[int]
) -> None:
    batches, aborted, fetch_offset = fetch
    data = b"".join(encode(b) for b in batches)
    theirs = read_in_steps(source(data, list(aborted), fetch_offset, isolation), steps)
    ours = read_in_steps(
        FetchedRecords(source(data, list(aborted), fetch_offset, isolation)), steps
    )
    assert ours == theirs


def test_records_are_the_seven_fields_the_services_read() -> None:
    data = encode(Batch(40, (0, 1), (b"user", None), (b"{}", None), ((("a", b"1"),), ())))
    records = list(FetchedRecords(source(data, [], 0, READ_COMMITTED)))
    assert records == [
        ConsumedRecord(
            TP.topic, TP.partition, 40, 1_700_000_000_000, b"user", b"{}", (("a", b"1"),)
        ),
        ConsumedRecord(TP.topic, TP.partition, 41, 1_700_000_000_001, None, None, ()),
    ]
    record: Record = records[0]  # satisfies the services' Record
    assert record.headers == (("a", b"1"),)


def test_next_reads_one_record_as_aiokafka_getone_does() -> None:
    data = encode(Batch(0, (0, 1), (b"a", b"b"), (b"1", b"2"), ((), ())))
    reader = FetchedRecords(source(data, [], 0, READ_UNCOMMITTED))
    assert next(reader).key == b"a"
    assert reader.next_fetch_offset == 1
    assert next(reader).key == b"b"
    assert next(reader, None) is None
    assert reader.next_fetch_offset == 2


def test_an_aborted_transaction_is_skipped_under_read_committed_only() -> None:
    data = encode(Batch(0, (0, 1), (b"a", b"b"), (b"1", b"2"), ((), ()), producer_id=7))
    data += encode(Batch(2, (0,), (None,), (None,), ((),), producer_id=7, control=0))
    data += encode(Batch(3, (0,), (b"c",), (b"3",), ((),)))
    committed = list(FetchedRecords(source(data, [(7, 0)], 0, READ_COMMITTED)))
    assert [r.offset for r in committed] == [3]
    everything = list(FetchedRecords(source(data, [(7, 0)], 0, READ_UNCOMMITTED)))
    assert [r.offset for r in everything] == [0, 1, 3]


def _corrupt(data: bytes) -> bytes:
    spoiled = bytearray(data)
    spoiled[-1] ^= 0xFF
    return bytes(spoiled)


def test_a_bad_crc_raises_like_aiokafka() -> None:
    data = _corrupt(encode(Batch(0, (0,), (b"k",), (b"v",), ((),))))
    with pytest.raises(CorruptRecordException):
        list(source(data, [], 0, READ_UNCOMMITTED))
    with pytest.raises(CorruptRecordException):
        list(FetchedRecords(source(data, [], 0, READ_UNCOMMITTED)))


def _header_name_not_utf8() -> bytes:
    data = bytearray(encode(Batch(0, (0, 1), (b"a", b"b"), (b"1", b"2"), ((), (("ZZ", b"x"),)))))
    at = data.index(b"ZZ")
    data[at : at + 2] = b"\xff\xfe"
    struct.pack_into(">I", data, _CRC_OFFSET, calc_crc32c(bytes(data[_ATTRIBUTES_OFFSET:])))
    return bytes(data)


def test_an_unreadable_record_raises_where_aiokafka_raises() -> None:
    # broker/consumer.py's read-around relies on this: the error comes out of the
    # fetch, after the records before it, and the position has not moved past it.
    data = _header_name_not_utf8()
    for records in (
        source(data, [], 0, READ_UNCOMMITTED),
        FetchedRecords(source(data, [], 0, READ_UNCOMMITTED)),
    ):
        assert next(records).offset == 0
        with pytest.raises(UnicodeDecodeError):
            next(records)
        assert records.next_fetch_offset == 1


class _Fetcher:
    def __init__(self) -> None:
        self._records: collections.OrderedDict[TopicPartition, Any] = collections.OrderedDict()


class _Consumer:
    def __init__(self) -> None:
        self._fetcher = _Fetcher()


class _PartitionState:
    """What FetchResult reads of aiokafka's state of an assigned partition."""

    def __init__(self) -> None:
        self.position = 0
        self.paused = False

    def consumed_to(self, position: int) -> None:
        self.position = position


class _Assignment:
    active = True

    def __init__(self) -> None:
        self.state = _PartitionState()

    def state_value(self, tp: TopicPartition) -> _PartitionState:
        return self.state


def _result(partition_records: object) -> FetchResult:
    return FetchResult(TP, assignment=_Assignment(), partition_records=partition_records, backoff=0)


def test_install_reads_every_new_fetch_with_the_fast_reader() -> None:
    consumer = _Consumer()
    data = encode(Batch(0, (0,), (b"k",), (b"v",), ((),)))
    assert fetched.install(consumer)
    buffered = consumer._fetcher._records
    assert fetched.install(consumer)  # twice: the same buffer
    assert consumer._fetcher._records is buffered
    buffered[TP] = _result(source(data, [], 0, READ_UNCOMMITTED))
    result = buffered[TP]
    assert isinstance(result, FetchResult)
    assert type(result._partition_records) is FetchedRecords
    assert [r.offset for r in result.getall(10)] == [0]
    assert result._assignment.state.position == 1
    assert not result.has_more()
    # Errors are stored as they are; a fetch someone already read from is left alone.
    other = TopicPartition(TP.topic, 4)
    buffered[other] = FetchError(error=CorruptRecordException("x"), backoff=0)
    assert type(buffered[other]) is FetchError
    started = source(data, [], 0, READ_UNCOMMITTED)
    next(started)
    buffered[TP] = _result(started)
    assert buffered[TP]._partition_records is started


def test_install_changes_nothing_on_another_aiokafka(monkeypatch: pytest.MonkeyPatch) -> None:
    assert aiokafka.__version__ == MIRRORED_VERSION  # pyproject.toml pins it: update both
    monkeypatch.setattr(aiokafka, "__version__", "0.15.0")
    consumer = _Consumer()
    assert not fetched.install(consumer)
    assert type(consumer._fetcher._records) is collections.OrderedDict
