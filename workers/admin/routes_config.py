"""The admin API's configuration routes: each item kind of `workers.config.model` (a User's
allocation and ADT values, the DCC-wide ADT values, traffic management, the alert settings),
read with its version and replaced whole, with optimistic concurrency.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.routing import (
    FORBIDDEN,
    WHO_OPERATOR,
    WHO_OWN_READ,
    WHO_OWN_WRITE,
    ApiError,
    Handler,
    Route,
    etag,
    expected_version,
    json_answer,
    need_operator,
    need_user_access,
    read_body,
    user_id_param,
    with_version,
)
from workers.admin.tokens import Principal
from workers.config.explain import describe
from workers.config.model import KINDS, Kind, validate_item

__all__ = ["CONFIG_ROUTES", "get_item", "per_user_handlers", "put_item"]


def convert_body(kind: Kind, user_id: str | None, doc: dict[str, Any]) -> msgspec.Struct:
    try:
        body: msgspec.Struct = msgspec.convert(doc, type=kind.body)
        validate_item(kind, user_id, body)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid {kind.name} body: {describe(exc, kind.body)}") from None
    except ValueError as exc:
        raise ApiError(422, f"invalid {kind.name} body: {exc}") from None
    return body


async def get_item(api: AdminContext, kind: Kind, user_id: str | None) -> web.Response:
    """The item of `kind` (for `user_id`) with its version, or 404."""
    item = api.reader.snapshot.get(kind.key(user_id))
    if item is None:
        whose = f" for User {user_id}" if user_id else ""
        raise ApiError(404, f"no {kind.name} configured{whose}")
    return json_answer(with_version(item), headers=etag(item))


async def put_item(
    api: AdminContext, request: web.Request, principal: Principal, kind: Kind, user_id: str | None
) -> web.Response:
    """Replace the item of `kind` (for `user_id`) with the request's body, checked."""
    doc = await read_body(request)
    expected = expected_version(request, doc)
    body = convert_body(kind, user_id, doc)
    item = await api.writer.put(
        kind.key(user_id), body, by=principal.label(), expected_version=expected
    )
    return json_answer(with_version(item), headers=etag(item))


def per_user_handlers(kind_name: str) -> tuple[Handler, Handler]:
    kind = KINDS[kind_name]

    async def get(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
        user_id = user_id_param(request)
        need_user_access(principal, user_id)
        if not principal.is_operator and not kind.user_readable:
            raise ApiError(403, FORBIDDEN)
        return await get_item(api, kind, user_id)

    async def put(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
        user_id = user_id_param(request)
        need_user_access(principal, user_id)
        if not principal.is_operator and not kind.user_writable:
            raise ApiError(403, FORBIDDEN)
        if kind.name != "users" and api.reader.snapshot.get(KINDS["users"].key(user_id)) is None:
            raise ApiError(404, f"no User {user_id}: PUT /v1/users/{user_id} first")
        return await put_item(api, request, principal, kind, user_id)

    return get, put


def _list_per_user(kind_name: str) -> Handler:
    kind = KINDS[kind_name]
    prefix = kind.name + "/"

    async def listing(
        api: AdminContext, request: web.Request, principal: Principal
    ) -> web.Response:
        if not principal.is_operator and not kind.user_readable:
            raise ApiError(403, FORBIDDEN)
        items = {
            key[len(prefix) :]: with_version(item)
            for key, item in api.reader.snapshot.items.items()
            if key.startswith(prefix) and principal.may_act_for(key[len(prefix) :])
        }
        return json_answer({"items": items})

    return listing


def _singleton(kind_name: str) -> tuple[Handler, Handler]:
    kind = KINDS[kind_name]

    async def get(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
        need_operator(principal)
        return await get_item(api, kind, None)

    async def put(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
        need_operator(principal)
        return await put_item(api, request, principal, kind, None)

    return get, put


def _item_routes(
    kind_name: str, path: str, noun: str, who_get: str, who_put: str
) -> tuple[Route, Route]:
    """GET and PUT of one configuration item."""
    kind = KINDS[kind_name]
    get, put = per_user_handlers(kind_name) if kind.per_user else _singleton(kind_name)
    return (
        Route("GET", path, get, f"Get {noun}", who_get, answer=kind.body),
        Route("PUT", path, put, f"Set {noun}", who_put, body=kind.body, answer=kind.body),
    )


CONFIG_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/allocations",
        _list_per_user("allocations"),
        "List allocations (a User token sees its own)",
        WHO_OWN_READ,
    ),
    Route(
        "GET",
        "/v1/adt/users",
        _list_per_user("adt.users"),
        "List Users' ADT values (a User token sees its own)",
        WHO_OWN_READ,
    ),
    *_item_routes(
        "allocations",
        "/v1/allocations/{user_id}",
        "a User's allocation (SECMP0067)",
        WHO_OWN_READ,
        WHO_OPERATOR,
    ),
    *_item_routes(
        "adt.users", "/v1/adt/users/{user_id}", "a User's ADT values", WHO_OWN_READ, WHO_OWN_WRITE
    ),
    *_item_routes("adt.dcc", "/v1/adt/dcc", "the DCC-wide ADT values", WHO_OPERATOR, WHO_OPERATOR),
    *_item_routes(
        "alerts.exclusions",
        "/v1/alerts/exclusions",
        "the alert exclusion list (SECMP0062)",
        WHO_OPERATOR,
        WHO_OPERATOR,
    ),
    *_item_routes(
        "alerts.storm-policy",
        "/v1/alerts/storm-policy",
        "the alert-storm parameters",
        WHO_OPERATOR,
        WHO_OPERATOR,
    ),
    *_item_routes(
        "traffic", "/v1/traffic", "traffic management (SECMP0067)", WHO_OPERATOR, WHO_OPERATOR
    ),
    *_item_routes(
        "alerts.regional-capacity",
        "/v1/alerts/regional-capacity",
        "the forwarded-alert capacity per CSP region",
        WHO_OPERATOR,
        WHO_OPERATOR,
    ),
    *_item_routes(
        "alerts.mp102",
        "/v1/alerts/mp102",
        "the MP102 rule for outage alerts after firmware activation",
        WHO_OPERATOR,
        WHO_OPERATOR,
    ),
)
