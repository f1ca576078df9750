"""The router as a service: its consume-process-produce loop, the load exchange on `dcc.load`,
and the follower of `dcc.sr.quarantine` that counts released requests; `build_router` wires
them from Settings."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from broker.consumer import Record
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.duis import DuisValidator, load_catalogue
from workers.router.adt import AdtControl
from workers.router.adt_metrics import AdtMetrics
from workers.router.adt_state import AdtStateStore
from workers.router.load_exchange import SIDE_TASK as LOAD_EXCHANGE
from workers.router.load_exchange import LoadExchange, new_peer_id
from workers.router.processor import SERVICE as ROUTER
from workers.router.processor import RouterMetrics, RouterProcessor, RouterReport
from workers.router.traffic import TrafficControl, TrafficMetrics
from workers.runtime.loop import ServiceLoop
from workers.runtime.metrics import CommonMetrics
from workers.runtime.supervise import SideTasks

__all__ = ["RouterService", "build_router"]

log = logging.getLogger(__name__)


class RouterService:
    """A router: its consume-process-produce loop; the load exchange on `dcc.load` that
    gives traffic management (SECMP0067) and the DCC-wide ADT counts their system view; and
    the follower of `dcc.sr.quarantine` that counts released requests (SEC G6)."""

    def __init__(
        self,
        loop: ServiceLoop[RouterReport],
        traffic: TrafficControl,
        kafka: KafkaSettings,
        topics: Topics,
        adt: AdtControl | None = None,
        adt_state: AdtStateStore | None = None,
        side_tasks: SideTasks | None = None,
        validator: DuisValidator | None = None,
    ) -> None:
        self.loop = loop
        self.validator = validator
        self.side_tasks = side_tasks or SideTasks(None)
        self.traffic = traffic
        self.adt = adt
        self.adt_state = adt_state
        self.name = loop.name
        self.status = loop.status
        self._kafka = kafka
        self._topics = topics
        self.exchange: LoadExchange | None = None

    async def run(self, stop: asyncio.Event, *, idle_exit_s: float | None = None) -> None:
        """Run the loop, the load exchange and the release follower until `stop`."""
        producer = BatchProducer(self._kafka)
        await producer.start()
        releases: TopicFollower | None = None
        try:
            if self.adt_state is not None:
                store = self.adt_state

                def count_releases(records: list[Record]) -> None:
                    store.on_quarantine_log(records, time.time())

                # Releases decided before this start are in the snapshots already.
                releases = TopicFollower(
                    self._kafka,
                    self._topics.sr_quarantine,
                    count_releases,
                    name="releases",
                    from_ms=time.time_ns() // 1_000_000,
                )
                await releases.start()
                follower = releases
                self.side_tasks.watch("releases", lambda: follower.problem)
            side = self.side_tasks
            exchange_ = self.exchange = LoadExchange(
                self._kafka,
                self._topics.load,
                self.traffic,
                producer,
                adt=self.adt,
                side_tasks=side,
            )
            side.watch(f"{LOAD_EXCHANGE}.follower", lambda: exchange_.problem)
            exchange_stop = asyncio.Event()
            exchange = asyncio.create_task(
                side.supervise(LOAD_EXCHANGE, lambda: exchange_.run(exchange_stop), exchange_stop)
            )
            try:
                await self.loop.run(stop, idle_exit_s=idle_exit_s)
            finally:
                exchange_stop.set()
                await exchange
        finally:
            if releases is not None:
                await releases.stop()
            await producer.stop()


def build_router(
    settings: Settings,
    kafka: KafkaSettings,
    metrics: CommonMetrics,
    *,
    group_id: str | None = None,
    reader: ControlReader | None = None,
    traffic: TrafficControl | None = None,
    state_topic: str | None = None,
) -> RouterService:
    """A router: consumes dcc.sr.inbound, produces forwards and answers.

    `group_id` defaults to `<prefix>dccgate-router`, shared by every router. With `reader`,
    traffic management follows the configuration on dcc.control; `traffic` may be given
    instead (the benchmark sets a policy directly).
    """
    topics = settings.topics
    if state_topic is not None:  # the benchmark: a state topic per run
        topics = msgspec.structs.replace(topics, state_router=state_topic)
    traffic = traffic or TrafficControl(new_peer_id())
    validator = DuisValidator(
        load_catalogue(), replay_pairs_per_user=settings.replay_pairs_per_user
    )
    if settings.open_users:
        log.warning("open_users is on: requests of any User in any role are routed (demo only)")
        validator.set_users(None)
    adt = AdtControl()
    if reader is not None:
        reader.subscribe(traffic.apply)
        reader.subscribe(adt.apply)
        if not settings.open_users:
            reader.subscribe(
                lambda snapshot: validator.set_users(
                    {user_id: user.roles for user_id, user in snapshot.users.items()}
                )
            )
    adt_state = AdtStateStore(kafka, topics.sr_inbound, topics.state_router, adt, validator)
    AdtMetrics(metrics.registry, adt, lambda: traffic.registered_users, adt_state)
    processor = RouterProcessor(
        topics=topics,
        validator=validator,
        codes=settings.codes,
        metrics=RouterMetrics(metrics, TrafficMetrics(metrics.registry, traffic)),
        traffic=traffic,
        adt=adt,
        adt_state=adt_state,
    )
    loop = ServiceLoop(
        name=ROUTER,
        settings=kafka,
        input_topics=[topics.sr_inbound],
        output_topics=[
            topics.sr_outbound,
            topics.user_responses,
            topics.sr_quarantine,
            topics.deadletter,
            topics.state_router,
        ],
        group_id=group_id or f"{settings.topic_prefix}dccgate-{ROUTER}",
        processor=processor,
        metrics=metrics,
        on_assign=adt_state.on_assign,
        on_revoke=adt_state.on_revoke,
        deadletter_topic=topics.deadletter,
        # A User's requests, replay memory and ADT counts live on the User's partition
        # (workers/router/adt_state.py): its transactions need not wait for other partitions'.
        partition_local_state=True,
    )
    return RouterService(
        loop, traffic, kafka, topics, adt, adt_state, metrics.side_tasks, validator
    )
