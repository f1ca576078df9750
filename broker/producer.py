"""Batched producing: build record batches per partition, send them, await all acks once.

The hot path never awaits a future per record: records are appended to one record-batch
builder per (topic, partition) and the whole set is sent and awaited together by
`BatchProducer.send()`. Keys are placed with Kafka's murmur2 partitioner (the same as the
Java client and aiokafka's default), computed in C.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from murmurhash2 import murmurhash2

from broker.errors import BrokerError, DeliveryError
from broker.settings import KafkaSettings

__all__ = ["BatchProducer", "Headers", "OutputBatch", "partition_for_key"]

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]

_MURMUR2_SEED = 0x9747B28C

# (key, value, headers, timestamp_ms) of one output record, kept until acknowledged.
_Record = tuple[bytes | None, bytes | None, Headers, int | None]


def partition_for_key(key: bytes, partitions: int) -> int:
    """Kafka's default partition for `key` among `partitions` (murmur2, as the Java client)."""
    return (murmurhash2(key, _MURMUR2_SEED) & 0x7FFFFFFF) % partitions


class OutputBatch:
    """The output records of one input batch, grouped by (topic, partition).

    Fill it with `add()`, then hand it to `BatchProducer.send()`. Records are kept until
    they are acknowledged, so a partition whose send failed can be sent again without
    processing the input again. `counts` holds the number of records per topic.
    """

    __slots__ = ("_partitions", "_records", "_round_robin", "counts")

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions
        self._records: dict[tuple[str, int], list[_Record]] = {}
        self._round_robin = itertools.count()
        self.counts: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(self.counts.values())

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Add one record. `partition` defaults to the key's murmur2 partition (round robin
        for a null key); `timestamp_ms` to the time the batch is sent."""
        if partition is None:
            try:
                n = self._partitions[topic]
            except KeyError:
                raise BrokerError(
                    f"topic {topic} was not prepared on this producer; call prepare()"
                ) from None
            partition = (
                partition_for_key(key, n) if key is not None else next(self._round_robin) % n
            )
        tp = (topic, partition)
        bucket = self._records.get(tp)
        if bucket is None:
            bucket = self._records[tp] = []
        bucket.append((key, value, headers, timestamp_ms))
        self.counts[topic] = self.counts.get(topic, 0) + 1


class BatchProducer:
    """An aiokafka producer that sends whole `OutputBatch`es.

    Use `async with BatchProducer(settings) as p:`; `await p.prepare(topics)` before the
    first batch so partition counts are known.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(**settings.producer_kwargs())
        self._partitions: dict[str, int] = {}

    async def start(self) -> None:
        """Connect to the cluster."""
        try:
            await self._producer.start()
        except KafkaError as exc:
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

    def batch(self) -> OutputBatch:
        """A new, empty output batch."""
        return OutputBatch(self._partitions)

    def _builders(self, topic: str, records: list[_Record]) -> list[Any]:
        builders = [self._producer.create_batch()]
        for key, value, headers, ts_ms in records:
            ts_s = None if ts_ms is None else ts_ms / 1000
            hdrs = list(headers)
            if builders[-1].append(timestamp=ts_s, key=key, value=value, headers=hdrs) is None:
                builders.append(self._producer.create_batch())
                if builders[-1].append(timestamp=ts_s, key=key, value=value, headers=hdrs) is None:
                    raise BrokerError(
                        f"a record of {len(value or b'')} bytes does not fit in an empty "
                        f"batch for {topic}; raise max_batch_bytes"
                    )
        return builders

    async def send(self, batch: OutputBatch) -> None:
        """Send every record of `batch` and wait until the broker has acknowledged all.

        A partition whose send fails is sent again (its records only, not the whole batch)
        with backoff, for up to `delivery_timeout_s`; then DeliveryError is raised and the
        caller must not commit its input offsets.
        """
        pending = batch._records
        batch._records = {}
        deadline = time.monotonic() + self._settings.delivery_timeout_s
        backoff_s = 0.1
        while pending:
            failed: dict[tuple[str, int], list[_Record]] = {}
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
                    if isinstance(result, asyncio.CancelledError):
                        raise result
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

    async def send_one(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Headers = ()
    ) -> None:
        """Send one record and wait for its ack (for control paths, never the hot path)."""
        try:
            await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))
        except KafkaError as exc:
            raise DeliveryError(f"record to {topic} not acknowledged: {exc}") from exc
