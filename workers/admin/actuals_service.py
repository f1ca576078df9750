"""The actuals as a service in the admin process: restore the counts from
`dcc.state.actuals`, follow `dcc.user.responses` from where they end, and write the counts
that changed back every `flush_interval_s` (workers/admin/actuals.py has the rules).

One admin process per cluster is the design (docs/operations.md); a second one would count
the same answers into the same records (same input, same counts), so its writes repeat the
first's rather than add to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from broker.consumer import Record
from broker.errors import BrokerError
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.replay import replay_partitions
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.admin.actuals import CHECKPOINT_KEY, ActualsBook, MonthCounts
from workers.admin.forecast_metrics import ForecastMetrics
from workers.config.forecasts import forecast_of, forecastable_srvs
from workers.config.model import KINDS
from workers.config.reader import ControlReader

__all__ = ["ActualsService"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
_USERS = KINDS["users"]


class ActualsService:
    """Counts Service Requests per User, month, SRV and outcome, durably.

    flush_interval_s: how often changed counts are written to `dcc.state.actuals` (1 s);
    a crash loses nothing: what was not written is read again from `dcc.user.responses`.
    registry: where the live forecast metrics go (None: not exported).
    clock: epoch seconds (tests inject one).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        producer: BatchProducer,
        reader: ControlReader,
        *,
        registry: CollectorRegistry | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._producer = producer
        self._reader = reader
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self.book = ActualsBook(forecastable_srvs(), self._is_user, self._forecast_has)
        self._follower: TopicFollower | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._flush_problem: str | None = None
        self._restored = False
        if registry is not None:
            registry.register(ForecastMetrics(self.book, reader, clock))

    def _is_user(self, user_id: str) -> bool:
        return self._reader.snapshot.get(_USERS.key(user_id)) is not None

    def _forecast_has(self, user_id: str, month: str, srv: str) -> bool:
        forecast = forecast_of(self._reader.snapshot, user_id, month)
        return forecast is not None and srv in forecast.counts

    @property
    def ready(self) -> bool:
        """True once the counts are restored and the answers written before the start are
        counted (until then a report would show too little)."""
        follower = self._follower
        return self._restored and follower is not None and follower.caught_up

    @property
    def problem(self) -> str | None:
        """Why the actuals are not being counted or written now, or None."""
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            return f"the actuals writer stopped: {task.exception()!r}"
        if self._follower is not None and self._follower.problem:
            return self._follower.problem
        return self._flush_problem

    def month(self, month: str) -> dict[str, MonthCounts]:
        """Every User's counts for `month` (YYYY-MM)."""
        return self.book.month(month)

    async def start(self) -> None:
        """Restore the counts, then follow the answers from where they end."""
        await replay_partitions(
            self._kafka,
            self._topics.state_actuals,
            [0],
            self._restore,
            name="actuals-restore",
        )
        self._restored = True
        log.info(
            "actuals: %d records restored; reading %s from %s",
            self.book.restored_records,
            self._topics.user_responses,
            self.book.position or "the beginning",
        )
        self._follower = TopicFollower(
            self._kafka,
            self._topics.user_responses,
            self.book.apply,
            name="actuals",
            from_offsets=self.book.position,
        )
        await self._follower.start()
        self._task = asyncio.create_task(self._flush_loop(), name="actuals-flush")

    def _restore(self, records: list[Record]) -> None:
        for record in records:
            self.book.restore(record.key, record.value)

    async def stop(self) -> None:
        """Stop reading, and write what was counted and not yet written."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None
        try:
            await self.flush()
        except BrokerError as exc:
            log.warning("actuals: the last counts were not written (%s); they are read "
                        "again from the answers at the next start", exc)  # fmt: skip

    async def flush(self) -> int:
        """Write the counts changed since the last flush, then the checkpoint; return how
        many count records were written. Raises BrokerError if Kafka refuses (the counts
        stay to be written next time; the checkpoint is not moved)."""
        async with self._flush_lock:
            if not self.book.dirty:
                return 0
            records, checkpoint = self.book.dirty_records(int(self._clock() * 1000))
            topic = self._topics.state_actuals
            try:
                await asyncio.gather(
                    *(self._producer.send_one(topic, key, value) for key, value in records)
                )
                # Only once every count record is acknowledged may the resume point move.
                await self._producer.send_one(topic, CHECKPOINT_KEY.encode(), checkpoint)
            except BrokerError:
                self.book.mark_dirty([key for key, _ in records])
                raise
            return len(records)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            try:
                await self.flush()
                self._flush_problem = None
            except BrokerError as exc:  # retried at the next interval
                self._flush_problem = f"cannot write {self._topics.state_actuals}: {exc}"
                log.warning("actuals: %s", self._flush_problem)
