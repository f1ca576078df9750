"""Bearer tokens for the admin API: issued and verified (the stored form is
`workers.config.tokens`).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Literal

import msgspec

from workers.config.tokens import TOKEN_PREFIX, TokenRecord, hash_token

__all__ = ["Principal", "authenticate", "new_token"]

_PREFIX = TOKEN_PREFIX


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: an operator, or a User bound to one User ID."""

    role: Literal["operator", "user"]
    token_id: str
    user_id: str | None = None

    @property
    def is_operator(self) -> bool:
        """True for operator tokens."""
        return self.role == "operator"

    def may_act_for(self, user_id: str) -> bool:
        """Operators act for every User; a User token only for its own User ID."""
        return self.role == "operator" or self.user_id == user_id

    def label(self) -> str:
        """How the principal is named in audit records (never the secret)."""
        if self.role == "operator":
            return f"operator:{self.token_id}"
        return f"user:{self.user_id}:{self.token_id}"


def new_token() -> tuple[str, str]:
    """A fresh (token id, token): show the token once, store only its hash."""
    token_id = secrets.token_hex(6)
    return token_id, f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def authenticate(
    token: str, tokens: Mapping[str, TokenRecord], bootstrap_sha256: str | None
) -> Principal | None:
    """The principal `token` stands for, or None if it is unknown or revoked.

    Comparisons run in constant time, so response times do not reveal a hash's prefix.
    """
    digest = hash_token(token)
    if bootstrap_sha256 is not None and hmac.compare_digest(digest, bootstrap_sha256):
        return Principal("operator", "bootstrap")
    if token.startswith(_PREFIX):
        token_id = token[len(_PREFIX) :].partition("_")[0]
        record = tokens.get(token_id)
        if record is not None and hmac.compare_digest(digest, record.sha256):
            return Principal(record.role, record.token_id, record.user_id)
    return None
