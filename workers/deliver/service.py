"""The response deliverer as a service (`dccgate worker deliver`): its loop on
`dcc.user.responses`, the HTTP client, and the per-User queues."""

from __future__ import annotations

import asyncio

import msgspec

from broker.consumer import TopicPartition
from broker.settings import KafkaSettings
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.deliver.dispatcher import Dispatcher
from workers.deliver.metrics import DeliverMetrics
from workers.deliver.policy import RetryPolicy
from workers.deliver.processor import SERVICE, DeliverProcessor
from workers.deliver.sender import Sender
from workers.runtime.loop import ServiceLoop
from workers.runtime.metrics import CommonMetrics

__all__ = ["DeliverService", "build_deliver", "retry_policy"]


def retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy the settings describe."""
    return RetryPolicy(
        deadline_s=settings.deliver_deadline_s,
        backoff_initial_s=settings.deliver_backoff_initial_ms / 1000,
        backoff_max_s=settings.deliver_backoff_max_ms / 1000,
    )


class DeliverService:
    """One deliverer (consumer group `group_id`).

    Parameters:
        settings: the process settings (the DCCGATE_DELIVER_* values, the topics).
        kafka: client settings.
        metrics: the shared metrics.
        group_id: the consumer group of every deliverer.
        user_agent: the User-Agent of the POSTs.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        kafka: KafkaSettings,
        metrics: CommonMetrics,
        group_id: str,
        user_agent: str = "dccgate-deliver",
    ) -> None:
        topics = settings.topics
        self.metrics = DeliverMetrics(metrics)
        self.sender = Sender(
            timeout_s=settings.deliver_timeout_ms / 1000,
            connections_per_host=settings.deliver_connections_per_host,
            ca_file=settings.deliver_ca_file,
            user_agent=user_agent,
        )
        self.dispatcher = Dispatcher(
            poster=self.sender,
            policy=retry_policy(settings),
            url_for=self._url_for,
            metrics=self.metrics,
            max_per_user=settings.deliver_queue_max_per_user,
        )
        self.processor = DeliverProcessor(
            topics=topics, dispatcher=self.dispatcher, metrics=self.metrics
        )
        self.loop = ServiceLoop(
            name=SERVICE,
            # At-least-once even where the others run transactions: its output is an HTTP
            # POST, which no Kafka transaction covers (Users de-duplicate by RequestID). It
            # still reads dcc.user.responses read_committed, so never an aborted answer.
            settings=msgspec.structs.replace(kafka, exactly_once=False),
            input_topics=[topics.user_responses],
            output_topics=[topics.deadletter],
            group_id=group_id,
            processor=self.processor,
            metrics=metrics,
            on_revoke=self._revoked,
            deadletter_topic=topics.deadletter,
        )
        self.name = self.loop.name
        self.status = self.loop.status

    def _url_for(self, user_id: str) -> str | None:
        return self.processor.url_for(user_id)

    async def _revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.processor.revoke(partitions)

    async def run(self, stop: asyncio.Event, *, idle_exit_s: float | None = None) -> None:
        """Run until `stop` (or, with `idle_exit_s`, until that long without input and
        with nothing left to deliver)."""
        await self.sender.start()
        try:
            await self.loop.run(stop, idle_exit_s=idle_exit_s)
        finally:
            await self.dispatcher.close()
            await self.sender.close()


def build_deliver(
    settings: Settings,
    kafka: KafkaSettings,
    metrics: CommonMetrics,
    *,
    reader: ControlReader | None = None,
    group_id: str | None = None,
    user_agent: str = "dccgate-deliver",
) -> DeliverService:
    """The response deliverer: consumes dcc.user.responses and POSTs each answer as a DUIS
    sr:Response to its User's response_url (docs/duis-ingress.md).

    `group_id` defaults to `<prefix>dccgate-deliver`. With `reader`, the Users and their
    response_url follow `dcc.control`; without, set them with `service.processor.set_users`.
    """
    service = DeliverService(
        settings=settings,
        kafka=kafka,
        metrics=metrics,
        group_id=group_id or f"{settings.topic_prefix}dccgate-{SERVICE}",
        user_agent=user_agent,
    )
    if reader is not None:
        reader.subscribe(service.processor.apply)
    return service
