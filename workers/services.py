"""Builds the services from Settings and runs them, alone or all in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

import msgspec
from prometheus_client import CollectorRegistry

from broker.consumer import Record
from broker.embedded import EmbeddedBroker
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics
from workers.adt_state import AdtStateStore
from workers.alerts import SERVICE as ALERTS
from workers.alerts import AlertService
from workers.anomaly import AdtControl, AdtMetrics
from workers.control.api import AdminApi
from workers.control.audit import AuditLog
from workers.control.configfile import seed_control
from workers.control.reader import ControlReader
from workers.control.writer import ControlWriter
from workers.duis import DuisValidator, load_catalogue
from workers.http import HttpServer, build_app
from workers.loop import LoopStatus, ServiceLoop
from workers.metrics import CommonMetrics
from workers.quarantine import QuarantineService
from workers.router import SERVICE as ROUTER
from workers.router import RouterMetrics, RouterProcessor
from workers.settings import Settings
from workers.traffic import LoadExchange, TrafficControl, TrafficMetrics, new_peer_id

__all__ = [
    "DRAIN_TIMEOUT_S",
    "WORKERS",
    "AdminService",
    "build_alerts",
    "build_router",
    "dccgate_version",
    "install_signal_handlers",
    "prepare_topics",
    "run_gateway",
    "run_worker",
]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 30.0
"""After SIGTERM, how long the batch in flight may take to finish before the process quits
anyway (its offsets then stay uncommitted and the batch is redone elsewhere)."""


def dccgate_version() -> str:
    """The installed distribution's version."""
    try:
        return version("dccgate")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


class RouterService:
    """A router: its consume-process-produce loop; the load exchange on `dcc.load` that
    gives traffic management (SECMP0067) and the DCC-wide ADT counts their system view; and
    the follower of `dcc.sr.quarantine` that counts released requests (SEC G6)."""

    def __init__(
        self,
        loop: ServiceLoop,
        traffic: TrafficControl,
        kafka: KafkaSettings,
        topics: Topics,
        adt: AdtControl | None = None,
        adt_state: AdtStateStore | None = None,
    ) -> None:
        self.loop = loop
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
            self.exchange = LoadExchange(
                self._kafka, self._topics.load, self.traffic, producer, adt=self.adt
            )
            exchange_stop = asyncio.Event()
            exchange = asyncio.create_task(self.exchange.run(exchange_stop))
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
) -> RouterService:
    """A router: consumes dcc.sr.inbound, produces forwards and answers.

    `group_id` defaults to `<prefix>dccgate-router`, shared by every router. With `reader`,
    traffic management follows the configuration on dcc.control; `traffic` may be given
    instead (the benchmark sets a policy directly).
    """
    topics = settings.topics
    traffic = traffic or TrafficControl(new_peer_id())
    adt = AdtControl()
    if reader is not None:
        reader.subscribe(traffic.apply)
        reader.subscribe(adt.apply)
    adt_state = AdtStateStore(kafka, topics.sr_inbound, topics.state_router, adt)
    AdtMetrics(metrics.registry, adt, lambda: traffic.registered_users, adt_state)
    processor = RouterProcessor(
        topics=topics,
        validator=DuisValidator(load_catalogue(), replay_capacity=settings.replay_capacity),
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
    )
    return RouterService(loop, traffic, kafka, topics, adt, adt_state)


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
        group_id=group_id or f"{settings.topic_prefix}dccgate-{ALERTS}",
    )
    if reader is not None:
        reader.subscribe(service.processor.apply)
    return service


async def prepare_topics(settings: Settings, kafka: KafkaSettings) -> None:
    """Create the contract's topics if they are missing (unless disabled)."""
    if not settings.create_topics:
        return
    specs = settings.topics.specs(
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
    )
    created = await ensure_topics(kafka, specs)
    if created:
        log.info("created topics: %s", ", ".join(created))


def install_signal_handlers(stop: asyncio.Event, main: asyncio.Task[object]) -> None:
    """SIGTERM/SIGINT set `stop` (drain and exit 0); a second signal, or the drain taking
    longer than DRAIN_TIMEOUT_S, cancels `main`."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            main.cancel()
            return
        log.info("%s: finishing the batch in flight, then stopping", signal.Signals(signum).name)
        stop.set()
        loop.call_later(DRAIN_TIMEOUT_S, main.cancel)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


class AdminService:
    """The admin API with what it needs: a producer, the audit log, the writer and the
    quarantine service (its metrics on `registry`; `clock` is injected by tests)."""

    def __init__(
        self,
        settings: Settings,
        kafka: KafkaSettings,
        reader: ControlReader,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        topics = settings.topics
        self.reader = reader
        self.producer = BatchProducer(kafka)
        self.audit = AuditLog(kafka, topics.audit)
        self.writer = ControlWriter(self.producer, topics, reader, self.audit)
        self.quarantine = QuarantineService(
            kafka, topics, self.producer, self.writer, settings.codes,
            pending_max_s=settings.quarantine_pending_max_s, registry=registry, clock=clock,
        )  # fmt: skip
        self.api = AdminApi(
            reader=reader,
            writer=self.writer,
            audit=self.audit,
            bootstrap_token_sha256=settings.admin_token_sha256,
            quarantine=self.quarantine,
        )
        self._config = settings.config

    async def start(self) -> None:
        """Connect, load the audit trail, and seed the configuration file's new items."""
        await self.producer.start()
        await self.audit.start()
        await self.quarantine.start()
        if self._config is not None:
            written = await seed_control(self._config, self.reader, self.writer)
            if written:
                log.info("configuration file: %d new items written to dcc.control", written)

    async def stop(self) -> None:
        """Disconnect."""
        await self.quarantine.stop()
        await self.audit.stop()
        await self.producer.stop()


async def _start_reader(
    settings: Settings, kafka: KafkaSettings, stack: contextlib.AsyncExitStack
) -> ControlReader:
    reader = ControlReader(kafka, settings.topics.control)
    await reader.start()
    stack.push_async_callback(reader.stop)
    await reader.wait_caught_up()
    return reader


def _control_health(reader: ControlReader) -> dict[str, object]:
    snapshot = reader.snapshot
    return {
        "control": {
            "caught_up": reader.caught_up,
            "offset": snapshot.offset,
            "versions": snapshot.versions(),
        }
    }


class Service(Protocol):
    """What `_serve` runs: a named service with a status, until `stop`."""

    name: str
    status: LoopStatus

    async def run(self, stop: asyncio.Event) -> None: ...


async def _serve(
    settings: Settings,
    loops: Sequence[Service],
    registry: CollectorRegistry,
    stop: asyncio.Event,
    *,
    reader: ControlReader,
    admin: AdminService | None = None,
    extra: dict[str, object] | None = None,
    ready: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    def health() -> dict[str, object]:
        return {**(extra or {}), **_control_health(reader)}

    app = build_app(registry, {lp.name: lp.status for lp in loops}, extra=health)
    if admin is not None:
        admin.api.install(app)
    http = HttpServer(app, host=settings.http_host, port=settings.http_port)
    await http.start()
    try:
        if ready is not None:
            await ready(http.port)
        async with asyncio.TaskGroup() as tg:
            for lp in loops:
                tg.create_task(lp.run(stop))
            if not loops:
                tg.create_task(stop.wait())
    finally:
        await http.stop()


WORKERS = ("router", "alerts", "admin")


async def run_worker(name: str, settings: Settings) -> None:
    """Run one service (`router`, `alerts` or `admin`) against `settings.bootstrap`
    until SIGTERM."""
    if settings.bootstrap is None:
        raise ValueError("a worker needs --bootstrap HOST:PORT (or DCCGATE_BOOTSTRAP)")
    if name not in WORKERS:
        raise ValueError(f"unknown worker {name!r}; choose one of {', '.join(WORKERS)}")
    if name == "admin" and settings.admin_token_sha256 is None:
        raise ValueError(
            "the admin worker needs a first operator token: set DCCGATE_ADMIN_TOKEN, or "
            "admin.token_sha256 in the --config file"
        )
    kafka = settings.kafka(settings.bootstrap, embedded=False)
    registry = CollectorRegistry()
    metrics = CommonMetrics(registry, version=dccgate_version())
    await prepare_topics(settings, kafka)
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None  # always inside a task under asyncio.run
    install_signal_handlers(stop, main)
    async with contextlib.AsyncExitStack() as stack:
        reader = await _start_reader(settings, kafka, stack)
        admin = None
        loops: list[Service] = []
        if name == "admin":
            admin = AdminService(settings, kafka, reader, registry=registry)
            await admin.start()
            stack.push_async_callback(admin.stop)
        elif name == "alerts":
            loops.append(build_alerts(settings, kafka, metrics, reader=reader))
        else:
            loops.append(build_router(settings, kafka, metrics, reader=reader))
        await _serve(settings, loops, registry, stop, reader=reader, admin=admin)


async def run_gateway(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str, int, str | None], Awaitable[None]] | None = None,
    log_dir: Path | None = None,
) -> None:
    """The whole gateway in one process: the embedded broker unless `settings.bootstrap`
    is set, the topics, every service, the admin API, and HTTP. Returns after SIGTERM or
    SIGINT (or `stop`). Without a first operator token configured, one is made up for this
    run and handed to `on_ready` to show."""
    stop = stop or asyncio.Event()
    made_up_token = None
    if settings.admin_token_sha256 is None:
        made_up_token = secrets.token_urlsafe(24)
        settings = msgspec.structs.replace(settings, admin_token=made_up_token)
    broker: EmbeddedBroker | None = None
    if settings.bootstrap is None:
        broker = EmbeddedBroker(
            port=settings.kafka_port,
            log_path=(log_dir / "tansu.log") if log_dir else None,
        )
        await broker.start()
        bootstrap, embedded = broker.bootstrap, True
    else:
        bootstrap, embedded = settings.bootstrap, False
    try:
        kafka = settings.kafka(bootstrap, embedded=embedded)
        registry = CollectorRegistry()
        metrics = CommonMetrics(registry, version=dccgate_version())
        await prepare_topics(settings, kafka)
        main = asyncio.current_task()
        if main is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                install_signal_handlers(stop, main)
        async with contextlib.AsyncExitStack() as stack:
            reader = await _start_reader(settings, kafka, stack)
            admin = AdminService(settings, kafka, reader, registry=registry)
            await admin.start()
            stack.push_async_callback(admin.stop)
            loops: list[Service] = [
                build_router(settings, kafka, metrics, reader=reader),
                build_alerts(settings, kafka, metrics, reader=reader),
            ]

            async def ready(port: int) -> None:
                if on_ready is not None:
                    await on_ready(bootstrap, port, made_up_token)

            await _serve(
                settings,
                loops,
                registry,
                stop,
                reader=reader,
                admin=admin,
                extra={"bootstrap": bootstrap, "embedded_broker": embedded},
                ready=ready,
            )
    finally:
        if broker is not None:
            await broker.stop()
