"""Batched producing: build record batches per partition, send them, await all acks once.

The hot path never awaits a future per record: records are appended to one record-batch
builder per (topic, partition) and the whole set is sent and awaited together by
`BatchProducer.send()`. Keys are placed with Kafka's murmur2 partitioner (the same as the
Java client and aiokafka's default), computed in C.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)
from murmurhash2 import murmurhash2

from broker.errors import BrokerError, DeliveryError, FencedError
from broker.settings import KafkaSettings

__all__ = [
    "BatchProducer",
    "Headers",
    "OutputBatch",
    "OutputRecord",
    "PartitionRecords",
    "partition_for_key",
]

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]

_MURMUR2_SEED = 0x9747B28C

OutputRecord = tuple[bytes | None, bytes | None, Headers, int | None]
"""(key, value, headers, timestamp_ms) of one output record, kept until acknowledged."""

PartitionRecords = dict[tuple[str, int], list[OutputRecord]]
"""Output records by (topic, partition), in the order they are sent."""

_NO_HEADERS: list[tuple[str, bytes]] = []
"""The headers of every record that has none, as aiokafka's C batch builder takes them (a
list, which it only reads; never appended to)."""

# Errors after which a transactional producer can never write again: another producer
# with the same transactional id has started (a new owner of the input partition).
_FENCED_ERRORS = (ProducerFenced, OutOfOrderSequenceNumber, TransactionalIdAuthorizationFailed)


def partition_for_key(key: bytes, partitions: int) -> int:
    """Kafka's default partition for `key` among `partitions` (murmur2, as the Java client)."""
    return (murmurhash2(key, _MURMUR2_SEED) & 0x7FFFFFFF) % partitions


class OutputBatch:
    """The output records of one input batch, grouped by (topic, partition).

    Fill it with `add()`, then hand it to `BatchProducer.send()`. Records are kept until
    they are acknowledged, so a partition whose send failed can be sent again without
    processing the input again.
    """

    __slots__ = ("_lists", "_partitions", "_round_robin")

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions
        # topic -> one list of records per partition
        self._lists: dict[str, list[list[OutputRecord]]] = {}
        self._round_robin = itertools.count()

    def __len__(self) -> int:
        return sum(len(p) for parts in self._lists.values() for p in parts)

    @property
    def counts(self) -> dict[str, int]:
        """Records added per topic."""
        return {t: sum(len(p) for p in parts) for t, parts in self._lists.items()}

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Add one record. `partition` defaults to the key's murmur2 partition (round robin
        for a null key); `timestamp_ms` to the time the batch is sent.

        This is a hot path: the partitioner is inlined.
        """
        parts = self._lists.get(topic)
        if parts is None:
            parts = self.partition_lists(topic)
        if partition is None:
            if key is not None:
                partition = (murmurhash2(key, _MURMUR2_SEED) & 0x7FFFFFFF) % len(parts)
            else:
                partition = next(self._round_robin) % len(parts)
        parts[partition].append((key, value, headers, timestamp_ms))

    def partition_lists(self, topic: str) -> list[list[OutputRecord]]:
        """The per-partition record lists of `topic`, for a hot loop that places records
        itself: append `(key, value, headers, timestamp_ms)` to
        `lists[partition_for_key(key, len(lists))]`. Same effect as `add()`, without a
        method call per record."""
        parts = self._lists.get(topic)
        if parts is None:
            n = self._partitions.get(topic)
            if n is None:
                raise BrokerError(
                    f"topic {topic} was not prepared on this producer; call prepare()"
                )
            parts = self._lists[topic] = [[] for _ in range(n)]
        return parts

    def records(self) -> Iterator[tuple[str, int, OutputRecord]]:
        """Every record added so far as (topic, partition, record): by topic in the order
        first added to, then by partition, then in the order added. The batch keeps them
        (for tests and diagnostics; the hot path never reads a batch back)."""
        for topic, parts in self._lists.items():
            for partition, records in enumerate(parts):
                for record in records:
                    yield topic, partition, record

    def take(self) -> PartitionRecords:
        """Hand over the records by (topic, partition) and empty the batch (for a
        transaction, which sends several batches' records together)."""
        return self._take()

    def _take(self) -> PartitionRecords:
        """Hand over the records by (topic, partition) and empty the batch."""
        taken = {
            (topic, p): records
            for topic, parts in self._lists.items()
            for p, records in enumerate(parts)
            if records
        }
        self._lists = {}
        return taken


class BatchProducer:
    """An aiokafka producer that sends whole `OutputBatch`es.

    Use `async with BatchProducer(settings) as p:`; `await p.prepare(topics)` before the
    first batch so partition counts are known.

    With `transactional_id`, the producer is transactional (idempotent, acks=all) and
    sends only inside `transact()`, which writes records and commits input offsets in one
    transaction (broker/transactions.py says who gets which id).
    """

    def __init__(self, settings: KafkaSettings, *, transactional_id: str | None = None) -> None:
        self._settings = settings
        self.transactional_id = transactional_id
        self._producer = self._new_client()
        self._partitions: dict[str, int] = {}

    def _new_client(self) -> AIOKafkaProducer:
        kwargs = self._settings.producer_kwargs()
        if self.transactional_id is not None:
            kwargs.update(
                transactional_id=self.transactional_id,
                enable_idempotence=True,
                acks="all",
                transaction_timeout_ms=self._settings.transaction_timeout_ms,
            )
        return AIOKafkaProducer(**kwargs)

    async def start(self) -> None:
        """Connect to the cluster."""
        try:
            await self._producer.start()
        except KafkaError as exc:
            # A client that failed to start still holds connections: close them.
            with contextlib.suppress(Exception):
                await self._producer.stop()
            raise BrokerError(
                f"cannot connect a producer to {self._settings.bootstrap}: {exc}"
            ) from exc

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        await self._producer.stop()

    async def __aenter__(self) -> BatchProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def prepare(self, topics: Iterable[str]) -> None:
        """Learn the partition count of each topic (needed before `add()` with a key)."""
        for topic in topics:
            parts = await self._producer.partitions_for(topic)
            if not parts:
                raise BrokerError(f"topic {topic} has no partitions on the cluster")
            self._partitions[topic] = len(parts)

    def partitions(self, topic: str) -> int:
        """The partition count learned by `prepare()`."""
        return self._partitions[topic]

    def adopt(self, partitions: Mapping[str, int]) -> None:
        """Take partition counts another producer learned (no metadata round trip)."""
        self._partitions.update(partitions)

    @property
    def partition_counts(self) -> dict[str, int]:
        """Partition count per prepared topic."""
        return dict(self._partitions)

    def batch(self) -> OutputBatch:
        """A new, empty output batch."""
        return OutputBatch(self._partitions)

    def _builders(self, topic: str, records: list[OutputRecord]) -> list[Any]:
        """Record batches for one partition, filled in order.

        Appends go straight to aiokafka's C batch builder: its Python wrapper doubles the
        cost of an append (0.69 against 0.35 us, docs/benchmarks.md), and the router appends
        twice per request. The wrapper's only other state, its record count, is set after.
        """
        builders = []
        builder = self._producer.create_batch()
        append = builder._builder.append
        n = 0
        for key, value, headers, ts_ms in records:
            # The C append takes a list only; most records have no headers, and share one
            # empty list rather than allocate their own (it only reads it).
            hdrs = headers if type(headers) is list else list(headers) if headers else _NO_HEADERS
            if append(n, ts_ms, key, value, hdrs) is None:
                builder._relative_offset = n
                builders.append(builder)
                builder = self._producer.create_batch()
                append = builder._builder.append
                n = 0
                if append(n, ts_ms, key, value, hdrs) is None:
                    raise BrokerError(
                        f"a record of {len(value or b'')} bytes does not fit in an empty "
                        f"batch for {topic}; raise max_batch_bytes"
                    )
            n += 1
        builder._relative_offset = n
        builders.append(builder)
        return builders

    async def send(self, batch: OutputBatch) -> None:
        """Send every record of `batch` and wait until the broker has acknowledged all.

        A partition whose send fails is sent again (its records only, not the whole batch)
        with backoff, for up to `delivery_timeout_s`; then DeliveryError is raised and the
        caller must not commit its input offsets.
        """
        await self._send_records(
            batch._take(), time.monotonic() + self._settings.delivery_timeout_s
        )

    async def _send_records(self, pending: PartitionRecords, deadline: float) -> None:
        backoff_s = 0.1
        while pending:
            failed: dict[tuple[str, int], list[OutputRecord]] = {}
            errors: list[BaseException] = []
            futures: list[tuple[tuple[str, int], asyncio.Future[Any]]] = []
            for tp, records in pending.items():
                topic, partition = tp
                try:
                    for builder in self._builders(topic, records):
                        fut = await self._producer.send_batch(builder, topic, partition=partition)
                        futures.append((tp, fut))
                except KafkaError as exc:
                    failed[tp] = records
                    errors.append(exc)
            results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
            for (tp, _), result in zip(futures, results, strict=True):
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError | FencedError):
                        raise result
                    if isinstance(result, _FENCED_ERRORS):
                        raise self._fenced(result) from result
                    failed[tp] = pending[tp]
                    errors.append(result)
            if not failed:
                return
            if time.monotonic() + backoff_s > deadline:
                raise DeliveryError(
                    f"{sum(len(r) for r in failed.values())} records to "
                    f"{sorted({t for t, _ in failed})} not acknowledged within "
                    f"{self._settings.delivery_timeout_s:.0f} s: {errors[-1]!r}"
                )
            log.warning(
                "resending %d partitions after %r (retrying for up to %.0f s more)",
                len(failed),
                errors[-1],
                deadline - time.monotonic(),
            )
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 2.0)
            pending = failed

    # --- transactions (only with a transactional_id) -------------------------------------

    def _fenced(self, exc: BaseException) -> FencedError:
        if isinstance(exc, TransactionalIdAuthorizationFailed):
            return FencedError(
                f"transactional id {self.transactional_id} is not allowed for this client "
                "(no WRITE ACL on the TransactionalId): grant it, or run with "
                "DCCGATE_EXACTLY_ONCE=off"
            )
        return FencedError(
            f"transactional id {self.transactional_id} was taken over by another producer "
            f"({type(exc).__name__}): another worker owns its input partition now"
        )

    def _fenced_cause(self) -> BaseException | None:
        """The fencing error that stopped this client's sender, if that is what happened
        (aiokafka ends its sender task on one and fails everything pending with it)."""
        sender = getattr(self._producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        if task is None or not task.done() or task.cancelled():
            return None
        exc = task.exception()
        return exc if isinstance(exc, _FENCED_ERRORS) else None

    async def init_transactions(self) -> None:
        """Register the transactional id with the cluster (InitProducerId), within
        `request_timeout_ms`: the coordinator first finishes any transaction a previous
        holder of the id left open (aborts it, unless it was being committed) and fences
        that holder for good. Raise BrokerError if the cluster does not answer."""
        timeout_s = self._settings.request_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                # An empty transaction: begin waits for the producer id; abort ends it
                # without a request, since nothing was added to it.
                await self._producer.begin_transaction()
                await self._producer.abort_transaction()
        except _FENCED_ERRORS as exc:
            raise self._fenced(exc) from exc
        except (KafkaError, TimeoutError) as exc:
            raise BrokerError(
                f"transactional id {self.transactional_id}: no producer id from "
                f"{self._settings.bootstrap} within {timeout_s:.0f} s ({exc!r}); does the "
                "cluster support transactions?"
            ) from exc

    async def renew(self) -> None:
        """Replace the client with a new one under the same transactional id. Its
        InitProducerId bumps the epoch, which makes the coordinator abort whatever the old
        client left open, whatever state aiokafka believes it is in (after an abortable
        error aiokafka forgets the transaction's partitions, and its abort then sends
        nothing)."""
        old = self._producer
        self._producer = self._new_client()
        try:
            await asyncio.wait_for(old.stop(), timeout=5)
        except Exception as exc:  # the old client is being thrown away whatever it says
            log.debug("closing a failed transactional producer: %r", exc)
        await self.start()
        await self.init_transactions()

    async def transact(
        self,
        records: PartitionRecords,
        offsets: Mapping[TopicPartition, int],
        group_id: str,
        follow_up: Callable[[], list[PartitionRecords]] | None = None,
    ) -> None:
        """Write `records`, then the stages `follow_up()` returns (called once, after
        `records` are acknowledged), and commit `offsets` for `group_id`, all in one
        transaction: a read_committed reader sees all of it or none of it.

        A transaction that fails is aborted (by renewing the producer) and tried again
        with the same records, with backoff, for up to `delivery_timeout_s`; then
        DeliveryError, and nothing of it is ever visible. FencedError when another
        producer took the transactional id over: nothing more may be written for it.
        """
        if self.transactional_id is None:
            raise BrokerError("transact() needs a producer made with a transactional_id")
        deadline = time.monotonic() + self._settings.delivery_timeout_s
        stages: list[PartitionRecords] | None = None
        commit = {tp: offset for tp, offset in offsets.items()}
        backoff_s = 0.1
        while True:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._producer.begin_transaction()
                    # _send_records keeps its input: a retry sends the same records.
                    await self._send_records(dict(records), deadline)
                    if stages is None:
                        stages = follow_up() if follow_up is not None else []
                    for stage in stages:
                        await self._send_records(dict(stage), deadline)
                    if commit:
                        await self._producer.send_offsets_to_transaction(commit, group_id)
                    await self._producer.commit_transaction()
                return
            except FencedError:
                raise
            except _FENCED_ERRORS as exc:
                raise self._fenced(exc) from exc
            except (KafkaError, BrokerError, TimeoutError) as exc:
                failure: BaseException = exc
            fenced = self._fenced_cause()
            if fenced is not None:
                # Never renew after a fence: that would fence the partition's new owner in
                # turn, and this worker's stale batch could then be committed over its work.
                raise self._fenced(fenced) from failure
            if time.monotonic() + backoff_s > deadline:
                raise DeliveryError(
                    f"transaction of {sum(len(r) for r in records.values())} records on "
                    f"{self.transactional_id} not committed within "
                    f"{self._settings.delivery_timeout_s:.0f} s: {failure!r}"
                ) from failure
            log.warning(
                "transaction on %s failed (%r): aborting it and trying again",
                self.transactional_id,
                failure,
            )
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 2.0)
            try:
                await self.renew()
            except FencedError:
                raise
            except BrokerError as exc:
                log.warning("renewing %s failed: %s", self.transactional_id, exc)

    async def send_one(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Headers = ()
    ) -> tuple[int, int]:
        """Send one record and wait for its ack (for control paths, never the hot path).

        Returns its (partition, offset).
        """
        try:
            meta = await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))
        except KafkaError as exc:
            raise DeliveryError(f"record to {topic} not acknowledged: {exc}") from exc
        return int(meta.partition), int(meta.offset)
