"""Runs the gateway: one worker (`router`, `alerts`, `admin`) or all of them in one process,
with the topics, the configuration reader, HTTP and signal handling.

Each service is built in its own room (`workers.router.service`, `workers.alerts.service`,
`workers.admin.service`); this module only wires and runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

import msgspec
from prometheus_client import CollectorRegistry

from broker.embedded import EmbeddedBroker
from broker.security import check_access
from broker.settings import KafkaSettings
from broker.topics import ensure_topics
from broker.transactions import resolve_exactly_once
from workers.admin.service import AdminService
from workers.alerts.service import build_alerts
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.deliver.service import build_deliver
from workers.ingress import build_ingress
from workers.router.service import build_router
from workers.runtime.http import HttpServer, build_app
from workers.runtime.loop import LoopStatus
from workers.runtime.metrics import CommonMetrics

__all__ = [
    "DRAIN_TIMEOUT_S",
    "WORKERS",
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


def _user_agent() -> str:
    """The User-Agent of the response deliverer's POSTs."""
    return f"dccgate-deliver/{dccgate_version()}"


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


async def _checked(kafka: KafkaSettings) -> KafkaSettings:
    """`kafka`, once a secured cluster has let this process in (TLS, SASL): a clear error
    now rather than a failed probe or a retry loop later (broker/security.py)."""
    await check_access(
        kafka.bootstrap,
        kafka.security,
        client_id=kafka.client_id,
        timeout_ms=kafka.request_timeout_ms,
    )
    return kafka


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
    metrics: CommonMetrics,
    stop: asyncio.Event,
    *,
    reader: ControlReader,
    admin: AdminService | None = None,
    extra: dict[str, object] | None = None,
    ready: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    side = metrics.side_tasks
    side.watch("control", lambda: reader.problem)
    if admin is not None:
        admin.watch(side)

    def health() -> dict[str, object]:
        # A side task that cannot do its work makes /healthz answer 503 (build_app).
        return {**(extra or {}), **_control_health(reader), "side_tasks": side.problems()}

    app = build_app(metrics.registry, {lp.name: lp.status for lp in loops}, extra=health)
    if admin is not None:
        admin.api.install(app)
    http = HttpServer(app, host=settings.http_host, port=settings.http_port)
    await http.start()
    try:
        async with asyncio.TaskGroup() as tg:
            for lp in loops:
                tg.create_task(lp.run(stop))
            if not loops:
                tg.create_task(stop.wait())
            if ready is not None:
                tg.create_task(_announce(ready, http.port, loops, stop))
    finally:
        await http.stop()


async def _announce(
    ready: Callable[[int], Awaitable[None]],
    http_port: int,
    loops: Sequence[Service],
    stop: asyncio.Event,
) -> None:
    """Call `ready` once every loop that binds a port of its own (the DUIS ingress, with a
    `started` event) has bound it: what `ready` shows is then reachable. If a loop fails
    first, the task group cancels this and nothing is announced."""
    for lp in loops:
        started = getattr(lp, "started", None)
        if isinstance(started, asyncio.Event):
            waiting = asyncio.ensure_future(started.wait())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                stopping.cancel()
            if not started.is_set():
                return  # stopped before it was up: nothing to announce
    await ready(http_port)


WORKERS = ("router", "alerts", "admin", "deliver", "ingress")


async def run_worker(name: str, settings: Settings) -> None:
    """Run one service (`router`, `alerts`, `admin`, `deliver` or `ingress`) against
    `settings.bootstrap` until SIGTERM."""
    if settings.bootstrap is None:
        raise ValueError("a worker needs --bootstrap HOST:PORT (or DCCGATE_BOOTSTRAP)")
    if name not in WORKERS:
        raise ValueError(f"unknown worker {name!r}; choose one of {', '.join(WORKERS)}")
    if name == "admin" and settings.admin_token_sha256 is None:
        raise ValueError(
            "the admin worker needs a first operator token: set DCCGATE_TOKEN, or "
            "admin.token_sha256 in the --config file"
        )
    kafka = await resolve_exactly_once(
        await _checked(settings.kafka(settings.bootstrap, embedded=False)),
        settings.exactly_once,
        embedded=False,
    )
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
        elif name == "ingress":
            loops.append(build_ingress(settings, kafka, metrics, reader=reader))
        elif name == "deliver":
            loops.append(
                build_deliver(settings, kafka, metrics, reader=reader, user_agent=_user_agent())
            )
        else:
            loops.append(build_router(settings, kafka, metrics, reader=reader))
        await _serve(
            settings,
            loops,
            metrics,
            stop,
            reader=reader,
            admin=admin,
            extra={"exactly_once": kafka.exactly_once},
        )


async def run_gateway(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str, int, str | None, str], Awaitable[None]] | None = None,
    log_dir: Path | None = None,
) -> None:
    """The whole gateway in one process: the embedded broker unless `settings.bootstrap`
    is set, the topics, every service, the admin API, and HTTP. Returns after SIGTERM or
    SIGINT (or `stop`). Without a first operator token configured, one is made up for this
    run and handed to `on_ready` to show, with the HTTP port and the DUIS ingress's URL, once
    both ports are bound."""
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
        kafka = await resolve_exactly_once(
            await _checked(settings.kafka(bootstrap, embedded=embedded)),
            settings.exactly_once,
            embedded=embedded,
        )
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
            ingress = build_ingress(settings, kafka, metrics, reader=reader)
            loops: list[Service] = [
                build_router(settings, kafka, metrics, reader=reader),
                build_alerts(settings, kafka, metrics, reader=reader),
                build_deliver(settings, kafka, metrics, reader=reader, user_agent=_user_agent()),
                ingress,
            ]

            async def ready(port: int) -> None:
                if on_ready is not None:  # after the DUIS port is bound: its real URL
                    await on_ready(bootstrap, port, made_up_token, ingress.url)

            await _serve(
                settings,
                loops,
                metrics,
                stop,
                reader=reader,
                admin=admin,
                extra={
                    "bootstrap": bootstrap,
                    "embedded_broker": embedded,
                    "exactly_once": kafka.exactly_once,
                },
                ready=ready,
            )
    finally:
        if broker is not None:
            await broker.stop()
