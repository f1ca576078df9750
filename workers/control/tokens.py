"""Bearer tokens for the admin API: issued, hashed, verified.

A token reads `dcg_<token id>_<secret>`: the id says which record to check, the secret is
32 random bytes (256 bits). Only its SHA-256 is stored (on `dcc.control`, so every admin
process knows every token within a second); a plain hash is enough because the secret is
random, not a password. The first operator token comes from `DCCGATE_ADMIN_TOKEN` (or the
config file) and is never stored anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Literal

import msgspec

__all__ = [
    "TOKEN_KEY_PREFIX",
    "Principal",
    "TokenRecord",
    "authenticate",
    "hash_token",
    "new_token",
]

TOKEN_KEY_PREFIX = "tokens/"  # noqa: S105 - a key prefix on dcc.control, not a secret
_PREFIX = "dcg_"


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored token: its hash and what it may do."""

    token_id: str
    role: Literal["operator", "user"]
    user_id: str | None
    """The User the token is bound to (role `user`); None for operators."""
    sha256: str
    created_at_ms: int
    created_by: str


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


def hash_token(token: str) -> str:
    """SHA-256 of a token, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


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
