"""The alert worker as a service: its consume-process-produce loop, the storm changelog
restored on partition assignment, and the firmware feed of the MP102 rule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from broker.consumer import TopicPartition
from broker.errors import BrokerError
from broker.follower import partition_counts
from broker.replay import read_to_end
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.alerts.firmware import FirmwareFeed
from workers.alerts.metrics import AlertMetrics
from workers.alerts.processor import SERVICE, AlertProcessor
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.runtime.loop import ServiceLoop
from workers.runtime.metrics import CommonMetrics

__all__ = ["AlertService", "build_alerts"]

log = logging.getLogger(__name__)


class AlertService:
    """One alert worker (consumer group `group_id`).

    Parameters:
        topics: the topic names.
        kafka: client settings.
        metrics: the shared metrics.
        group_id: the consumer group of every alert worker.

    The processor (`self.processor`) takes its configuration through `apply`.
    """

    def __init__(
        self,
        *,
        topics: Topics,
        kafka: KafkaSettings,
        metrics: CommonMetrics,
        group_id: str,
    ) -> None:
        self._topics = topics
        self._kafka = kafka
        alert_metrics = AlertMetrics(metrics)
        self.processor = AlertProcessor(
            topics=topics, metrics=alert_metrics, on_mp102_change=self._mp102_changed
        )
        self.loop = ServiceLoop(
            name=SERVICE,
            settings=kafka,
            input_topics=[topics.alerts_inbound],
            output_topics=[topics.alerts_outbound, topics.deadletter, topics.state_alerts],
            group_id=group_id,
            processor=self.processor,
            metrics=metrics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            deadletter_topic=topics.deadletter,
        )
        self.name = self.loop.name
        self.status = self.loop.status
        self.feed = FirmwareFeed(
            kafka,
            topics.sr_outbound,
            self.processor.note_firmware_activation,
            alert_metrics.firmware_activations,
        )
        self._side = metrics.side_tasks
        feed = self.feed
        self._side.watch("mp102_feed", lambda: feed.problem)
        self._owned: frozenset[TopicPartition] = frozenset()
        self._changelog = False
        self._feed_all = False
        self._changed: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event, *, idle_exit_s: float | None = None) -> None:
        """Run until `stop` (or, with `idle_exit_s`, until that long without input)."""
        await self._check_partitions()
        changed = self._changed = asyncio.Event()
        feed_stop = asyncio.Event()
        feed_task = asyncio.create_task(
            self._side.supervise("mp102_config", lambda: self._follow_config(changed), feed_stop)
        )
        try:
            await self.loop.run(stop, idle_exit_s=idle_exit_s)
        finally:
            feed_stop.set()
            feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed_task
            await self.feed.stop()

    async def _check_partitions(self) -> None:
        # The changelog and the firmware feed rely on co-partitioning (docs/contract.md).
        t = self._topics
        counts = await partition_counts(
            self._kafka, [t.alerts_inbound, t.state_alerts, t.sr_outbound]
        )
        inbound = counts[t.alerts_inbound]
        if counts[t.state_alerts] == inbound:
            self._changelog = True
            self.processor.set_changelog(t.state_alerts)
        else:
            log.error(
                "%s has %d partitions and %s %d: running storms are NOT kept across restarts; "
                "recreate %s with %d partitions",
                t.state_alerts,
                counts[t.state_alerts],
                t.alerts_inbound,
                inbound,
                t.state_alerts,
                inbound,
            )
        if counts[t.sr_outbound] != inbound:
            self._feed_all = True
            log.warning(
                "%s has %d partitions and %s %d: the MP102 rule reads all of %s",
                t.sr_outbound,
                counts[t.sr_outbound],
                t.alerts_inbound,
                inbound,
                t.sr_outbound,
            )

    async def _assigned(self, partitions: frozenset[TopicPartition]) -> None:
        new = partitions - self._owned
        self._owned = partitions
        if self._changelog and new:
            started = time.monotonic()
            try:
                records = await read_to_end(
                    self._kafka,
                    self._topics.state_alerts,
                    [tp.partition for tp in new],
                    name="alerts-restore",
                )
            except BrokerError as exc:
                # Going on without the state: running storms are caught again afresh.
                log.error("storm state not restored for %s: %s", sorted(new), exc)
            else:
                restored = self.processor.restore(records, time.time_ns() // 1_000_000)
                log.info(
                    "storm state of %d partitions restored in %.2f s: %d records, %d storms",
                    len(new),
                    time.monotonic() - started,
                    len(records),
                    restored,
                )
        await self._follow_feed()

    async def _revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.processor.revoke(partitions)
        self._owned -= partitions

    async def _follow_feed(self) -> None:
        parts = None if self._feed_all else [tp.partition for tp in self._owned]
        await self.feed.follow(parts, self.processor.mp102_watch_s)

    def _mp102_changed(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _follow_config(self, changed: asyncio.Event) -> None:
        while True:
            await changed.wait()
            changed.clear()
            await self._follow_feed()


def build_alerts(
    settings: Settings,
    kafka: KafkaSettings,
    metrics: CommonMetrics,
    *,
    reader: ControlReader | None = None,
    group_id: str | None = None,
) -> AlertService:
    """The alert worker: consumes dcc.alerts.inbound, produces per-recipient alerts with
    storm protection (SECMP0062), regional capacity and the MP102 rule (docs/alerts.md).

    `group_id` defaults to `<prefix>dccgate-alerts`. With `reader`, the exclusion list, the
    storm policy, the regional capacities and the MP102 rule follow the configuration on
    dcc.control; without, no code is excluded, every code gets
    `throttling.DEFAULT_STORM_PARAMS`, and neither capacity nor the rule applies.
    """
    service = AlertService(
        topics=settings.topics,
        kafka=kafka,
        metrics=metrics,
        group_id=group_id or f"{settings.topic_prefix}dccgate-{SERVICE}",
    )
    if reader is not None:
        reader.subscribe(service.processor.apply)
    return service
