"""The admin API's configuration routes: each item kind of `workers.config.model` (a User's
allocation and ADT values, the DCC-wide ADT values, traffic management, the alert settings),
read with its version and replaced whole, with optimistic concurrency.

A GET answers the value in force (`workers.config.defaults.effective`): the item as set,
with `"source": "file"` or `"api"`, or the built-in default the workers apply, with
`"source": "default"`, `"version": 0` and a `note`. `GET /v1/config` answers every item in
force at once. A PUT with `?dry_run=true` checks the body and the version and answers what
would change, writing nothing.
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
    QueryParam,
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
from workers.admin.writer import VersionConflictError
from workers.config.defaults import ENVELOPE_KEYS, as_json, effective, source_of
from workers.config.explain import describe
from workers.config.model import KINDS, Kind, validate_item
from workers.config.snapshot import ConfigSnapshot

__all__ = ["CONFIG_ROUTES", "config_in_force", "get_item", "per_user_handlers", "put_item"]

_DRY_RUN = QueryParam(
    "dry_run",
    {"type": "boolean"},
    "true: check the body and the version and answer what would change; write nothing",
)
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")

# Where each kind is read and changed ({user_id} for per-User kinds).
PATHS: dict[str, str] = {
    "users": "/v1/users/{user_id}",
    "allocations": "/v1/allocations/{user_id}",
    "adt.users": "/v1/adt/users/{user_id}",
    "adt.dcc": "/v1/adt/dcc",
    "alerts.exclusions": "/v1/alerts/exclusions",
    "alerts.storm-policy": "/v1/alerts/storm-policy",
    "traffic": "/v1/traffic",
    "alerts.regional-capacity": "/v1/alerts/regional-capacity",
    "alerts.mp102": "/v1/alerts/mp102",
}


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
    """The item of `kind` (for `user_id`) in force, with its version and source; 404 only
    for a User that is not registered (a User has no default)."""
    snapshot = api.reader.snapshot
    doc = effective(snapshot, kind, user_id)
    if doc is None:
        raise ApiError(404, f"no User {user_id}")
    item = snapshot.get(kind.key(user_id))
    return json_answer(doc, headers={"ETag": f'"{0 if item is None else item.version}"'})


def dry_run_param(request: web.Request) -> bool:
    """The `dry_run` query parameter (422 unless true or false)."""
    raw = request.query.get("dry_run")
    if raw is None or raw.lower() in _FALSE:
        return False
    if raw.lower() in _TRUE:
        return True
    raise ApiError(422, "query parameter dry_run must be true or false")


def _fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ENVELOPE_KEYS}


def dry_run_answer(
    snapshot: ConfigSnapshot,
    kind: Kind,
    user_id: str | None,
    body: msgspec.Struct,
    expected: int | None,
) -> dict[str, Any]:
    """What a PUT of `body` would change, checked as the PUT would be (409 on a version
    conflict), written nowhere."""
    key = kind.key(user_id)
    item = snapshot.get(key)
    current_version = None if item is None else item.version
    if expected is not None and expected != (current_version or 0):
        raise VersionConflictError(key, expected, current_version)
    now = effective(snapshot, kind, user_id)
    before = {} if now is None else _fields(now)
    after = as_json(body)
    changes = {
        name: {"from": before.get(name), "to": after.get(name)}
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    }
    would_write = item is None or msgspec.json.encode(body) != item.raw
    return {
        "dry_run": True,
        "key": key,
        "would_write": would_write,
        "changes": changes,
        "version": current_version or 0,
        "version_after": (current_version or 0) + 1 if would_write else current_version or 0,
        "source": "default" if now is None else now["source"],
    }


async def put_item(
    api: AdminContext, request: web.Request, principal: Principal, kind: Kind, user_id: str | None
) -> web.Response:
    """Replace the item of `kind` (for `user_id`) with the request's body, checked; with
    `?dry_run=true`, answer what would change instead."""
    dry_run = dry_run_param(request)
    doc = await read_body(request)
    expected = expected_version(request, doc)
    body = convert_body(kind, user_id, doc)
    if dry_run:
        return json_answer(dry_run_answer(api.reader.snapshot, kind, user_id, body, expected))
    item = await api.writer.put(
        kind.key(user_id), body, by=principal.label(), expected_version=expected
    )
    return json_answer({**with_version(item), "source": source_of(item)}, headers=etag(item))


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
            key[len(prefix) :]: {**with_version(item), "source": source_of(item)}
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
        Route("GET", path, get, f"Get {noun} in force", who_get, answer=kind.body),
        Route(
            "PUT",
            path,
            put,
            f"Set {noun} (?dry_run=true: what would change)",
            who_put,
            body=kind.body,
            answer=kind.body,
            query=(_DRY_RUN,),
        ),
    )


def _entry(snapshot: ConfigSnapshot, key: str, kind: Kind, user_id: str | None) -> dict[str, Any]:
    item = snapshot.get(key)
    if item is not None:
        doc = {**with_version(item), "source": source_of(item)}
    else:
        doc = effective(snapshot, kind, user_id) or {}
    path = PATHS.get(kind.name)
    return {
        "key": key,
        "kind": kind.name,
        "user_id": user_id,
        "path": None if path is None else _path(path, key),
        "source": doc.get("source", "default"),
        "version": doc.get("version", 0),
        "by": None if item is None else item.by,
        "at_ms": None if item is None else item.at_ms,
        "note": doc.get("note"),
        "value": _fields(doc),
    }


def _path(template: str, key: str) -> str:
    _, _, rest = key.partition("/")
    return template.replace("{user_id}", rest)


def config_in_force(snapshot: ConfigSnapshot) -> list[dict[str, Any]]:
    """Every item in force: each singleton kind (its default if never set), for every User
    registered or with an item of its own its allocation and ADT values (their defaults if
    never set), and every other item configured; each with its key, path, source, version,
    who set it and when (null for a default), and its value."""
    users = sorted({key.split("/")[1] for key in snapshot.items if "/" in key})
    wanted: dict[str, tuple[Kind, str | None]] = {
        kind.key(): (kind, None) for kind in KINDS.values() if not kind.per_user
    }
    for user_id in users:
        for kind in KINDS.values():
            if kind.per_user and not kind.per_month and kind.name != "users":
                wanted[kind.key(user_id)] = (kind, user_id)
    for key in snapshot.items:
        if key not in wanted:
            name, _, rest = key.partition("/")
            if name in KINDS:
                wanted[key] = (KINDS[name], rest.partition("/")[0] or None)
    return [_entry(snapshot, key, kind, u) for key, (kind, u) in sorted(wanted.items())]


async def _config(api: AdminContext, request: web.Request, principal: Principal) -> web.Response:
    need_operator(principal)
    snapshot = api.reader.snapshot
    return json_answer({"offset": snapshot.offset, "items": config_in_force(snapshot)})


CONFIG_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/config",
        _config,
        "Every configuration item in force, with its source (default, file, api) and version",
        WHO_OPERATOR,
    ),
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
