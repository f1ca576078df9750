"""Wire schemas: the JSON records on the contract's topics, as msgspec Structs.

Rules (docs/contract.md): new fields get defaults; fields are never reordered or retyped.
Unknown fields are ignored on decode, so an older worker reads a newer producer's records.
Type errors (a string where a number belongs, a missing required field) fail at decode time
and the record goes to the dead-letter topic; value rules (is this SRV known, may this role
use it) are DUIS validation and answer the User with an E code.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct

from broker.wire_guard import json_problem

__all__ = [
    "MAX_ALERT_CODE_CHARS",
    "MAX_DEVICE_ID_CHARS",
    "MAX_RECIPIENTS",
    "MAX_RECIPIENT_CHARS",
    "MAX_SEQUENCE_ID_CHARS",
    "OUTCOMES",
    "REGIONS",
    "USER_ROLES",
    "AuditRecord",
    "ControlRecord",
    "DeviceAlert",
    "DeviceStormState",
    "Outcome",
    "QuarantinedRequest",
    "Region",
    "ServiceRequest",
    "StormCopyRecord",
    "StormRecord",
    "UserResponse",
]

# The DUIS User Role abbreviations (DOMAIN.md section 1), plus LC, the Load Controller:
# the DCC's reference 7.16 (Limit APC Level) request is signed by a User whose certificate
# carries role code 8, and DUIS 5.4 names a `LoadController` Remote Party Role (the
# CS02gLoadControllerBySupplier reference requests) next to Supplier (code 02 in the
# reference certificates), Access Control Broker (04) and the issuing CA (07); code 8 as
# the Load Controller is derived from that order, not quoted from the SEC (issue #16).
USER_ROLES: frozenset[str] = frozenset({"IS", "ES", "GS", "ED", "GT", "RSA", "OU", "LC"})
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
_EMPTY_OBJECT = msgspec.Raw(b"{}")
_NULL = msgspec.Raw(b"null")
_decode_body = msgspec.json.Decoder(dict[str, Any]).decode


class ServiceRequest(Struct, frozen=True, kw_only=True, gc=False):
    """A Service Request on `dcc.sr.inbound` (key: the User ID).

    `request_id`, `user_role`, `srv` and `command_variant` are checked by DUIS validation,
    not here, so that a wrong value gets the User an E-coded answer instead of silence.
    `body` and `xml` stay undecoded JSON (`msgspec.Raw`): the router forwards the original
    bytes, and only the rules that read a body value decode it (`body_values()`).
    """

    request_id: str
    user_role: str
    srv: str
    command_variant: int
    body: msgspec.Raw = msgspec.field(default_factory=lambda: _EMPTY_OBJECT)
    region: Region | None = None
    xml: msgspec.Raw = msgspec.field(default_factory=lambda: _NULL)
    """The original DUIS XML as a raw JSON string (or `null`): passed through untouched.
    (A `Raw | None` union would accept only null: msgspec cannot mix Raw into a union.)"""

    def body_is_object(self) -> bool:
        """True when `body` is a JSON object, as the contract requires."""
        view = memoryview(self.body)
        return len(view) > 0 and view[0] == 0x7B  # "{"; msgspec strips leading whitespace

    def xml_is_string_or_null(self) -> bool:
        """True when `xml` is a JSON string or null, as the contract requires."""
        view = memoryview(self.xml)
        return len(view) > 0 and view[0] in (0x22, 0x6E)  # '"' or "n" of null

    def body_values(self) -> dict[str, Any]:
        """`body` decoded (it must be an object; see `body_is_object`).

        Raises `msgspec.DecodeError`, and nothing else, when it cannot be: the reason of
        `broker.wire_guard.json_problem` (invalid UTF-8, nesting deeper than 32, a lone
        surrogate, a duplicate key; offsets within the body) for bytes no decoder should
        see, or msgspec's own error, a `msgspec.ValidationError`, when the body is not an
        object or holds a number beyond a float's range (`1e400`) or an integer of more
        than 4,300 digits. `adt.AdtEngine.check` turns such an error into a data-value
        breach.
        """
        body = bytes(self.body)
        problem = json_problem(body)
        if problem is not None:
            raise msgspec.DecodeError(f"{problem} - at `$.body`")
        return _decode_body(body)


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
    observed: int | float | str | None = None
    """What the rule measured (throttled: the User's rate, requests/s; quarantined: the
    count in the window, or the data value); null when no rule measured anything."""
    limit: int | float | None = None
    """What the rule allows, in the same unit as `observed`; null when it has none."""


MAX_DEVICE_ID_CHARS: Final = 64
"""An alert's device ID: an EUI-64 is 16 hex digits, 23 characters with separators."""
MAX_ALERT_CODE_CHARS: Final = 16
"""An alert code: GBCS hex (`8F35`, `0x8F35`) or a DCC alert (`N24`)."""
MAX_RECIPIENTS: Final = 32
"""Recipients of one alert: its device's suppliers and network operators, a handful."""
MAX_RECIPIENT_CHARS: Final = 64
"""A recipient's User ID: an EUI-64 like a device's."""
MAX_SEQUENCE_ID_CHARS: Final = 256
"""A storm's sequence ID (`throttling.storm`: prefix, device ID, code, start time)."""


class DeviceAlert(Struct, frozen=True, kw_only=True):
    """A device or DCC alert on `dcc.alerts.inbound` (key: device ID) and, per recipient,
    on `dcc.alerts.outbound` (key: recipient User ID).

    The identifying strings are bounded (an alert outside the bounds is an `invalid_schema`
    dead letter): the alert worker keeps a storm's key (device ID, code) for up to a
    million devices and writes one record per recipient, so a sender may not make either
    as large as a record."""

    device_id: Annotated[str, Meta(max_length=MAX_DEVICE_ID_CHARS)]
    alert_code: Annotated[str, Meta(max_length=MAX_ALERT_CODE_CHARS)]
    recipients: Annotated[
        list[Annotated[str, Meta(max_length=MAX_RECIPIENT_CHARS)]], Meta(max_length=MAX_RECIPIENTS)
    ]
    region: Region | None = None
    raised_at_ms: _NonNegInt
    payload: str = ""
    throttled_alert_count: _NonNegInt | None = None
    throttled_alert_sequence_id: Annotated[str, Meta(max_length=MAX_SEQUENCE_ID_CHARS)] | None = (
        None
    )


class StormRecord(Struct, frozen=True, kw_only=True):
    """One running alert storm of a device, as the alert worker snapshots it (SECMP0062;
    `throttling.StormState` plus where it stands in the input)."""

    alert_code: str
    """Canonical form (upper case, no 0x)."""
    sequence_id: str
    due_ms: _NonNegInt
    """The storm's next period boundary, epoch milliseconds."""
    pending: _NonNegInt
    """Alerts since the previous boundary, held until `due_ms` decides."""
    suppressed: _NonNegInt
    """The storm's suppressed alerts so far."""
    latest: DeviceAlert
    """The storm's latest alert (the next copy's body)."""
    start_offset: _NonNegInt
    """Input offset of the alert that started the storm."""
    through_offset: _NonNegInt
    """Input offset of the latest alert counted in this state (`latest`)."""


class StormCopyRecord(Struct, frozen=True, kw_only=True):
    """A storm copy decided with the state it is snapshotted with, until it is known to be
    written (a restore sends it again: a repeat, recognisable by sequence ID and boundary)."""

    alert: DeviceAlert
    """The copy as written to `dcc.alerts.outbound`, throttled fields set."""
    final: bool
    boundary_ms: _NonNegInt


class DeviceStormState(Struct, frozen=True, kw_only=True):
    """A device's storms on `dcc.state.alerts` (key: the device ID, partition: that of the
    device's alerts on `dcc.alerts.inbound`). A null value (tombstone): none."""

    device_id: str
    storms: list[StormRecord] = msgspec.field(default_factory=list)
    copies: list[StormCopyRecord] = msgspec.field(default_factory=list)
    at_ms: _NonNegInt = 0
    """When the snapshot was taken."""


class ControlRecord(Struct, frozen=True, kw_only=True):
    """A configuration change on `dcc.control` (key: what it configures, e.g.
    `allocations/<user_id>`). A record with a null Kafka value (a tombstone) deletes the
    key. Readers keep the last record per key: the topic is compacted on Apache Kafka, and
    not compacted on the embedded broker, where the reader does the same by itself."""

    key: str
    version: Annotated[int, Meta(ge=1)]
    value: msgspec.Raw
    """The item's body as JSON (its shape depends on the key's kind)."""
    by: str
    """Who made the change: `operator:<token id>`, `user:<user id>:<token id>`, `config-file`."""
    at_ms: _NonNegInt


class AuditRecord(Struct, frozen=True, kw_only=True):
    """One accepted change, on `dcc.audit` (key: the item's key), kept for audit.

    `action` is `put`, `delete`, `token.issue`, `token.revoke`, `quarantine.release`,
    `quarantine.delete`; `old` and `new` are the item's bodies before and after (null when
    absent; never a token's secret)."""

    at_ms: _NonNegInt
    by: str
    action: str
    key: str
    version: int | None = None
    old: msgspec.Raw = msgspec.field(default_factory=lambda: _NULL)
    new: msgspec.Raw = msgspec.field(default_factory=lambda: _NULL)


class QuarantinedRequest(Struct, frozen=True, kw_only=True, tag_field="event", tag="quarantined"):
    """A request put in quarantine by anomaly detection, on `dcc.sr.quarantine` (key: the
    User ID). The topic is the quarantine's ordered event log: this record opens an entry,
    and `released` / `deleted` / `expired` events (adt.quarantine) close it.

    `request` is the original Service Request, byte for byte, so that a release forwards
    exactly what the User sent.
    """

    id: str
    """The request's `request_id`."""
    user_id: str
    srv: str
    kind: Literal["user_adt", "dcc_adt", "data_value"]
    rule: str
    reason: str
    at_s: float
    observed: int | float | str
    limit: int | float | None = None
    response_code: str
    request: msgspec.Raw
