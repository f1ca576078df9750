"""The admin API's Users and tokens: create, change and delete Users; issue (shown once),
list and revoke User and operator tokens.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.routes_config import per_user_handlers
from workers.admin.routing import (
    WHO_OPERATOR,
    WHO_OWN_READ,
    ApiError,
    Route,
    expected_version,
    json_answer,
    need_operator,
    need_user_access,
    user_id_param,
    with_version,
)
from workers.admin.tokens import Principal, new_token
from workers.config.defaults import source_of
from workers.config.model import KINDS
from workers.config.tokens import TokenRecord, hash_token

__all__ = ["USER_ROUTES"]


async def _list_users(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    snapshot = api.reader.snapshot
    out = {}
    for key, item in snapshot.items.items():
        if key.startswith("users/"):
            user_id = key[len("users/") :]
            if principal.may_act_for(user_id):
                out[user_id] = {**with_version(item), "source": source_of(item)}
    return json_answer({"users": out})


async def _delete_user(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    """Delete a User and revoke its tokens; its allocation and ADT values stay (audited,
    and in force again if the User is re-created) until deleted or replaced."""
    user_id = user_id_param(request)
    need_operator(principal)
    expected = expected_version(request, {})
    if not await api.writer.delete(
        KINDS["users"].key(user_id), by=principal.label(), expected_version=expected
    ):
        raise ApiError(404, f"no users configured for User {user_id}")
    revoked = [t for t in api.reader.snapshot.tokens.values() if t.user_id == user_id]
    for token in revoked:
        await api.writer.revoke_token(token, by=principal.label())
    return json_answer({"deleted": user_id, "revoked_tokens": sorted(t.token_id for t in revoked)})


def _token_answer(record: TokenRecord) -> dict[str, Any]:
    return {
        "token_id": record.token_id,
        "role": record.role,
        "user_id": record.user_id,
        "created_at_ms": record.created_at_ms,
        "created_by": record.created_by,
    }


async def _issue(api: AdminContext, principal: Principal, user_id: str | None) -> web.Response:
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
    return json_answer({"token": token, **_token_answer(record)}, status=201)


async def _issue_user_token(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    user_id = user_id_param(request)
    need_operator(principal)
    if api.reader.snapshot.get(KINDS["users"].key(user_id)) is None:
        raise ApiError(404, f"no User {user_id}: PUT /v1/users/{user_id} first")
    return await _issue(api, principal, user_id)


async def _list_user_tokens(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    user_id = user_id_param(request)
    need_user_access(principal, user_id)
    tokens = [_token_answer(t) for t in api.reader.snapshot.tokens.values() if t.user_id == user_id]
    return json_answer({"tokens": sorted(tokens, key=lambda t: t["created_at_ms"])})


async def _revoke_user_token(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    user_id = user_id_param(request)
    need_operator(principal)
    record = api.reader.snapshot.tokens.get(request.match_info["token_id"])
    if record is None or record.user_id != user_id:
        raise ApiError(404, f"User {user_id} has no token {request.match_info['token_id']!r}")
    await api.writer.revoke_token(record, by=principal.label())
    return json_answer({"revoked": record.token_id})


async def _issue_operator_token(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    need_operator(principal)
    return await _issue(api, principal, None)


async def _list_operator_tokens(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    need_operator(principal)
    tokens = [_token_answer(t) for t in api.reader.snapshot.tokens.values() if t.user_id is None]
    return json_answer({"tokens": sorted(tokens, key=lambda t: t["created_at_ms"])})


async def _revoke_operator_token(
    api: AdminContext, request: web.Request, principal: Principal
) -> web.Response:
    need_operator(principal)
    record = api.reader.snapshot.tokens.get(request.match_info["token_id"])
    if record is None or record.user_id is not None:
        raise ApiError(404, f"no operator token {request.match_info['token_id']!r}")
    await api.writer.revoke_token(record, by=principal.label())
    return json_answer({"revoked": record.token_id})


_get_user, _put_user = per_user_handlers("users")

USER_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/users", _list_users, "List Users (a User token sees itself)", WHO_OWN_READ),
    Route(
        "GET",
        "/v1/users/{user_id}",
        _get_user,
        "Get a User",
        WHO_OWN_READ,
        answer=KINDS["users"].body,
    ),
    Route(
        "PUT",
        "/v1/users/{user_id}",
        _put_user,
        "Create or change a User",
        WHO_OPERATOR,
        body=KINDS["users"].body,
        answer=KINDS["users"].body,
    ),
    Route("DELETE", "/v1/users/{user_id}", _delete_user, "Delete a User", WHO_OPERATOR),
    Route(
        "GET", "/v1/users/{user_id}/tokens", _list_user_tokens, "List a User's tokens", WHO_OWN_READ
    ),
    Route(
        "POST",
        "/v1/users/{user_id}/tokens",
        _issue_user_token,
        "Issue a token bound to the User; the secret is shown once",
        WHO_OPERATOR,
    ),
    Route(
        "DELETE",
        "/v1/users/{user_id}/tokens/{token_id}",
        _revoke_user_token,
        "Revoke a User's token",
        WHO_OPERATOR,
    ),
    Route(
        "GET", "/v1/operators/tokens", _list_operator_tokens, "List operator tokens", WHO_OPERATOR
    ),
    Route(
        "POST",
        "/v1/operators/tokens",
        _issue_operator_token,
        "Issue an operator token; the secret is shown once",
        WHO_OPERATOR,
    ),
    Route(
        "DELETE",
        "/v1/operators/tokens/{token_id}",
        _revoke_operator_token,
        "Revoke an operator token",
        WHO_OPERATOR,
    ),
)
