"""The consume-process-produce loop every service runs, with at-least-once delivery.

One iteration: fetch a batch; let the processor turn it into output records; send them;
commit the input offsets only once every output of that batch, and of every batch before
it, is acknowledged. Sending runs in the background while the next batch is decided (at
most `max_batches_in_flight` batches are unacknowledged at once), so the CPU does not idle
on broker round trips. A crash before a commit means those batches are processed again by
whoever owns the partitions next: the duplicate window is `max_batches_in_flight` x
`max_poll_records` input records.

A processor may also have a `tick(out, now_ms)` (`TickingProcessor`): work that is due with
no input, such as an alert storm's periodic copies. It is called when a fetch returns
nothing, and at least every `TICK_INTERVAL_S` while input flows; its outputs go through the
same ordered send-then-commit chain as a batch with no input offsets.

Two more optional abilities (the alert worker has both):

- `HoldingProcessor`: it keeps some input records beyond their batch (alerts delayed by
  regional capacity, or held by a correlation rule). The loop then never commits an offset
  past the lowest one still held (`held_floor()`), so a crash redelivers every held record
  (at-least-once); a tick that releases held records commits the offsets they held back.
  While `wants_input()` is False (a full queue) the loop pauses its partitions and keeps
  ticking instead of fetching: backpressure into Kafka, nothing dropped.
- `StagedProcessor`: records that must be written only once the batch's outputs are
  acknowledged (a changelog of state that says "these outputs were made"). Each follow-up
  stage is sent and acknowledged before the next one and before the commit.

Exactly-once (`settings.exactly_once`, on Apache Kafka): each fetched batch is decided per
input partition, and that partition's outputs, dead letters, follow-up stages and its input
offset go in one transaction of the partition's own transactional producer
(broker/transactions.py), so a crash leaves either all of it or none of it for a
read_committed reader: no duplicate window. Transactions are committed one after the other in
the order decided (see `_transact` for why), while the next batch is decided. A tick's
outputs (and the offsets of held records it released) go in a transaction of its own, on the
producer of the lowest assigned partition. A transaction that
fails is aborted and tried again with the same records for up to `delivery_timeout_s`, then
the loop stops, as a failed send does without transactions (processor state is restored
from the committed changelog by the next owner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, Protocol, TypeVar, runtime_checkable

from broker.consumer import BatchConsumer, Record, TopicPartition, UnreadableRecord
from broker.producer import BatchProducer, OutputBatch, PartitionRecords
from broker.settings import KafkaSettings
from broker.transactions import PartitionProducers
from workers.runtime.deadletter import deadletter, processing_error
from workers.runtime.metrics import CommonMetrics

__all__ = [
    "TICK_INTERVAL_S",
    "BatchProcessor",
    "HoldingProcessor",
    "LoopStatus",
    "RedoingProcessor",
    "ServiceLoop",
    "StagedProcessor",
    "TickingProcessor",
]

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 0.5
"""The longest time between two `tick()` calls while input keeps arriving."""

ReportT = TypeVar("ReportT")
"""A processor's own report on a batch (or tick): the loop only hands it back."""
ReportT_co = TypeVar("ReportT_co", covariant=True)
ReportT_contra = TypeVar("ReportT_contra", contravariant=True)

_Step = tuple[dict[TopicPartition, list[Record]], OutputBatch, ReportT | None]
"""One decided step of an exactly-once transaction: its input records, outputs, report."""


class BatchProcessor(Protocol[ReportT]):
    """What a service does with a batch: decide it, adding outputs to `out`, and return a
    report (counts for metrics) that is handed back once the outputs are acknowledged.

    The report's type is the processor's own; the type checker sees that `after_send`
    (and `tick`, `follow_up`) take what `process` returns, so none checks it at run time."""

    def process(
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> ReportT: ...

    def after_send(self, report: ReportT, now_ms: int) -> None:
        """Called with `process()`'s report once that batch is acknowledged and committed."""


@runtime_checkable
class TickingProcessor(Protocol[ReportT_co]):
    """A processor with work that is due without input (optional: the loop checks)."""

    def tick(self, out: OutputBatch, now_ms: int) -> ReportT_co | None:
        """Add what is due by `now_ms` to `out` and return a report for `after_send`, or
        None when nothing was added."""


@runtime_checkable
class HoldingProcessor(Protocol):
    """A processor that holds input records beyond their batch (optional: the loop checks)."""

    def held_floor(self) -> Mapping[TopicPartition, int]:
        """Per partition, the lowest input offset still held (not yet added to an output
        batch); partitions with nothing held are absent. The loop commits no further."""

    def wants_input(self) -> bool:
        """False while no more input can be taken (a queue is full): the loop pauses its
        partitions and keeps calling `tick` until this is True again."""


@runtime_checkable
class RedoingProcessor(Protocol):
    """A processor whose decisions change state a redo must not trip over (the router's
    replay memory: a request accepted in a failed attempt is not a replay of itself)."""

    def abandon(self, batch: dict[TopicPartition, list[Record]]) -> None:
        """`process(batch)` raised; its outputs were dropped and its records will be
        decided again, in halves."""


@runtime_checkable
class StagedProcessor(Protocol[ReportT_contra]):
    """A processor with records to write only after a batch's outputs are acknowledged."""

    def follow_up(self, report: ReportT_contra, stage: int, out: OutputBatch) -> bool:
        """Add the records of follow-up `stage` (0, 1, ...) of the batch or tick that
        returned `report`, whose outputs (and those of every earlier batch) are now
        acknowledged; return False, adding nothing, when there is no such stage. Each
        stage is acknowledged before the next is asked for and before the commit."""


class LoopStatus:
    """What /healthz reports about one loop."""

    def __init__(self) -> None:
        self.running = False
        self.batches = 0
        self.records = 0
        self.last_batch_at_s: float | None = None
        self.first_batch_started: float | None = None
        """perf_counter() when the first batch began to be decided, after the assignment's
        restore (state topics, feeds) had finished: a benchmark's throughput is the steady
        decisions', the restore is timed on its own (for benchmarks)."""
        self.last_batch_done: float | None = None
        """perf_counter() when the latest batch was committed."""
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.error: str | None = None


class ServiceLoop(Generic[ReportT]):
    """Runs one service's consume-process-produce loop until told to stop.

    Parameters:
        name: the service name (metric label, client id suffix).
        settings: Kafka client settings.
        input_topics: topics to consume.
        output_topics: topics the processor may produce to (partition counts are learned).
        group_id: consumer group shared by every instance of the service.
        processor: turns each batch into output records.
        metrics: the shared metrics.
        on_assign / on_revoke: optional hooks for state that moves with partitions.
        deadletter_topic: where a record goes that makes `process()` raise outside the
            processor's own per-record guard (found by deciding the batch in halves); None
            lets the error stop the loop (a service with nowhere to put such a record).
        partition_local_state: exactly-once only: True when a batch's outputs and state
            records depend on its own input partition's records alone (the router: a User's
            requests, replay memory and ADT counts live on the User's partition). Then the
            transactions of different partitions run side by side, one chain per partition,
            instead of one after another (see `_transact`); default False.
    """

    def __init__(
        self,
        *,
        name: str,
        settings: KafkaSettings,
        input_topics: list[str],
        output_topics: list[str],
        group_id: str,
        processor: BatchProcessor[ReportT],
        metrics: CommonMetrics,
        on_assign: Callable[[frozenset[TopicPartition]], Awaitable[None]] | None = None,
        on_revoke: Callable[[frozenset[TopicPartition]], Awaitable[None]] | None = None,
        deadletter_topic: str | None = None,
        partition_local_state: bool = False,
    ) -> None:
        self.name = name
        self._deadletter_topic = deadletter_topic
        self._settings = settings
        self._inputs = input_topics
        self._outputs = output_topics
        self._processor = processor
        self._metrics = metrics
        self.status = LoopStatus()
        self._on_assign_hook = on_assign
        self._on_revoke_hook = on_revoke
        self._inflight: deque[asyncio.Task[None]] = deque()
        self._max_inflight = settings.max_batches_in_flight
        self._group_id = group_id
        # Exactly-once: the transactional producers (made in run()), the decided steps
        # being collected into one transaction, and the latest transaction queued (the next
        # one waits for it: see _transact).
        self._txn: PartitionProducers | None = None
        self._collect: list[_Step[ReportT]] | None = None
        self._parallel_txns = partition_local_state
        self._txn_barrier: asyncio.Task[None] | None = None
        self._txn_last: dict[TopicPartition, asyncio.Task[None]] = {}
        self._holding = processor if isinstance(processor, HoldingProcessor) else None
        self._staged: StagedProcessor[ReportT] | None = (
            processor if isinstance(processor, StagedProcessor) else None
        )
        self._redoing = processor if isinstance(processor, RedoingProcessor) else None
        # Per partition: the end offset of the latest batch decided, and the latest offset
        # handed to a commit (commits only move forward; see _commit_targets).
        self._decided: dict[TopicPartition, int] = {}
        self._targets: dict[TopicPartition, int] = {}
        self._consumer = BatchConsumer(
            settings,
            input_topics,
            group_id=group_id,
            on_assign=self._assigned,
            on_revoke=self._revoked,
        )
        self._producer = BatchProducer(settings)
        m = metrics
        self._m_batch_size = m.batch_size.labels(name)
        self._m_batch_duration = m.batch_duration.labels(name)
        self._m_assigned = m.assigned.labels(name)
        self._m_consumed = {t: m.consumed.labels(name, t) for t in input_topics}
        self._m_produced = {t: m.produced.labels(name, t) for t in output_topics}
        m.lag.track(name, self.lag)

    def lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records behind) per input partition this worker has decided a
        batch of since its assignment: the high watermark of the partition's latest fetch
        minus the offset after that batch. Called at scrape time, never per batch."""
        if not self.status.running:  # stopped: it owns nothing, whatever aiokafka remembers
            return []
        decided = self._decided
        return [
            (tp.topic, tp.partition, max(0, high - decided[tp]))
            for tp, high in self._consumer.highwaters().items()
            if tp in decided
        ]

    async def _assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self.status.assigned = partitions
        self._m_assigned.set(len(partitions))
        if self._txn is not None:
            # Fence the partitions' previous owners first (their open transactions are
            # aborted or finished), then read where they had committed, then restore state.
            await self._txn.assign(partitions)
            await self._consumer.rewind_to_committed(partitions)
        if self._on_assign_hook is not None:
            # Runs under the consumer lock (broker/consumer.py): no batch is decided until
            # the hook has restored the new partitions' state.
            await self._on_assign_hook(partitions)

    async def run(self, stop: asyncio.Event, *, idle_exit_s: float | None = None) -> None:
        """Process batches until `stop` is set (the batch in flight is finished and
        committed first). With `idle_exit_s`, also return after that long without input
        (for tests and benchmarks: "run until idle")."""
        await self._producer.start()
        try:
            await self._producer.prepare(self._outputs)
            if self._settings.exactly_once:
                self._txn = PartitionProducers(
                    self._settings, self._group_id, self._producer.partition_counts
                )
            await self._consumer.start()
            try:
                self.status.running = True
                await self._loop(stop, idle_exit_s)
            finally:
                self.status.running = False
                self._m_assigned.set(0)
                await self._consumer.stop()
        finally:
            try:
                if self._txn is not None:
                    await self._txn.close_all()
            finally:
                await self._producer.stop()

    async def _drain(self) -> None:
        """Wait until every batch in flight is acknowledged and committed."""
        while self._inflight:
            task = self._inflight.popleft()
            await task
        self._txn_barrier = None
        self._txn_last.clear()

    async def _revoked(self, partitions: frozenset[TopicPartition]) -> None:
        # Called with the consumer lock held: finish what is in flight before letting go.
        await self._drain()
        for tp in partitions:
            self._decided.pop(tp, None)
            self._targets.pop(tp, None)
        if self._on_revoke_hook is not None:
            await self._on_revoke_hook(partitions)

    async def _loop(self, stop: asyncio.Event, idle_exit_s: float | None) -> None:
        max_records = self._settings.max_poll_records
        poll_ms = min(500, self._settings.fetch_max_wait_ms * 4)
        last_input = time.monotonic()
        stop_wait = asyncio.ensure_future(stop.wait())
        inflight = self._inflight
        tick: TickingProcessor[ReportT] | None = (
            self._processor if isinstance(self._processor, TickingProcessor) else None
        )
        holding = self._holding
        last_tick = time.monotonic()
        try:
            while not stop.is_set():
                while inflight and inflight[0].done():
                    inflight.popleft().result()  # raises if that batch failed
                if holding is not None:
                    # Backpressure: a full queue stops the fetching, never drops a record.
                    self._consumer.set_paused(not holding.wants_input())
                generation = self._consumer.generation
                fetch = asyncio.ensure_future(
                    self._consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
                )
                await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    # Stopping while waiting for input: nothing new was taken.
                    fetch.cancel()
                    break
                batch = fetch.result()
                if batch:
                    last_input = time.monotonic()
                    # Exactly-once: one transaction per partition of a batch.
                    limit = self._max_inflight * (
                        max(1, len(self._consumer.assigned)) if self._txn is not None else 1
                    )
                    while len(inflight) >= limit:
                        await inflight.popleft()
                    await self._start_batch(batch, generation=generation)
                unreadable = self._consumer.take_unreadable()
                if unreadable:
                    await self._skip_unreadable(unreadable)
                if tick is not None and (
                    not batch or time.monotonic() - last_tick >= TICK_INTERVAL_S
                ):
                    # Not held to max_batches_in_flight: a tick has no input to redo, and
                    # waiting for a slot when nothing is due would only delay the next fetch.
                    last_tick = time.monotonic()
                    await self._start_batch({}, tick)
                if (
                    not batch
                    and idle_exit_s is not None
                    and not inflight
                    and not (holding is not None and holding.held_floor())
                    and time.monotonic() - last_input > idle_exit_s
                ):
                    return
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.status.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            stop_wait.cancel()
            await self._drain()

    async def _start_batch(
        self,
        batch: dict[TopicPartition, list[Record]],
        tick: TickingProcessor[ReportT] | None = None,
        *,
        generation: int | None = None,
    ) -> None:
        """Decide the batch now; send and commit it in the background, after the batch
        before it (commits stay in order, and a failed batch stops every later commit).
        With `tick`, `batch` is empty and the outputs are what `tick.tick()` adds.
        `generation`: the consumer's assignment generation when the batch was fetched."""
        started = time.perf_counter()
        async with self._consumer.lock:
            if (
                self._txn is not None
                and generation is not None
                and generation != self._consumer.generation
            ):
                # Exactly-once: possibly fetched from positions the group has since reset
                # to the committed offsets; deciding it could decide these records twice
                # (now, and again when they are fetched from those offsets). Read them
                # again from where the partitions now are, never skipping one.
                await self._consumer.refetch(batch)
                log.info(
                    "%s: %d records fetched across a rebalance are fetched again",
                    self.name,
                    sum(len(r) for r in batch.values()),
                )
                return
            now_ms = time.time_ns() // 1_000_000
            if tick is None:
                if self.status.first_batch_started is None:
                    # Once the lock is ours: not the assignment's restore before it.
                    self.status.first_batch_started = time.perf_counter()
                if self._txn is None:
                    self._decide(batch, now_ms, started)
                    return
                for tp, records in batch.items():
                    self._collect = []
                    self._decide({tp: records}, now_ms, started)
                    self._transact(tp, {tp: records}, started)
                return
            out = self._producer.batch()
            try:
                report = tick.tick(out, now_ms)
            except Exception:  # no input to blame: drop this tick's outputs, try again later
                log.exception("%s: a tick failed; its outputs are dropped", self.name)
                return
            if report is None:  # nothing due
                return
            if self._txn is None:
                self._enqueue(batch, out, report, started)
                return
            self._collect = []
            self._enqueue(batch, out, report, started)
            self._transact(None, batch, started)

    async def _skip_unreadable(self, records: list[UnreadableRecord]) -> None:
        """Dead-letter records the client could not read (their reason says why) and commit
        past them like any decided record, so no worker meets them again."""
        started = time.perf_counter()
        async with self._consumer.lock:
            now_ms = time.time_ns() // 1_000_000
            for rec in records:
                out = self._producer.batch()
                if self._deadletter_topic is not None:
                    deadletter(
                        out,
                        self._deadletter_topic,
                        rec,
                        service=self.name,
                        kind="unreadable_record",
                        reason=rec.reason,
                        at_ms=now_ms,
                    )
                self._metrics.deadlettered.labels(self.name, "unreadable_record").inc()
                tp = TopicPartition(rec.topic, rec.partition)
                if self._txn is not None:
                    self._collect = []
                    self._enqueue({tp: [rec]}, out, None, started)
                    self._transact(tp, {tp: [rec]}, started)
                else:
                    self._enqueue({tp: [rec]}, out, None, started)

    def _decide(
        self, batch: dict[TopicPartition, list[Record]], now_ms: int, started: float
    ) -> None:
        """Decide `batch` and queue its send and commit. A batch whose `process()` raises
        (outside the processor's per-record guard) is decided again in halves, down to the
        one record that raises, which goes to the dead-letter topic: a poison record never
        stops the loop and is never met again, since its offset is committed like any other.
        (Records decided in a failed attempt are decided again: their outputs were dropped,
        but state the processor changed, such as a count, may count them twice.)"""
        out = self._producer.batch()
        try:
            report = self._processor.process(batch, out, now_ms)
        except Exception as exc:  # a record may not stop the loop (docs/contract.md)
            if self._deadletter_topic is None:
                raise
            if self._redoing is not None:
                self._redoing.abandon(batch)
            self._isolate(batch, exc, now_ms, started)
            return
        self._enqueue(batch, out, report, started)

    def _isolate(
        self,
        batch: dict[TopicPartition, list[Record]],
        exc: Exception,
        now_ms: int,
        started: float,
    ) -> None:
        flat = [(tp, rec) for tp, records in batch.items() for rec in records]
        if len(flat) > 1:
            log.warning(
                "%s: a batch of %d records raised %s: %s; deciding it in halves",
                self.name,
                len(flat),
                type(exc).__name__,
                exc,
            )
            middle = len(flat) // 2
            for half in (flat[:middle], flat[middle:]):
                regrouped: dict[TopicPartition, list[Record]] = {}
                for tp, rec in half:
                    regrouped.setdefault(tp, []).append(rec)
                self._decide(regrouped, now_ms, started)
            return
        tp, rec = flat[0]
        reason = processing_error("batch", exc)
        log.error(
            "%s: %s/%d offset %d dead-lettered: %s",
            self.name,
            tp.topic,
            tp.partition,
            rec.offset,
            reason,
            exc_info=exc,
        )
        out = self._producer.batch()
        topic = self._deadletter_topic
        if topic is not None:
            deadletter(
                out,
                topic,
                rec,
                service=self.name,
                kind="processing_error",
                reason=reason,
                at_ms=now_ms,
            )
        self._metrics.deadlettered.labels(self.name, "processing_error").inc()
        self._enqueue({tp: [rec]}, out, None, started)

    def _enqueue(
        self,
        batch: dict[TopicPartition, list[Record]],
        out: OutputBatch,
        report: ReportT | None,
        started: float,
    ) -> None:
        if self._collect is not None:  # exactly-once: sent by the transaction of the step
            self._collect.append((batch, out, report))
            return
        commits = self._commit_targets(batch)
        previous = self._inflight[-1] if self._inflight else None
        task = asyncio.create_task(
            self._finish_batch(batch, out, report, previous, started, commits)
        )
        self._inflight.append(task)

    def _commit_targets(
        self, batch: dict[TopicPartition, list[Record]]
    ) -> dict[TopicPartition, int]:
        """The offsets to commit once this step's outputs are acknowledged: per partition
        the end of the latest batch decided, but never past a record still held. Every
        partition whose target moved, not only the batch's: a batch of one partition may
        release records another held (with exactly-once, in the same transaction)."""
        decided = self._decided
        for tp, records in batch.items():
            decided[tp] = records[-1].offset + 1
        floors = self._holding.held_floor() if self._holding is not None else {}
        targets = self._targets
        commits: dict[TopicPartition, int] = {}
        for tp, end in decided.items():
            floor = floors.get(tp)
            target = end if floor is None or floor > end else floor
            if target > targets.get(tp, -1):
                targets[tp] = commits[tp] = target
        return commits

    async def _finish_batch(
        self,
        batch: dict[TopicPartition, list[Record]],
        out: OutputBatch,
        report: ReportT | None,
        previous: asyncio.Task[None] | None,
        started: float,
        commits: Mapping[TopicPartition, int],
    ) -> None:
        counts = dict(out.counts)
        await self._producer.send(out)
        if previous is not None:
            await previous
        if self._staged is not None and report is not None:
            stage = 0
            while True:
                follow = self._producer.batch()
                if not self._staged.follow_up(report, stage, follow):
                    break
                for topic, count in follow.counts.items():
                    counts[topic] = counts.get(topic, 0) + count
                await self._producer.send(follow)
                stage += 1
        if commits:
            await self._consumer.commit(commits)
        self._account(batch, counts, report, started)

    def _account(
        self,
        batch: dict[TopicPartition, list[Record]],
        counts: Mapping[str, int],
        report: ReportT | None,
        started: float,
    ) -> None:
        """Metrics, status and `after_send` of a step whose outputs are acknowledged and
        whose offsets are committed."""
        if not batch:
            # A tick: its outputs were ordered like a batch's; it commits only the offsets
            # that held records it released kept back.
            for topic, count in counts.items():
                self._m_produced[topic].inc(count)
            if report is not None:
                self._processor.after_send(report, time.time_ns() // 1_000_000)
            return
        n = 0
        for tp, records in batch.items():
            self._m_consumed[tp.topic].inc(len(records))
            n += len(records)
        for topic, count in counts.items():
            self._m_produced[topic].inc(count)
        if report is not None:  # None: a poison record, dead-lettered by the loop itself
            self._processor.after_send(report, time.time_ns() // 1_000_000)
        self._m_batch_size.observe(n)
        self._m_batch_duration.observe(time.perf_counter() - started)
        st = self.status
        st.batches += 1
        st.records += n
        st.last_batch_at_s = time.time()
        st.last_batch_done = time.perf_counter()

    # --- exactly-once ------------------------------------------------------------------

    def _transact(
        self,
        tp: TopicPartition | None,
        batch: dict[TopicPartition, list[Record]],
        started: float,
    ) -> None:
        """Queue the transaction of the steps collected since `_collect` was set: on the
        producer of input partition `tp`, or for a tick (`tp` None) on the lowest assigned
        partition's, after every transaction queued before it.

        One after the other, in the order decided, even across partitions, unless the
        processor's state is partition-local: the alert worker's spans partitions (a storm
        copy is flushed by whichever partition's batch reaches the boundary, and its
        changelog record written there), so transactions running side by side could write
        one key's changelog records in another order than they were decided, and a restore
        would take an older one for the newest. With `partition_local_state` (the router)
        each partition's transactions form a chain of their own and the chains run side by
        side: with six partitions a batch's outputs then wait for one commit, not up to six
        in a row (docs/benchmarks.md measured 400 ms of added latency that way). A tick is
        a barrier either way: it waits for every transaction before it, and every later
        one waits for it."""
        steps, self._collect = self._collect or [], None
        txn = self._txn
        if txn is None or not steps:
            return
        commits = self._commit_targets(batch)
        if tp is None:
            owned = sorted(txn.open_partitions)
            if not owned:
                log.warning("%s: a tick with nothing assigned; its outputs are dropped", self.name)
                return
            producer_tp = owned[0]
        else:
            producer_tp = tp
        barrier = self._txn_barrier
        if self._parallel_txns and tp is not None:
            previous = self._txn_last.get(tp)
            waits = [t for t in (barrier, previous) if t is not None]
        else:
            waits = [*self._txn_last.values(), *([barrier] if barrier is not None else [])]
        task = asyncio.create_task(self._finish_txn(producer_tp, steps, commits, waits, started))
        if self._parallel_txns and tp is not None:
            self._txn_last[tp] = task
        else:
            self._txn_barrier = task
            self._txn_last.clear()
        self._inflight.append(task)

    async def _finish_txn(
        self,
        producer_tp: TopicPartition,
        steps: list[_Step[ReportT]],
        commits: Mapping[TopicPartition, int],
        waits: list[asyncio.Task[None]],
        started: float,
    ) -> None:
        for earlier in waits:
            await earlier  # a failed transaction before this one fails this one too
        txn = self._txn
        if txn is None:
            raise RuntimeError("a transaction without transactional producers")
        producer = txn.get(producer_tp)
        counts: dict[str, int] = {}
        records: PartitionRecords = {}
        for _, out, _ in steps:
            for topic, count in out.counts.items():
                counts[topic] = counts.get(topic, 0) + count
            for key, recs in out.take().items():
                records.setdefault(key, []).extend(recs)
        staged = self._staged

        def follow_up() -> list[PartitionRecords]:
            stages: list[PartitionRecords] = []
            if staged is None:
                return stages
            for _, _, report in steps:
                if report is None:
                    continue
                stage = 0
                while True:
                    follow = self._producer.batch()
                    if not staged.follow_up(report, stage, follow):
                        break
                    for topic, count in follow.counts.items():
                        counts[topic] = counts.get(topic, 0) + count
                    stages.append(follow.take())
                    stage += 1
            return stages

        await producer.transact(records, commits, self._group_id, follow_up)
        for batch, _, report in steps:
            self._account(batch, {}, report, started)
        for topic, count in counts.items():
            self._m_produced[topic].inc(count)
