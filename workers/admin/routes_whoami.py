"""`GET /v1/whoami`: who the token in `Authorization` is (the console asks it at sign-in to
know which sections to show; the API still checks every call itself)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from workers.admin.context import AdminContext
from workers.admin.routing import Route, json_answer
from workers.admin.tokens import Principal

__all__ = ["WHOAMI_ROUTES", "WhoAmI"]


class WhoAmI(msgspec.Struct, frozen=True, kw_only=True):
    """The caller: `role` operator or user, the `user_id` a User token is bound to (null
    for an operator), and the token's id (never its secret)."""

    role: str
    user_id: str | None
    token_id: str


async def _whoami(_: AdminContext, __: web.Request, principal: Principal) -> web.Response:
    return json_answer(
        msgspec.to_builtins(
            WhoAmI(role=principal.role, user_id=principal.user_id, token_id=principal.token_id)
        )
    )


WHOAMI_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/whoami", _whoami, "Who this token is", "any valid token", answer=WhoAmI),
)
