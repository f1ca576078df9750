"""The admin HTTP API: configuration, tokens, quarantine decisions and the audit trail.

Every `/v1/...` request carries `Authorization: Bearer <token>`. Operator tokens may read
and change everything; a User token is bound to one User ID and may read its own
configuration and state and change only what a User may change (its own ADT values, its
own quarantined requests). Anything else is `403` with a message that names no data.
Bodies are JSON; errors are `{"error": "..."}` with 400 (malformed JSON), 401, 403, 404,
409 (the item changed since the version sent), 413 (a body over 1 MiB), 422 (a value out
of range or an unknown field). A PUT may carry the `version` it read (or `If-Match`);
`version: 0` means "only if it does not exist yet". The routes are listed once, in
`ROUTES`, which also builds `/openapi.json`.

The quarantine routes are in `quarantine_routes.py`; the pieces every handler shares
(`Route`, `ApiError`, access checks) in `routing.py`, imported here under their old private
names.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
from aiohttp import web

from workers.control.audit import AuditLog
from workers.control.explain import describe
from workers.control.model import KINDS, USER_ID_PATTERN, Kind, validate_item
from workers.control.quarantine_routes import QUARANTINE_ROUTES, QuarantineView, no_quarantine
from workers.control.reader import ControlReader
from workers.control.routing import FORBIDDEN as _FORBIDDEN
from workers.control.routing import WHO_OPERATOR as _OP
from workers.control.routing import WHO_OWN_READ as _OWN
from workers.control.routing import WHO_OWN_WRITE as _OWN_W
from workers.control.routing import ApiError, Handler, Route
from workers.control.routing import error_answer as _error
from workers.control.routing import int_param as _int_param
from workers.control.routing import json_answer as _json
from workers.control.routing import need_operator as _need_operator
from workers.control.routing import need_user_access as _need_user_access
from workers.control.routing import read_body as _read_body
from workers.control.state import Item
from workers.control.tokens import Principal, TokenRecord, authenticate, hash_token, new_token
from workers.control.writer import ControlWriter, VersionConflictError

__all__ = ["ROUTES", "AdminApi", "QuarantineView", "Route"]

log = logging.getLogger(__name__)

_USER_ID = re.compile(USER_ID_PATTERN)


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
        return _error(exc.status, reason.get(exc.status, exc.reason))


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not _USER_ID.fullmatch(user_id):
        raise ApiError(
            404,
            "a User ID is 8 hyphen-separated upper-case hex octets, like 90-B3-D5-1F-30-01-00-00",
        )
    return user_id


def _with_version(item: Item) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(item.raw)
    doc["version"] = item.version
    return doc


def _etag(item: Item) -> dict[str, str]:
    return {"ETag": f'"{item.version}"'}


def _expected_version(request: web.Request, doc: dict[str, Any]) -> int | None:
    """The version the caller read: `version` in the body, else an `If-Match` header."""
    version = doc.pop("version", None)
    if version is None and "If-Match" in request.headers:
        version = request.headers["If-Match"].strip().strip('"')
        if not version.isdigit():
            raise ApiError(422, 'If-Match must be the version number you read, e.g. "3"')
        return int(version)
    if version is not None and (type(version) is not int or version < 0):
        raise ApiError(422, "version must be the whole number you read with GET")
    return version


def _convert(kind: Kind, user_id: str | None, doc: dict[str, Any]) -> msgspec.Struct:
    try:
        body: msgspec.Struct = msgspec.convert(doc, type=kind.body)
        validate_item(kind, user_id, body)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid {kind.name} body: {describe(exc, kind.body)}") from None
    except ValueError as exc:
        raise ApiError(422, f"invalid {kind.name} body: {exc}") from None
    return body


class AdminApi:
    """The admin API's handlers, over a configuration reader and writer."""

    def __init__(
        self,
        *,
        reader: ControlReader,
        writer: ControlWriter,
        audit: AuditLog,
        bootstrap_token_sha256: str | None,
        quarantine: QuarantineView | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.audit = audit
        self._bootstrap = bootstrap_token_sha256
        self.quarantine: QuarantineView = quarantine or no_quarantine()

    def install(self, app: web.Application) -> None:
        """Add every route of `ROUTES` and `/openapi.json` to `app`, and answer unknown
        `/v1/` paths and methods in the API's JSON error shape."""
        app.middlewares.append(_json_errors)
        from workers.control.openapi import openapi_document

        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._wrap(route.handler))
        document = orjson.dumps(openapi_document())

        async def openapi(_: web.Request) -> web.Response:
            return web.Response(body=document, content_type="application/json")

        app.router.add_get("/openapi.json", openapi)

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
                return _error(exc.status, exc.message)
            except VersionConflictError as exc:
                return _error(409, str(exc))

        return run

    # --- configuration items ---------------------------------------------------------

    async def get_item(self, kind: Kind, user_id: str | None) -> web.Response:
        item = self.reader.snapshot.get(kind.key(user_id))
        if item is None:
            whose = f" for User {user_id}" if user_id else ""
            raise ApiError(404, f"no {kind.name} configured{whose}")
        return _json(_with_version(item), headers=_etag(item))

    async def put_item(
        self, request: web.Request, principal: Principal, kind: Kind, user_id: str | None
    ) -> web.Response:
        doc = await _read_body(request)
        expected = _expected_version(request, doc)
        body = _convert(kind, user_id, doc)
        item = await self.writer.put(
            kind.key(user_id), body, by=principal.label(), expected_version=expected
        )
        return _json(_with_version(item), headers=_etag(item))


def _per_user(kind_name: str) -> tuple[Handler, Handler]:
    kind = KINDS[kind_name]

    async def get(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
        user_id = _user_id(request)
        _need_user_access(principal, user_id)
        if not principal.is_operator and not kind.user_readable:
            raise ApiError(403, _FORBIDDEN)
        return await api.get_item(kind, user_id)

    async def put(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
        user_id = _user_id(request)
        _need_user_access(principal, user_id)
        if not principal.is_operator and not kind.user_writable:
            raise ApiError(403, _FORBIDDEN)
        if kind.name != "users" and api.reader.snapshot.get(KINDS["users"].key(user_id)) is None:
            raise ApiError(404, f"no User {user_id}: PUT /v1/users/{user_id} first")
        return await api.put_item(request, principal, kind, user_id)

    return get, put


def _list_per_user(kind_name: str) -> Handler:
    kind = KINDS[kind_name]
    prefix = kind.name + "/"

    async def listing(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
        if not principal.is_operator and not kind.user_readable:
            raise ApiError(403, _FORBIDDEN)
        items = {
            key[len(prefix) :]: _with_version(item)
            for key, item in api.reader.snapshot.items.items()
            if key.startswith(prefix) and principal.may_act_for(key[len(prefix) :])
        }
        return _json({"items": items})

    return listing


def _singleton(kind_name: str) -> tuple[Handler, Handler]:
    kind = KINDS[kind_name]

    async def get(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
        _need_operator(principal)
        return await api.get_item(kind, None)

    async def put(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
        _need_operator(principal)
        return await api.put_item(request, principal, kind, None)

    return get, put


async def _list_users(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
    snapshot = api.reader.snapshot
    out = {}
    for key, item in snapshot.items.items():
        if key.startswith("users/"):
            user_id = key[len("users/") :]
            if principal.may_act_for(user_id):
                out[user_id] = _with_version(item)
    return _json({"users": out})


async def _delete_user(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
    """Delete a User and revoke its tokens; its allocation and ADT values stay (audited,
    and in force again if the User is re-created) until deleted or replaced."""
    user_id = _user_id(request)
    _need_operator(principal)
    expected = _expected_version(request, {})
    if not await api.writer.delete(
        KINDS["users"].key(user_id), by=principal.label(), expected_version=expected
    ):
        raise ApiError(404, f"no users configured for User {user_id}")
    revoked = [t for t in api.reader.snapshot.tokens.values() if t.user_id == user_id]
    for token in revoked:
        await api.writer.revoke_token(token, by=principal.label())
    return _json({"deleted": user_id, "revoked_tokens": sorted(t.token_id for t in revoked)})


def _token_answer(record: TokenRecord) -> dict[str, Any]:
    return {
        "token_id": record.token_id,
        "role": record.role,
        "user_id": record.user_id,
        "created_at_ms": record.created_at_ms,
        "created_by": record.created_by,
    }


async def _issue(api: AdminApi, principal: Principal, user_id: str | None) -> web.Response:
    token_id, token = new_token()
    record = TokenRecord(
        token_id=token_id,
        role="user" if user_id else "operator",
        user_id=user_id,
        sha256=hash_token(token),
        created_at_ms=time.time_ns() // 1_000_000,
        created_by=principal.label(),
    )
    await api.writer.issue_token(record)
    # The secret is shown here once and stored nowhere.
    return _json({"token": token, **_token_answer(record)}, status=201)


async def _issue_user_token(
    api: AdminApi, request: web.Request, principal: Principal
) -> web.Response:
    user_id = _user_id(request)
    _need_operator(principal)
    if api.reader.snapshot.get(KINDS["users"].key(user_id)) is None:
        raise ApiError(404, f"no User {user_id}: PUT /v1/users/{user_id} first")
    return await _issue(api, principal, user_id)


async def _list_user_tokens(
    api: AdminApi, request: web.Request, principal: Principal
) -> web.Response:
    user_id = _user_id(request)
    _need_user_access(principal, user_id)
    tokens = [_token_answer(t) for t in api.reader.snapshot.tokens.values() if t.user_id == user_id]
    return _json({"tokens": sorted(tokens, key=lambda t: t["created_at_ms"])})


async def _revoke_user_token(
    api: AdminApi, request: web.Request, principal: Principal
) -> web.Response:
    user_id = _user_id(request)
    _need_operator(principal)
    record = api.reader.snapshot.tokens.get(request.match_info["token_id"])
    if record is None or record.user_id != user_id:
        raise ApiError(404, f"User {user_id} has no token {request.match_info['token_id']!r}")
    await api.writer.revoke_token(record, by=principal.label())
    return _json({"revoked": record.token_id})


async def _issue_operator_token(
    api: AdminApi, request: web.Request, principal: Principal
) -> web.Response:
    _need_operator(principal)
    return await _issue(api, principal, None)


async def _list_operator_tokens(
    api: AdminApi, request: web.Request, principal: Principal
) -> web.Response:
    _need_operator(principal)
    tokens = [_token_answer(t) for t in api.reader.snapshot.tokens.values() if t.user_id is None]
    return _json({"tokens": sorted(tokens, key=lambda t: t["created_at_ms"])})


async def _revoke_operator_token(
    api: AdminApi, request: web.Request, principal: Principal
) -> web.Response:
    _need_operator(principal)
    record = api.reader.snapshot.tokens.get(request.match_info["token_id"])
    if record is None or record.user_id is not None:
        raise ApiError(404, f"no operator token {request.match_info['token_id']!r}")
    await api.writer.revoke_token(record, by=principal.label())
    return _json({"revoked": record.token_id})


async def _audit(api: AdminApi, request: web.Request, principal: Principal) -> web.Response:
    _need_operator(principal)
    records = api.audit.query(
        key_prefix=request.query.get("key_prefix", ""),
        by=request.query.get("by"),
        since_ms=_int_param(request, "since_ms", 0, 0, 2**63 - 1),
        until_ms=_int_param(request, "until_ms", 2**63 - 1, 0, 2**63 - 1),
        limit=_int_param(request, "limit", 100, 1, 10_000),
    )
    return web.Response(
        body=b'{"records":' + msgspec.json.encode(records) + b"}",
        content_type="application/json",
    )


_users_get, _users_put = _per_user("users")


def _item_routes(
    kind_name: str, path: str, noun: str, who_get: str, who_put: str
) -> tuple[Route, Route]:
    """GET and PUT of one configuration item."""
    kind = KINDS[kind_name]
    get, put = _per_user(kind_name) if kind.per_user else _singleton(kind_name)
    return (
        Route("GET", path, get, f"Get {noun}", who_get, answer=kind.body),
        Route("PUT", path, put, f"Set {noun}", who_put, body=kind.body, answer=kind.body),
    )


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/users", _list_users, "List Users (a User token sees itself)", _OWN),
    Route("GET", "/v1/users/{user_id}", _users_get, "Get a User", _OWN, answer=KINDS["users"].body),
    Route("PUT", "/v1/users/{user_id}", _users_put, "Create or change a User", _OP,
          body=KINDS["users"].body, answer=KINDS["users"].body),
    Route("DELETE", "/v1/users/{user_id}", _delete_user, "Delete a User", _OP),
    Route("GET", "/v1/users/{user_id}/tokens", _list_user_tokens, "List a User's tokens", _OWN),
    Route("POST", "/v1/users/{user_id}/tokens", _issue_user_token,
          "Issue a token bound to the User; the secret is shown once", _OP),
    Route("DELETE", "/v1/users/{user_id}/tokens/{token_id}", _revoke_user_token,
          "Revoke a User's token", _OP),
    Route("GET", "/v1/operators/tokens", _list_operator_tokens, "List operator tokens", _OP),
    Route("POST", "/v1/operators/tokens", _issue_operator_token,
          "Issue an operator token; the secret is shown once", _OP),
    Route("DELETE", "/v1/operators/tokens/{token_id}", _revoke_operator_token,
          "Revoke an operator token", _OP),
    Route("GET", "/v1/allocations", _list_per_user("allocations"),
          "List allocations (a User token sees its own)", _OWN),
    Route("GET", "/v1/adt/users", _list_per_user("adt.users"),
          "List Users' ADT values (a User token sees its own)", _OWN),
    *_item_routes("allocations", "/v1/allocations/{user_id}", "a User's allocation (SECMP0067)",
                  _OWN, _OP),
    *_item_routes("adt.users", "/v1/adt/users/{user_id}", "a User's ADT values", _OWN, _OWN_W),
    *_item_routes("adt.dcc", "/v1/adt/dcc", "the DCC-wide ADT values", _OP, _OP),
    *_item_routes("alerts.exclusions", "/v1/alerts/exclusions",
                  "the alert exclusion list (SECMP0062)", _OP, _OP),
    *_item_routes("alerts.storm-policy", "/v1/alerts/storm-policy", "the alert-storm parameters",
                  _OP, _OP),
    *_item_routes("traffic", "/v1/traffic", "traffic management (SECMP0067)", _OP, _OP),
    *_item_routes("alerts.regional-capacity", "/v1/alerts/regional-capacity",
                  "the forwarded-alert capacity per CSP region", _OP, _OP),
    *_item_routes("alerts.mp102", "/v1/alerts/mp102",
                  "the MP102 rule for outage alerts after firmware activation", _OP, _OP),
    *QUARANTINE_ROUTES,
    Route("GET", "/v1/audit", _audit, "Audit trail, newest first", _OP),
)  # fmt: skip
