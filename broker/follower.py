"""Follow a whole topic from its first record, without a consumer group.

For the logs every process needs all of (the configuration on `dcc.control`, the audit
trail): each process reads every partition from the beginning, then keeps up. "Caught up"
is judged against the fetch's high watermark, which every broker reports correctly (the
embedded broker's ListOffsets "latest" is wrong, so `end_offsets()` is not used).

A follower may also follow some partitions only (the alert worker follows the partitions of
`dcc.sr.outbound` that match its own input partitions). Reading some partitions once, up to
their end (a changelog restored on assignment), is `broker.replay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from broker.consumer import Record, readable_end, start_offsets_at
from broker.errors import BrokerError
from broker.settings import KafkaSettings

__all__ = ["TopicFollower", "partition_counts"]

log = logging.getLogger(__name__)

_CATCH_UP_POLL_MS = 20
"""How long a follower not yet caught up waits in one poll before it looks again."""

OnRecords = Callable[[list[Record]], None]


class TopicFollower:
    """Reads `topic` from the start (or from the records written since `from_ms`, found by
    time as `start_offsets_at` does) and hands each fetched batch to `on_records`.

    `on_records` runs in the event loop and must not block. `applied[p]` is the next offset
    to read in partition p once its batch has been handed over. `partitions`: follow only
    these (default: every partition of the topic). `from_offsets`: start partition p at
    offset `from_offsets[p]` instead (the others from the beginning).

    No record stops the follower: when `on_records` raises on a batch, the batch is handed
    over again one record at a time, and a record that still raises is skipped, logged and
    counted (`skipped_records`, `last_skipped`). A fetch that fails is retried every second;
    while it fails, `problem` says why (the owner shows it on /healthz).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        on_records: OnRecords,
        *,
        name: str,
        from_ms: int | None = None,
        partitions: Iterable[int] | None = None,
        from_offsets: Mapping[int, int] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._on_records = on_records
        self._name = name
        self._from_ms = from_ms
        self._from_offsets = dict(from_offsets or {})
        self._only = None if partitions is None else frozenset(partitions)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()
        self._changed = asyncio.Event()
        self.applied: dict[int, int] = {}
        self.skipped_records = 0
        self.last_skipped: str | None = None
        self._fetch_problem: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the follower cannot follow now (a fetch failing, the task gone), or None."""
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            return f"following {self._topic} stopped: {task.exception()!r}"
        return self._fetch_problem

    async def start(self) -> None:
        """Connect, assign every partition from the beginning, and follow in the background."""
        kwargs = self._settings.consumer_kwargs()
        kwargs["client_id"] = f"{self._settings.client_id}-{self._name}"
        consumer = AIOKafkaConsumer(group_id=None, **kwargs)
        try:
            await consumer.start()
            partitions = await _partitions(consumer, self._topic)
        except (KafkaError, BrokerError) as exc:
            await consumer.stop()
            raise BrokerError(f"cannot follow {self._topic}: {exc}") from exc
        if self._only is not None:
            partitions &= self._only
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        self.applied = dict.fromkeys(partitions, 0)
        if self._from_offsets:
            # Resume where a changelog says its counts end (partitions it does not name
            # are read from the beginning).
            await consumer.seek_to_beginning(*tps)
            for tp in tps:
                offset = self._from_offsets.get(tp.partition, 0)
                if offset > 0:
                    consumer.seek(tp, offset)
                    self.applied[tp.partition] = offset
        elif self._from_ms is None:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp, offset in (await start_offsets_at(consumer, tps, self._from_ms)).items():
                consumer.seek(tp, offset)
                self.applied[tp.partition] = offset
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer, tps), name=f"follow-{self._topic}")

    async def stop(self) -> None:
        """Stop following and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def caught_up(self) -> bool:
        """True once everything present at the start has been handed over."""
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout_s: float = 30.0) -> None:
        """Wait until everything present at the start has been handed over."""
        async with asyncio.timeout(timeout_s):
            await self._caught_up.wait()

    async def wait_offset(self, partition: int, offset: int, timeout_s: float = 5.0) -> None:
        """Wait until the record at `offset` of `partition` has been handed over."""
        async with asyncio.timeout(timeout_s):
            while self.applied.get(partition, 0) <= offset:
                await self._changed.wait()

    async def _follow(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        while True:
            try:
                # Until caught up, a short wait: "at the end" is known from the first fetch
                # answer's high watermark, and an empty topic would otherwise keep a
                # starting service (MP102 feed, restores) waiting the whole 500 ms.
                wait_ms = 500 if self._caught_up.is_set() else _CATCH_UP_POLL_MS
                batch = await consumer.getmany(*tps, timeout_ms=wait_ms, max_records=5000)
            except Exception as exc:  # KafkaError: the client reconnects by itself; go on
                self._fetch_problem = f"cannot fetch {self._topic}: {type(exc).__name__}: {exc}"
                log.warning("following %s: %s", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            self._fetch_problem = None
            for tp, records in batch.items():
                if records:
                    self._hand_over(records)
                    self.applied[tp.partition] = records[-1].offset + 1
            if batch:
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
            if not self._caught_up.is_set() and await self._at_end(consumer, tps):
                self._caught_up.set()

    def _hand_over(self, records: list[Record]) -> None:
        try:
            self._on_records(records)
            return
        except Exception:  # noqa: S110 - isolated below, record by record
            pass
        for record in records:
            try:
                self._on_records([record])
            except Exception as exc:  # a record the owner cannot apply is skipped, not fatal
                self.skipped_records += 1
                self.last_skipped = (
                    f"{self._topic}/{record.partition} offset {record.offset}: "
                    f"{type(exc).__name__}: {str(exc)[:200]}"
                )
                log.error("following %s: skipped %s", self._topic, self.last_skipped)

    @staticmethod
    async def _at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
        for tp in tps:
            end = readable_end(consumer, tp)
            if end is None or await consumer.position(tp) < end:
                return False
        return True


async def partition_counts(settings: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """The partition count of each of `topics` (BrokerError if one does not exist)."""
    consumer = AIOKafkaConsumer(group_id=None, **settings.consumer_kwargs())
    try:
        await consumer.start()
        return {topic: len(await _partitions(consumer, topic)) for topic in topics}
    except KafkaError as exc:
        raise BrokerError(f"cannot read the metadata of {sorted(topics)}: {exc}") from exc
    finally:
        # aiokafka's group-less consumer cancels a background task in stop() and re-raises
        # its CancelledError if that task never ran: let it run once first.
        await asyncio.sleep(0)
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    partitions: set[int] | None = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise BrokerError(f"topic {topic} does not exist; start a worker that creates topics")
    return partitions
