"""What every admin API handler shares: the route record, error answers, access checks.

Every `routes_*.py` module builds its `Route`s from these pieces; `app.py` assembles them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.tokens import Principal
from workers.config.model import USER_ID_PATTERN
from workers.config.snapshot import Item

__all__ = [
    "FORBIDDEN",
    "MAX_BODY_BYTES",
    "WHO_OPERATOR",
    "WHO_OWN_READ",
    "WHO_OWN_WRITE",
    "ApiError",
    "Handler",
    "QueryParam",
    "Route",
    "error_answer",
    "etag",
    "expected_version",
    "int_param",
    "json_answer",
    "need_operator",
    "need_user_access",
    "read_body",
    "user_id_param",
    "with_version",
]

Handler = Callable[[AdminContext, web.Request, Principal], Awaitable[web.Response]]
MAX_BODY_BYTES = 1024 * 1024


class QueryParam(msgspec.Struct, frozen=True):
    """One documented query parameter of a route: its name, JSON schema and meaning."""

    name: str
    schema: dict[str, Any]
    description: str


def json_answer(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`body` as a JSON answer."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_answer(status: int, message: str) -> web.Response:
    """The API's error shape: `{"error": message}`."""
    return json_answer({"error": message}, status)


class ApiError(Exception):
    """An error answer: status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


FORBIDDEN = "forbidden: this token may not do that"


def need_operator(principal: Principal) -> None:
    """403 unless an operator calls."""
    if not principal.is_operator:
        raise ApiError(403, FORBIDDEN)


def need_user_access(principal: Principal, user_id: str) -> None:
    """403 unless an operator or the User `user_id` itself calls."""
    if not principal.may_act_for(user_id):
        raise ApiError(403, FORBIDDEN)


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body: 413 over MAX_BODY_BYTES, 400 not JSON, 422 not an object."""
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "the body must be a JSON object")
    return doc


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as a whole number from low to high (422 otherwise)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(422, f"query parameter {name} must be a whole number from {low} to {high}")
    return int(raw)


@dataclass(frozen=True)
class Route:
    """One API route: what it does, who may call it, and its body and answer types."""

    method: str
    path: str
    handler: Handler
    summary: str
    who: str
    body: type[msgspec.Struct] | None = None
    answer: type[msgspec.Struct] | None = None
    query: tuple[QueryParam, ...] = ()


WHO_OPERATOR = "operator"
WHO_OWN_READ = "operator, or a User token for its own User (read)"
WHO_OWN_WRITE = "operator, or a User token for its own User (read and change)"

_USER_ID = re.compile(USER_ID_PATTERN)


def user_id_param(request: web.Request) -> str:
    """The `{user_id}` of the path, checked (404 when it is not a User ID)."""
    user_id = request.match_info["user_id"]
    if not _USER_ID.fullmatch(user_id):
        raise ApiError(
            404,
            "a User ID is 8 hyphen-separated upper-case hex octets, like 90-B3-D5-1F-30-01-00-00",
        )
    return user_id


def with_version(item: Item) -> dict[str, Any]:
    """The item's body as JSON with its `version`."""
    doc: dict[str, Any] = orjson.loads(item.raw)
    doc["version"] = item.version
    return doc


def etag(item: Item) -> dict[str, str]:
    """The item's version as an ETag header."""
    return {"ETag": f'"{item.version}"'}


def expected_version(request: web.Request, doc: dict[str, Any]) -> int | None:
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
