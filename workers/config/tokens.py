"""Bearer tokens for the admin API as `dcc.control` stores them: the record and the hash.

Issuing and verifying tokens is the admin process's (`workers.admin.tokens`). A token reads
`dcg_<token id>_<secret>`: the id says which record to check, the secret is 32 random bytes
(256 bits). Only its SHA-256 is stored (on `dcc.control`, so every admin process knows
every token within a second); a plain hash is enough because the secret is random, not a
password. The first operator token comes from `DCCGATE_TOKEN` (or the config file) and is
never stored anywhere.

`DCCGATE_TOKEN` is also the variable every client reads (`dccgate admin`, `dccgate
loadtest`), so one `export` serves both ends on a workstation. `DCCGATE_ADMIN_TOKEN`, its
former name for the first operator token, is still read when `DCCGATE_TOKEN` is not set,
with a warning (once per process): rename it.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from typing import Literal, TextIO

import msgspec

__all__ = [
    "DEPRECATED_TOKEN_ENV",
    "TOKEN_ENV",
    "TOKEN_KEY_PREFIX",
    "TOKEN_PREFIX",
    "TokenRecord",
    "hash_token",
    "token_from_env",
]

TOKEN_ENV = "DCCGATE_TOKEN"  # noqa: S105 - the name of a variable, not a secret
DEPRECATED_TOKEN_ENV = "DCCGATE_ADMIN_TOKEN"  # noqa: S105 - likewise
_warned: list[bool] = []


def token_from_env(environ: Mapping[str, str], *, warn_to: TextIO | None = None) -> str | None:
    """The token in `DCCGATE_TOKEN`, else in the deprecated `DCCGATE_ADMIN_TOKEN` (with a
    warning on `warn_to`, stderr by default, the first time only); None if neither is set."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    old = environ.get(DEPRECATED_TOKEN_ENV, "").strip()
    if not old:
        return None
    if not _warned:
        _warned.append(True)
        (warn_to or sys.stderr).write(
            f"dccgate: warning: {DEPRECATED_TOKEN_ENV} is deprecated and will be removed; "
            f"name the variable {TOKEN_ENV} (read from {DEPRECATED_TOKEN_ENV} for now)\n"
        )
    return old


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
