"""Wire schemas: the JSON records on the contract's topics, as msgspec Structs.

Rules (docs/contract.md): new fields get defaults; fields are never reordered or retyped.
Unknown fields are ignored on decode, so an older worker reads a newer producer's records.
Type errors (a string where a number belongs, a missing required field) fail at decode time
and the record goes to the dead-letter topic; value rules (is this SRV known, may this role
use it) are DUIS validation and answer the User with an E code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "OUTCOMES",
    "REGIONS",
    "USER_ROLES",
    "DeviceAlert",
    "Outcome",
    "Region",
    "ServiceRequest",
    "UserResponse",
]

# The DUIS User Role abbreviations (DOMAIN.md section 1).
USER_ROLES: frozenset[str] = frozenset({"IS", "ES", "GS", "ED", "GT", "RSA", "OU"})
Region = Literal["north", "central", "south"]
REGIONS: tuple[str, ...] = ("north", "central", "south")
Outcome = Literal["accepted", "rejected", "throttled", "quarantined", "released", "deleted"]
OUTCOMES: tuple[str, ...] = (
    "accepted",
    "rejected",
    "throttled",
    "quarantined",
    "released",
    "deleted",
)

_NonNegInt = Annotated[int, Meta(ge=0)]


class ServiceRequest(Struct, frozen=True, kw_only=True):
    """A Service Request on `dcc.sr.inbound` (key: the User ID).

    `request_id`, `user_role`, `srv` and `command_variant` are checked by DUIS validation,
    not here, so that a wrong value gets the User an E-coded answer instead of silence.
    """

    request_id: str
    user_role: str
    srv: str
    command_variant: int
    body: dict[str, Any] = msgspec.field(default_factory=dict)
    region: Region | None = None
    xml: str | None = None


class UserResponse(Struct, frozen=True, kw_only=True):
    """An answer to a User on `dcc.user.responses` (key: the User ID)."""

    request_id: str
    user_id: str
    response_code: str
    outcome: Outcome
    reason: str
    rule: str | None = None
    retry_after_ms: _NonNegInt | None = None
    at_ms: _NonNegInt


class DeviceAlert(Struct, frozen=True, kw_only=True):
    """A device or DCC alert on `dcc.alerts.inbound` (key: device ID) and, per recipient,
    on `dcc.alerts.outbound` (key: recipient User ID)."""

    device_id: str
    alert_code: str
    recipients: list[str]
    region: Region | None = None
    raised_at_ms: _NonNegInt
    payload: str = ""
    throttled_alert_count: _NonNegInt | None = None
    throttled_alert_sequence_id: str | None = None
