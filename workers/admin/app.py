"""The admin HTTP API: configuration, tokens, quarantine decisions and the audit trail.

Every `/v1/...` request carries `Authorization: Bearer <token>`. Operator tokens may read
and change everything; a User token is bound to one User ID and may read its own
configuration and state and change only what a User may change (its own ADT values, its
own quarantined requests). Anything else is `403` with a message that names no data.
Bodies are JSON (`Content-Type: application/json`, else 415); errors are `{"error": "..."}`
with 400 (malformed JSON, or JSON readers could read differently: a key twice, not UTF-8,
too deep), 401, 403, 404, 408 (a body too slow), 409 (the item changed since the version
sent; a quarantine decision already taken or being taken), 413 (a body over 1 MiB), 422 (a
value out of range or an unknown field; an If-Match or integer query parameter that is not
a short ASCII number), 503 (a quarantine decision Kafka did not acknowledge: retry). A PUT
may carry the `version` it read (or `If-Match`); `version: 0` means "only if it does not
exist yet". The routes are listed once, in `ROUTES`, which also builds `/openapi.json`.

Layout: one module of routes per resource (`routes_users`, `routes_config`,
`routes_quarantine`, `routes_audit`, `routes_decisions`); the pieces every handler shares
(`Route`, `ApiError`, access checks) in `routing`; what a handler may use of the app is the
`AdminContext` Protocol (`context`), which `AdminApi` implements. Nothing imports this
module but the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from workers.admin.audit import AuditLog
from workers.admin.certificate_metrics import CertificateMetrics
from workers.admin.context import (
    ActualsView,
    DecisionView,
    QuarantineView,
    no_actuals,
    no_decisions,
    no_quarantine,
)
from workers.admin.openapi import openapi_document
from workers.admin.routes_audit import AUDIT_ROUTES
from workers.admin.routes_certificates import CERTIFICATE_ROUTES
from workers.admin.routes_config import CONFIG_ROUTES
from workers.admin.routes_decisions import DECISION_ROUTES
from workers.admin.routes_forecasts import FORECAST_ROUTES
from workers.admin.routes_quarantine import QUARANTINE_ROUTES
from workers.admin.routes_reports import REPORT_ROUTES
from workers.admin.routes_users import USER_ROUTES
from workers.admin.routes_whoami import WHOAMI_ROUTES
from workers.admin.routing import ApiError, Handler, Route, error_answer
from workers.admin.tokens import Principal, authenticate
from workers.admin.ui import install_console
from workers.admin.writer import ControlWriter, VersionConflictError
from workers.config.reader import ControlReader

__all__ = ["ROUTES", "AdminApi", "QuarantineView", "Route"]

log = logging.getLogger(__name__)


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/v1/") or exc.status < 400:
            raise
        reason = {404: "no such path", 405: f"method {request.method} not allowed here"}
        return error_answer(exc.status, reason.get(exc.status, exc.reason))


ROUTES: tuple[Route, ...] = (
    *USER_ROUTES,
    *CONFIG_ROUTES,
    *QUARANTINE_ROUTES,
    *AUDIT_ROUTES,
    *DECISION_ROUTES,
    *WHOAMI_ROUTES,
    *FORECAST_ROUTES,
    *REPORT_ROUTES,
    *CERTIFICATE_ROUTES,
)


class AdminApi:
    """The admin API over a configuration reader and writer (an `AdminContext`)."""

    def __init__(
        self,
        *,
        reader: ControlReader,
        writer: ControlWriter,
        audit: AuditLog,
        bootstrap_token_sha256: str | None,
        quarantine: QuarantineView | None = None,
        decisions: DecisionView | None = None,
        actuals: ActualsView | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.reader = reader
        self.certificate_metrics = CertificateMetrics(registry)
        self.writer = writer
        self.audit = audit
        self._bootstrap = bootstrap_token_sha256
        self.quarantine: QuarantineView = quarantine or no_quarantine()
        self.decisions: DecisionView = decisions or no_decisions()
        self.actuals: ActualsView = actuals or no_actuals()

    def install(self, app: web.Application) -> None:
        """Add every route of `ROUTES`, `/openapi.json` and the web console (`/ui/`) to
        `app`, and answer unknown `/v1/` paths and methods in the API's JSON error shape."""
        app.middlewares.append(_json_errors)
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._wrap(route.handler))
        document = orjson.dumps(openapi_document(ROUTES))

        async def openapi(_: web.Request) -> web.Response:
            return web.Response(body=document, content_type="application/json")

        app.router.add_get("/openapi.json", openapi)
        install_console(app)

    def _principal(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
        principal = authenticate(token.strip(), self.reader.snapshot.tokens, self._bootstrap)
        if principal is None:
            raise ApiError(401, "the token is not valid (unknown, revoked, or mistyped)")
        return principal

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def run(request: web.Request) -> web.Response:
            try:
                principal = self._principal(request)
                return await handler(self, request, principal)
            except ApiError as exc:
                return error_answer(exc.status, exc.message)
            except VersionConflictError as exc:
                return error_answer(409, str(exc))

        return run
