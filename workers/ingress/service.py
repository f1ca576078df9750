"""The DUIS ingress as a service: its producer, answer follower and HTTP(S) server.

Stateless: everything it decides with comes from `dcc.control` (Users, roles, certificates)
and the request itself, so several ingress processes can serve behind a load balancer;
each follows every answer on `dcc.user.responses` and keeps only its own requests' futures.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.duis.catalogue import load_catalogue
from workers.ingress.app import IngressApp
from workers.ingress.correlator import AnswerWaiter
from workers.ingress.errors import IngressTlsError
from workers.ingress.metrics import IngressMetrics
from workers.ingress.publisher import GroupPublisher
from workers.runtime.http import HttpServer
from workers.runtime.loop import LoopStatus
from workers.runtime.metrics import CommonMetrics

__all__ = ["IngressService", "build_ingress", "server_tls"]

log = logging.getLogger(__name__)


def server_tls(cert: str | None, key: str | None, client_ca: str | None) -> ssl.SSLContext | None:
    """The server TLS context for the ingress (None: plain HTTP). With `client_ca`, a client
    certificate signed by one of its CAs is required. Raises IngressTlsError naming the file."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise IngressTlsError(
            f"cannot use --duis-tls-cert {cert!r} with --duis-tls-key {key!r}: {exc}; give a "
            "PEM certificate and its unencrypted PEM key"
        ) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise IngressTlsError(
                f"cannot read --duis-client-ca {client_ca!r}: {exc}; give PEM CA certificates"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class IngressService:
    """`dccgate worker ingress`: serves the DUIS web services until `stop` is set."""

    name = "ingress"

    def __init__(
        self,
        settings: Settings,
        kafka: KafkaSettings,
        app: IngressApp,
        producer: BatchProducer,
        waiter: AnswerWaiter,
        status: LoopStatus,
    ) -> None:
        self._settings = settings
        self._kafka = kafka
        self.app = app
        self._producer = producer
        self._waiter = waiter
        self.status = status
        self._tls = server_tls(
            settings.duis_tls_cert, settings.duis_tls_key, settings.duis_client_ca
        )
        self.port: int | None = None
        self.started = asyncio.Event()

    @property
    def url(self) -> str:
        """The base URL the web services are served at (after start)."""
        scheme = "https" if self._tls is not None else "http"
        port = self.port if self.port is not None else self._settings.duis_port
        return f"{scheme}://{self._settings.duis_host}:{port}/api/v1/"

    @property
    def problem(self) -> str | None:
        """Why the ingress cannot answer with the router's decisions now, or None."""
        return self._waiter.problem

    async def run(self, stop: asyncio.Event) -> None:
        """Start the producer, the answer follower and HTTP; serve until `stop`."""
        web_app = web.Application(client_max_size=self._settings.duis_max_request_bytes)
        self.app.install(web_app)

        async def healthz(_: web.Request) -> web.Response:
            problem = self.problem
            return web.json_response(
                {"status": "ok" if problem is None else "unavailable", "problem": problem},
                status=200 if problem is None else 503,
            )

        web_app.router.add_get("/healthz", healthz)
        http = HttpServer(
            web_app,
            host=self._settings.duis_host,
            port=self._settings.duis_port,
            ssl_context=self._tls,
            what="DUIS web services /api/v1/serviceD, serviceS, serviceT",
            port_flag="--duis-port",
        )
        await self._producer.start()
        try:
            topics = self._settings.topics
            await self._producer.prepare([topics.sr_inbound, topics.audit])
            await self._waiter.start()
            try:
                await http.start()
                self.port = http.port
                self.status.running = True
                self.started.set()
                try:
                    await stop.wait()
                finally:
                    self.status.running = False
                    await http.stop()
            finally:
                await self._waiter.stop()
        finally:
            await self._producer.stop()


def build_ingress(
    settings: Settings, kafka: KafkaSettings, metrics: CommonMetrics, *, reader: ControlReader
) -> IngressService:
    """The ingress wired to the configuration on dcc.control and the contract's topics."""
    status = LoopStatus()
    registered = lambda user_id: user_id in reader.snapshot.users  # noqa: E731
    ingress_metrics = IngressMetrics(metrics.registry, registered)
    producer = BatchProducer(kafka)
    waiter = AnswerWaiter(kafka, settings.topics.user_responses)
    app = IngressApp(
        topics=settings.topics,
        producer=GroupPublisher(producer),
        waiter=waiter,
        metrics=ingress_metrics,
        codes=settings.codes,
        catalogue=load_catalogue(),
        answer_wait_s=settings.duis_answer_wait_ms / 1000,
        max_request_bytes=settings.duis_max_request_bytes,
        status=status,
    )
    reader.subscribe(app.apply)
    metrics.side_tasks.watch("ingress-answers", lambda: waiter.problem)
    return IngressService(settings, kafka, app, producer, waiter, status)
