"""Bearer tokens for the admin API as `dcc.control` stores them: the record and the hash.

Issuing and verifying tokens is the admin process's (`workers.admin.tokens`). A token reads
`dcg_<token id>_<secret>`: the id says which record to check, the secret is 32 random bytes
(256 bits). Only its SHA-256 is stored (on `dcc.control`, so every admin process knows
every token within a second); a plain hash is enough because the secret is random, not a
password. The first operator token comes from `DCCGATE_ADMIN_TOKEN` (or the config file)
and is never stored anywhere.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

__all__ = ["TOKEN_KEY_PREFIX", "TOKEN_PREFIX", "TokenRecord", "hash_token"]

TOKEN_KEY_PREFIX = "tokens/"  # noqa: S105 - a key prefix on dcc.control, not a secret
TOKEN_PREFIX = "dcg_"  # noqa: S105 - the visible prefix of every token, not a secret


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored token: its hash and what it may do."""

    token_id: str
    role: Literal["operator", "user"]
    user_id: str | None
    """The User the token is bound to (role `user`); None for operators."""
    sha256: str
    created_at_ms: int
    created_by: str


def hash_token(token: str) -> str:
    """SHA-256 of a token, hex."""
    return hashlib.sha256(token.encode()).hexdigest()
