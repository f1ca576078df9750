"""What every admin API handler shares: the route record, error answers, access checks.

Every `routes_*.py` module builds its `Route`s from these pieces; `app.py` assembles them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from aiohttp import web

from broker.wire_guard import json_problem
from workers.admin.context import AdminContext
from workers.admin.tokens import Principal
from workers.config.model import USER_ID_PATTERN
from workers.config.snapshot import Item

__all__ = [
    "BODY_TIMEOUT_S",
    "FORBIDDEN",
    "MAX_BODY_BYTES",
    "MAX_DIGITS",
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
BODY_TIMEOUT_S = 10.0
"""A request body must arrive within this long once its headers have (408 otherwise), so a
client trickling a body cannot hold a connection (the headers' own limit: runtime/http.py)."""
MAX_DIGITS = 19
"""Most digits of a whole number in a query parameter or If-Match (2**63 - 1 has 19):
longer is refused before `int()` sees it (Python refuses over 4,300 digits with ValueError)."""
# ASCII 0-9 only: str.isdigit and int() also accept other scripts' digits ("٣", "²").
_WHOLE_NUMBER = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")
_JSON_CHARSETS = (None, "utf-8")


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


def _whole_number(raw: str) -> int | None:
    """`raw` as a whole number if it is 1 to MAX_DIGITS ASCII digits, else None."""
    return int(raw) if _WHOLE_NUMBER.fullmatch(raw) else None


def _check_json_type(request: web.Request) -> None:
    """415 unless a body is sent as `application/json` (charset, if given, UTF-8)."""
    charset = request.charset.lower() if request.charset else None
    if request.content_type != "application/json" or charset not in _JSON_CHARSETS:
        given = request.headers.get("Content-Type", "none")[:100]
        raise ApiError(
            415,
            f"the body must be sent with Content-Type: application/json (charset, if "
            f"given, utf-8), not {given!r}",
        )


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body: 415 not sent as JSON, 408 not all there within
    BODY_TIMEOUT_S, 413 over MAX_BODY_BYTES, 400 not JSON or JSON whose meaning depends on
    the reader (a key twice in one object, invalid UTF-8, a lone surrogate, nesting over 32
    levels: `broker.wire_guard`), 422 not an object."""
    if request.body_exists:
        _check_json_type(request)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s; send it again"
        ) from None
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    problem = json_problem(raw)
    if problem is not None:
        # Checked before parsing: orjson keeps the last of two equal keys, another reader
        # the first; what is validated must be what every reader of the record sees.
        raise ApiError(400, f"the body is not acceptable JSON: {problem}")
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
    value = _whole_number(raw)
    if value is None or not low <= value <= high:
        raise ApiError(422, f"query parameter {name} must be a whole number from {low} to {high}")
    return value


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
    errors: tuple[tuple[str, str], ...] = ()
    """Error answers of this route beyond the common ones: (status, meaning)."""


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
        number = _whole_number(request.headers["If-Match"].strip().strip('"'))
        if number is None:
            raise ApiError(422, 'If-Match must be the version number you read, e.g. "3"')
        return number
    if version is not None and (type(version) is not int or version < 0):
        raise ApiError(422, "version must be the whole number you read with GET")
    return version
