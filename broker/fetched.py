"""Fetched records read without aiokafka's per-record Python work.

aiokafka hands out each fetched record through a Python `__next__`, a generator step, a
method call and a ten-field dataclass (`ConsumerRecord`): about 1.2 µs a record, of which
the C parse and the CRC check are 0.45. That is the largest per-record cost of the services'
loop outside the processors (docs/benchmarks.md, "Router against a plain pass-through
loop"). `install(consumer)` makes one consumer read every fetch it buffers with
`FetchedRecords` instead: aiokafka's own batch-level logic, line for line (CRC check, aborted
transactions skipped under read_committed, control batches skipped, offsets before the
fetch position skipped, the position after each record and batch), in one generator that
the caller's `for` drives from C, yielding `ConsumedRecord`s: the seven fields the services
read (`broker.consumer.Record`), built in C by msgspec.

It mirrors aiokafka `MIRRORED_VERSION` (the version pyproject.toml pins); on any other
version `install` leaves the consumer as it is, and tests/unit/broker/test_fetched.py
compares both readers record by record and position by position on the pinned one.
"""

from __future__ import annotations

import collections
import inspect
import logging
from collections.abc import Generator
from typing import Any

import aiokafka
import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException

__all__ = ["MIRRORED_VERSION", "ConsumedRecord", "FetchedRecords", "install"]

log = logging.getLogger(__name__)

MIRRORED_VERSION = "0.14.0"
"""The aiokafka release whose `PartitionRecords._unpack_records` this module mirrors."""


class ConsumedRecord(msgspec.Struct, frozen=True, gc=False):
    """A consumed record: a `broker.consumer.Record`. Positional (built once per record in
    the hot loop) and untracked by the garbage collector (`gc=False`: its fields are str,
    int, bytes and a tuple of (str, bytes), which can never form a reference cycle)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    """Epoch milliseconds (the producer's time, or the broker's on append)."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class FetchedRecords:
    """Stands in for aiokafka's `PartitionRecords` of one fetch of one partition: what
    `FetchResult` uses of it (`next_fetch_offset`, iteration, `next()`), reading the same
    record batches, in the same way, into `ConsumedRecord`s."""

    __slots__ = ("_gen", "_source", "next_fetch_offset")

    def __init__(self, source: Any) -> None:
        self._source = source
        self.next_fetch_offset: int = source.next_fetch_offset
        self._gen = self._read()

    def __iter__(self) -> Generator[ConsumedRecord, None, None]:
        # The generator itself, so a `for` over this object steps it from C; a later `for`
        # (aiokafka's getall stops at max_records and comes back) continues where it was.
        return self._gen

    def __next__(self) -> ConsumedRecord:
        return next(self._gen)

    def _read(self) -> Generator[ConsumedRecord, None, None]:
        # aiokafka 0.14.0's PartitionRecords._unpack_records with the per-record work inlined;
        # the batch-level steps are the same, in the same order, on the same state.
        source = self._source
        tp = source._tp
        topic, partition = tp.topic, tp.partition
        records = source._records
        check_crcs = source._check_crcs
        read_committed = source._isolation_level == READ_COMMITTED
        make = ConsumedRecord
        while records.has_next():
            batch = records.next_batch()
            if check_crcs and not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            if read_committed and batch.producer_id is not None:
                source._consume_aborted_up_to(batch.base_offset)
                if batch.is_control_batch and source._contains_abort_marker(batch):
                    source._aborted_producers.discard(batch.producer_id)
                if batch.is_transactional and batch.producer_id in source._aborted_producers:
                    self.next_fetch_offset = batch.next_offset
                    continue
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            for record in batch:
                offset = record.offset
                if offset < self.next_fetch_offset:  # before the fetch position (compaction)
                    continue
                self.next_fetch_offset = offset + 1
                yield make(
                    topic,
                    partition,
                    offset,
                    record.timestamp,
                    record.key,
                    record.value,
                    tuple(record.headers),
                )
            # The batch's own end: past records compaction removed from its tail.
            self.next_fetch_offset = batch.next_offset


def _fresh(source: Any) -> bool:
    """True for an aiokafka PartitionRecords no one has read from yet, with no
    deserializers (a reader of bytes, as every dccgate consumer is)."""
    return (
        type(source) is PartitionRecords
        and source._key_deserializer is None
        and source._value_deserializer is None
        and inspect.getgeneratorstate(source._records_iterator) == inspect.GEN_CREATED
    )


class _Buffered(collections.OrderedDict[Any, Any]):
    """A fetcher's buffer of fetched partitions whose new fetches are read by
    `FetchedRecords` (once per fetch of a partition, not per record)."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        if type(result) is FetchResult and _fresh(result._partition_records):
            result._partition_records = FetchedRecords(result._partition_records)
        super().__setitem__(tp, result)


def install(consumer: AIOKafkaConsumer) -> bool:
    """Read the fetches of started `consumer` with `FetchedRecords` from now on; return
    False, changing nothing, on an aiokafka release other than `MIRRORED_VERSION` or one
    whose consumer is not built the way this module expects."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    buffered = getattr(fetcher, "_records", None)
    if type(buffered) is _Buffered:  # installed already
        return True
    if aiokafka.__version__ != MIRRORED_VERSION or type(buffered) is not collections.OrderedDict:
        log.info(
            "aiokafka %s: fetched records are read by aiokafka itself (the fast reader mirrors %s)",
            aiokafka.__version__,
            MIRRORED_VERSION,
        )
        return False
    fetcher._records = _Buffered(buffered)
    return True
