"""The admin API's audit trail: every accepted change, newest first (operators only)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.routing import (
    WHO_OPERATOR,
    Route,
    int_param,
    need_operator,
)
from workers.admin.tokens import Principal

__all__ = ["AUDIT_ROUTES"]


async def _audit(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    need_operator(principal)
    records = api.audit.query(
        key_prefix=request.query.get("key_prefix", ""),
        by=request.query.get("by"),
        since_ms=int_param(request, "since_ms", 0, 0, 2**63 - 1),
        until_ms=int_param(request, "until_ms", 2**63 - 1, 0, 2**63 - 1),
        limit=int_param(request, "limit", 100, 1, 10_000),
    )
    return web.Response(
        body=b'{"records":' + msgspec.json.encode(records) + b"}",
        content_type="application/json",
    )


AUDIT_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/audit", _audit, "Audit trail, newest first", WHO_OPERATOR),
)
