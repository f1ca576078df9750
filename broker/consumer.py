"""Consuming in batches with manual commits, and a rebalance that waits for the batch.

`BatchConsumer.batch()` holds a lock while a batch is processed; the rebalance listener
takes the same lock before it gives partitions up. So a partition is never handed to
another worker between the produce of a batch's outputs and the commit of its offsets.
It takes the lock on assignment as well, so the `on_assign` hook (which restores the state
of the new partitions) finishes before any of their records is decided.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from broker import fetched
from broker.errors import BrokerError
from broker.settings import KafkaSettings

__all__ = [
    "BatchConsumer",
    "Record",
    "TopicPartition",
    "UnreadableRecord",
    "readable_end",
    "start_offsets_at",
]

log = logging.getLogger(__name__)


class Record(Protocol):
    """A consumed record: what the services read of a fetched record.

    `BatchConsumer` hands out `broker.fetched.ConsumedRecord`s (aiokafka's `ConsumerRecord`
    on an aiokafka release the fast reader does not mirror, and from other consumers);
    this names the attributes the code relies on. `timestamp` is in epoch milliseconds
    (the producer's time, or the broker's on append); `value` is None for a tombstone.
    Read-only, so a frozen dataclass satisfies it too (the unit tests' in-memory records).
    """

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


PartitionsHook = Callable[[frozenset[TopicPartition]], Awaitable[None]]


@dataclass(frozen=True)
class UnreadableRecord:
    """Where a record was that the client could not read, and why: a `Record` with no key,
    value or headers, for the dead-letter topic to say what was skipped."""

    topic: str
    partition: int
    offset: int
    reason: str
    timestamp: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


# What aiokafka raises when it cannot parse a fetched record (a header name that is not
# UTF-8 is decoded in the client and raises UnicodeDecodeError).
_UNREADABLE_ERRORS = (UnicodeDecodeError,)
_PROBE_WAIT_MS = 500
"""How long the search for an unreadable record waits for each partition's first fetch."""
_PROBE_RECORDS = 10_000
"""Records read one by one per partition in that search (the rest come with the next fetch)."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Wait for the batch in flight to be produced and committed before letting go.
        async with self._owner.lock:
            self._owner.assigned = frozenset()
            self._owner.generation += 1
            if self._owner.on_revoke is not None:
                await self._owner.on_revoke(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Under the lock too: records of the new partitions may already be fetched, and must
        # not be decided before the hook has restored their state.
        async with self._owner.lock:
            self._owner.assigned = frozenset(assigned)
            self._owner.generation += 1
            log.info("assigned %d partitions: %s", len(self._owner.assigned), sorted(assigned))
            if self._owner.on_assign is not None:
                await self._owner.on_assign(self._owner.assigned)


class BatchConsumer:
    """A consumer-group member that hands out batches and commits them explicitly.

    Parameters:
        settings: client settings.
        topics: topics to subscribe to.
        group_id: the consumer group; workers in one group share the partitions.
        on_assign / on_revoke: optional async hooks, called with the partitions.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Iterable[str],
        *,
        group_id: str,
        on_assign: PartitionsHook | None = None,
        on_revoke: PartitionsHook | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._consumer = AIOKafkaConsumer(group_id=group_id, **settings.consumer_kwargs())
        self.lock = asyncio.Lock()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.generation = 0
        """Counts assignment changes (revocations and assignments): a batch fetched under
        one generation and decided under another may start before the committed offset the
        group now reads from, so it would be decided twice (see workers/runtime/loop.py)."""
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.unreadable: list[UnreadableRecord] = []

    async def start(self) -> None:
        """Connect and subscribe; the group assigns partitions on the first fetch."""
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise BrokerError(
                f"cannot connect a consumer to {self._settings.bootstrap}: {exc}"
            ) from exc
        # Records come out of each fetch as ConsumedRecord, read without aiokafka's
        # per-record Python work (broker/fetched.py: 1.2 -> 0.5 µs a record).
        fetched.install(self._consumer)
        self._consumer.subscribe(self._topics, listener=_Listener(self))

    async def stop(self) -> None:
        """Leave the group and disconnect."""
        await self._consumer.stop()

    async def __aenter__(self) -> BatchConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Record]]:
        """Up to `max_records` records, waiting at most `timeout_ms` for the first.

        A record the client cannot even read (aiokafka decodes header names as UTF-8 and
        raises on one that is not) would fail every fetch of its partition, for this worker
        and every worker after it. It is skipped instead: the partition is read one record
        at a time to find it, the position moves past it, and it is kept in `unreadable`
        (`take_unreadable()`) for the caller to dead-letter and commit past. The records
        read meanwhile are returned as usual.
        """
        try:
            result: dict[TopicPartition, list[Record]] = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
        except _UNREADABLE_ERRORS as exc:
            return await self._read_around(exc)
        return result

    async def _read_around(self, exc: Exception) -> dict[TopicPartition, list[Record]]:
        consumer = self._consumer
        tps = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        # The failed parse left the client's buffered records unusable: drop them, and read
        # each partition again one record at a time, up to the one that cannot be read.
        for tp in tps:
            consumer.seek(tp, await consumer.position(tp))
        found: dict[TopicPartition, list[Record]] = {}
        for tp in tps:
            wait_ms = _PROBE_WAIT_MS
            for _ in range(_PROBE_RECORDS):
                try:
                    one = await consumer.getmany(tp, timeout_ms=wait_ms, max_records=1)
                except _UNREADABLE_ERRORS as bad:
                    offset = await consumer.position(tp)
                    reason = f"unreadable_record: {type(bad).__name__}: {str(bad)[:200]}"
                    log.error(
                        "%s/%d offset %d cannot be read and is skipped: %s",
                        tp.topic, tp.partition, offset, reason,
                    )  # fmt: skip
                    self.unreadable.append(UnreadableRecord(tp.topic, tp.partition, offset, reason))
                    consumer.seek(tp, offset + 1)
                    break
                if not one:
                    break
                wait_ms = 0
                for part, records in one.items():
                    found.setdefault(part, []).extend(records)
        if not found and not self.unreadable:
            log.warning("a fetch failed (%s) and no record could be blamed; fetching again", exc)
        return found

    def take_unreadable(self) -> list[UnreadableRecord]:
        """The records skipped as unreadable since the last call."""
        taken, self.unreadable = self.unreadable, []
        return taken

    def highwaters(self) -> dict[TopicPartition, int]:
        """The high watermark of each assigned partition (the offset the next record written
        to it will get), as the latest fetch of that partition returned it; partitions not
        fetched since their assignment are absent. Read from the consumer's own state, no
        request to the broker, so it costs nothing on the hot path and holds on every broker
        that answers fetches (unlike ListOffsets "latest", see docs/operations.md)."""
        consumer = self._consumer
        found: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                found[tp] = high
        return found

    def set_paused(self, paused: bool) -> None:
        """Pause (or resume) fetching from every assigned partition. Paused, `getmany`
        returns nothing but the consumer stays in its group (heartbeats and polls go on),
        so a worker whose queue is full applies backpressure into Kafka instead of dropping.
        Partitions assigned later while paused are paused at the next call."""
        consumer = self._consumer
        if paused:
            assigned = consumer.assignment()
            if assigned and not assigned <= consumer.paused():
                consumer.pause(*assigned)
                log.debug("input paused: a queue is full (backpressure)")
        elif consumer.paused():
            consumer.resume(*consumer.paused())
            log.debug("input resumed")

    async def rewind_to_committed(self, partitions: Iterable[TopicPartition]) -> None:
        """Read `partitions` again from their committed offsets, fetched now.

        aiokafka fetches the committed offsets of new partitions before the assignment hook
        runs; with transactions that may be before the hook has fenced the previous owner
        and so settled the transaction it left (broker/transactions.py). Partitions with no
        committed offset keep their position (`auto_offset_reset`)."""
        consumer = self._consumer
        try:
            for tp in partitions:
                committed = await consumer.committed(tp)
                if committed is not None and committed >= 0:
                    consumer.seek(tp, committed)
        except KafkaError as exc:
            raise BrokerError(
                f"cannot read the committed offsets of {self._topics}: {exc}"
            ) from exc

    async def refetch(self, batch: Mapping[TopicPartition, Sequence[Record]]) -> None:
        """Read the records of `batch` again (a batch handed out but not decided).

        Each partition still assigned goes back to the batch's first offset, unless its
        position is already at or before it (the group reset it to the committed offset
        since the batch was fetched): never forward, so nothing is skipped."""
        consumer = self._consumer
        assigned = consumer.assignment()
        try:
            for tp, records in batch.items():
                if records and tp in assigned:
                    position = await consumer.position(tp)
                    consumer.seek(tp, min(position, records[0].offset))
        except KafkaError as exc:
            raise BrokerError(f"cannot move back on {self._topics}: {exc}") from exc

    @property
    def group_id(self) -> str:
        """The consumer group."""
        group: str = self._consumer._group_id
        return group

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit `offsets` (the next offset to read per partition).

        Returns False, with a warning, if the group has moved on (this worker lost the
        partitions): the new owner then processes the batch again, which is the documented
        duplicate window.
        """
        try:
            await self._consumer.commit(dict(offsets))
        except CommitFailedError as exc:
            log.warning("commit refused after a rebalance, batch will be redone: %s", exc)
            return False
        return True


def readable_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The offset up to which `consumer` can read `tp` now, as its latest fetch said: the
    last stable offset when reading read_committed (a transaction still open holds back
    what follows its first record), else the high watermark; None before any fetch."""
    highwater: int | None = consumer.highwater(tp)
    if highwater is None:
        return None
    stable: int | None = consumer.last_stable_offset(tp)
    if stable is None or stable < 0:  # read_uncommitted, or a broker that does not say
        return highwater
    return min(stable, highwater)


async def start_offsets_at(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], timestamp_ms: int
) -> dict[TopicPartition, int]:
    """The first offset per partition of records written at or after `timestamp_ms`.

    Uses ListOffsets by time, which Apache Kafka answers from record timestamps; the
    embedded broker answers from its storage objects' times, which is close enough when the
    caller filters what it reads (as `dccgate send` does). Partitions with nothing that
    recent start at their end offset.
    """
    tps = list(partitions)
    found = await consumer.offsets_for_times(dict.fromkeys(tps, timestamp_ms))
    out: dict[TopicPartition, int] = {}
    missing = []
    for tp in tps:
        hit = found.get(tp)
        if hit is None:
            missing.append(tp)
        else:
            out[tp] = hit.offset
    if missing:
        ends = await consumer.end_offsets(missing)
        out.update(ends)
    return out
