"""The HTTP side of a worker: `/metrics` for Prometheus and `/healthz` for orchestrators.

aiohttp serves it, and the admin API on the same port: a well-kept asyncio server that
takes msgspec-encoded bytes as they are, with no ASGI adapter layer in between.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from workers.runtime.loop import LoopStatus

__all__ = ["HEADER_TIMEOUT_S", "HttpServer", "build_app"]

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 5.0
"""A connection must send a complete request head (request line and headers) within this
many seconds of opening, or of the previous answer on it; otherwise it is closed. Also how
long an idle keep-alive connection is kept. aiohttp's `keepalive_timeout` is this limit: it
starts when a connection is made and is re-armed after each answer, and closes the
connection if no whole request head has arrived by then (its default, 3630 s, let half-open
connections pile up). The body then has its own limit (workers/admin/routing.py)."""

HealthExtra = Callable[[], dict[str, object]]


def build_app(
    registry: CollectorRegistry,
    loops: dict[str, LoopStatus],
    *,
    extra: HealthExtra | None = None,
) -> web.Application:
    """The aiohttp application with `/metrics` and `/healthz`."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        services = {
            name: {
                "running": st.running,
                "batches": st.batches,
                "records": st.records,
                "last_batch_at_s": st.last_batch_at_s,
                "assigned_partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in st.assigned),
                "error": st.error,
            }
            for name, st in loops.items()
        }
        ok = all(st.running and st.error is None for st in loops.values())
        body: dict[str, object] = {"services": services}
        if extra is not None:
            body.update(extra())
        control = body.get("control")
        if isinstance(control, dict) and not control.get("caught_up", True):
            ok = False
        if body.get("side_tasks"):  # a side task that cannot do its work (supervise.py)
            ok = False
        body = {"status": "ok" if ok else "unavailable", **body}
        return web.Response(
            body=orjson.dumps(body),
            status=200 if ok else 503,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


class HttpServer:
    """Serves an aiohttp application on host:port until `stop()`.

    header_timeout_s: a connection that has not sent a whole request head this long after
    opening (or after its previous answer) is closed; default HEADER_TIMEOUT_S (5 s).
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
        what: str = "/metrics, /healthz",
        port_flag: str = "--http-port",
    ) -> None:
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=header_timeout_s)
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._what = what
        self._port_flag = port_flag
        self.port = port

    async def start(self) -> None:
        """Bind and serve; `port` holds the bound port (useful with port 0)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                f"cannot serve HTTP on {self._host}:{self._port}: {exc.strerror}; "
                f"pick another port with {self._port_flag}"
            ) from exc
        server = site._server
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        scheme = "https" if self._ssl is not None else "http"
        log.info("HTTP on %s://%s:%d (%s)", scheme, self._host, self.port, self._what)

    async def stop(self) -> None:
        """Stop serving."""
        await self._runner.cleanup()
