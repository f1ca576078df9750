"""ADT values as the admin API and `dcc.control` carry them: msgspec Structs, validated.

One `AdtValues` body serves a User's own ADT values and the DCC-wide ones (SEC G6,
Appendix AA: each User notifies the DCC of its ADTs "and any exceptions applicable to each
ADT"):

```json
{"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 500},
                {"srv": "11.1", "window_s": 86400, "max": 2000},
                {"srv": "*", "window_s": 86400, "max": 20000}],
 "value_rules": [{"srv": "2.2", "field": "amount", "min": 0, "max": 500},
                 {"srv": "11.3", "field": "activation_datetime", "max_days_ahead": 30}],
 "exceptions": [{"id": "fw-june", "start": "2025-06-01T00:00:00Z",
                 "end": "2025-06-08T00:00:00Z", "thresholds": {"user:U:11.1:86400": 9000}}],
 "shadow": false}
```

Checks that need no context run when a Struct is built or decoded (`__post_init__`), so a
bad body fails at decode time with msgspec's path (`- at $.thresholds[1]`). Checks that need
to know whose values these are (derived ids, `*` in DCC-wide thresholds, exception
references) run when the values are compiled (`adt.table.AdtTable`). Unknown keys are
refused: a typo such as `windows_s` must not silently drop a threshold.

Another Struct of the same keys (e.g. the admin API's body type) converts with
`convert_values(msgspec.to_builtins(body))`; `id` and `exceptions` are optional here.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from adt.errors import AdtConfigError

__all__ = [
    "ALL_SRVS",
    "MAX_DAYS_AHEAD",
    "MAX_EXCEPTIONS",
    "MAX_RULES",
    "MAX_VALUE_RULES_PER_SRV",
    "MAX_WINDOWS_PER_SRV",
    "MAX_WINDOW_S",
    "MIN_WINDOW_S",
    "AdtValues",
    "ExceptionWindow",
    "Threshold",
    "ValueRule",
    "convert_values",
    "decode_values",
    "encode_values",
]

ALL_SRVS = "*"
"""The `srv` of a User threshold that counts every SRV together (SEC G6: "in total")."""

MIN_WINDOW_S = 1
MAX_WINDOW_S = 31 * 86_400
"""Counting windows run from 1 s to 31 days (a month of traffic)."""

MAX_DAYS_AHEAD = 3_660
MAX_RULES = 1_000
"""At most this many thresholds, and this many value rules, per table (a User's own values,
or the DCC-wide ones): bounds memory and compile time per User. The OpenAPI schema states it
(`maxItems`)."""

MAX_WINDOWS_PER_SRV = 4
"""At most this many window lengths per SRV in one table, and as many for "*". A request is
counted in every window of its SRV and of "*" (and of the DCC-wide SRV), so this bounds the
ADT cost of any one request: at most 12 windows, whatever the User configured elsewhere."""

MAX_VALUE_RULES_PER_SRV = 4
"""At most this many value rules per SRV in one table: each is evaluated on every request of
its SRV."""

MAX_EXCEPTIONS = 64

_SRV_RE = re.compile(r"[0-9]{1,2}(\.[0-9]{1,2}){1,2}")
_ID_RE = re.compile(r"[!-~]{1,200}")  # printable ASCII without spaces: it becomes a metric label
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

_Number = int | float


def _check_srv(srv: str, *, allow_all: bool) -> None:
    if allow_all and srv == ALL_SRVS:
        return
    if not isinstance(srv, str) or _SRV_RE.fullmatch(srv) is None:
        allowed = 'a DUIS Service Reference Variant like "7.2" or "4.1.1"'
        if allow_all:
            allowed += ', or "*" for all SRVs together'
        raise AdtConfigError(f"srv {srv!r} is not valid; allowed: {allowed}")


def _check_id(rule_id: str | None) -> None:
    if rule_id is not None and (not isinstance(rule_id, str) or _ID_RE.fullmatch(rule_id) is None):
        raise AdtConfigError(
            f"id {rule_id!r} is not valid; allowed: 1 to 200 printable ASCII characters "
            "without spaces, or leave it out to get one derived from the rule"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_FLOAT_MAX = float.fromhex("0x1.fffffffffffffp+1023")  # sys.float_info.max


def _check_number(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdtConfigError(f"{name} must be a finite number, got {value!r}")
    # An int beyond a float's range would raise OverflowError in math.isfinite (and a
    # 4,300-digit one ValueError in repr): compare it instead, exactly, and never print it.
    if isinstance(value, int):
        if abs(value) > _FLOAT_MAX:
            raise AdtConfigError(f"{name} must be a finite number, got an integer beyond 1.8e308")
    elif not math.isfinite(value):
        raise AdtConfigError(f"{name} must be a finite number, got {value!r}")


class Threshold(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A count threshold: at most `max` processed requests of `srv` in any `window_s` seconds.

    srv: a SRV like "7.2", or "*" for all SRVs together (User thresholds only).
    window_s: window length in seconds, 1 to 2,678,400 (31 days).
    max: requests allowed in the window, >= 0; the ones in excess are quarantined (0
    quarantines every request of this kind).
    id: stable rule id; default derived: "user:<user>:<srv>:<window_s>" or
    "dcc:<srv>:<window_s>". shadow: this rule only reports (the table's `shadow` puts
    every rule in shadow mode).
    """

    srv: str
    window_s: int
    max: int
    id: str | None = None
    shadow: bool = False

    def __post_init__(self) -> None:
        _check_srv(self.srv, allow_all=True)
        if not _is_int(self.window_s) or not MIN_WINDOW_S <= self.window_s <= MAX_WINDOW_S:
            raise AdtConfigError(
                f"window_s must be a whole number of seconds from {MIN_WINDOW_S} to "
                f"{MAX_WINDOW_S} (31 days), got {self.window_s!r}"
            )
        if not _is_int(self.max) or self.max < 0:
            raise AdtConfigError(
                f"max must be a whole number >= 0 (requests allowed in the window), got "
                f"{self.max!r}"
            )
        _check_id(self.id)


class ValueRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A data-value rule (SEC G6 (b)(ii)) on one field of the request `body` of one SRV.

    Either a numeric range (`min` and/or `max`, inclusive) or a date rule (`max_days_ahead`:
    an ISO-8601 date-time no more than this many days after now; e.g. SECMP0007's firmware
    activation date for 11.1/11.3), not both. A field missing from the body: the rule does
    not apply. A field of the wrong type, a non-finite number or an unparseable date: a
    breach. id: default "value:<srv>:<field>" (DCC-wide) or
    "user:<user>:value:<srv>:<field>". shadow: as for `Threshold`.
    """

    srv: str
    field: str
    min: float | None = None
    max: float | None = None
    max_days_ahead: int | None = None
    id: str | None = None
    shadow: bool = False

    def __post_init__(self) -> None:
        _check_srv(self.srv, allow_all=False)
        if not isinstance(self.field, str) or _FIELD_RE.fullmatch(self.field) is None:
            raise AdtConfigError(
                f"field {self.field!r} is not valid; allowed: the name of a top-level key of "
                "the request body (letters, digits and _, up to 64 characters)"
            )
        _check_number("min", self.min)
        _check_number("max", self.max)
        numeric = self.min is not None or self.max is not None
        if self.max_days_ahead is not None:
            if numeric:
                raise AdtConfigError(
                    f"value rule on {self.srv} {self.field} mixes min/max with max_days_ahead; "
                    "a field is either a number or a date-time: write two rules"
                )
            if not _is_int(self.max_days_ahead) or not 0 <= self.max_days_ahead <= MAX_DAYS_AHEAD:
                raise AdtConfigError(
                    f"max_days_ahead must be a whole number of days from 0 to {MAX_DAYS_AHEAD}, "
                    f"got {self.max_days_ahead!r}"
                )
        elif not numeric:
            raise AdtConfigError(
                f"value rule on {self.srv} {self.field} has no limit; give min and/or max "
                "(numbers) or max_days_ahead (days)"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise AdtConfigError(
                f"value rule on {self.srv} {self.field}: min {self.min:g} is greater than max "
                f"{self.max:g}; min must be <= max"
            )
        _check_id(self.id)


class ExceptionWindow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A declared exception (SEC Appendix AA): named thresholds raised from `start` to `end`.

    For a planned mass campaign such as a firmware roll-out. thresholds: threshold id ->
    the raised max (at least the threshold's own max). start, end: date-times with a time
    zone; the exception applies while start <= now < end and lapses by itself at `end`.
    When several active exceptions raise one threshold, the highest max applies.
    """

    id: str
    start: datetime
    end: datetime
    thresholds: Annotated[
        dict[str, int],
        Meta(
            max_length=MAX_RULES,
            description=f"threshold id -> raised max; at most {MAX_RULES} (one per threshold)",
        ),
    ]
    reason: str = ""

    def __post_init__(self) -> None:
        _check_id(self.id)
        for name, when in (("start", self.start), ("end", self.end)):
            if not isinstance(when, datetime) or when.tzinfo is None:
                raise AdtConfigError(
                    f"exception {self.id}: {name} must be a date-time with a time zone, like "
                    f'"2025-06-01T00:00:00Z", got {when!r}'
                )
        if self.end <= self.start:
            raise AdtConfigError(
                f"exception {self.id}: end {self.end.isoformat()} is not after start "
                f"{self.start.isoformat()}"
            )
        if not self.thresholds:
            raise AdtConfigError(
                f"exception {self.id} raises no threshold; give thresholds as "
                '{"<threshold id>": <raised max>}'
            )
        for rule_id, raised in self.thresholds.items():
            if not _is_int(raised) or raised < 0:
                raise AdtConfigError(
                    f"exception {self.id}: the raised max for {rule_id} must be a whole "
                    f"number >= 0, got {raised!r}"
                )

    @property
    def start_s(self) -> float:
        """`start` as seconds since the Unix epoch."""
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        """`end` as seconds since the Unix epoch."""
        return self.end.timestamp()


class AdtValues(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A User's own ADT values, or the DCC-wide ones: the body of the admin API and of the
    control record.

    shadow: every rule here is in shadow mode, whatever its own `shadow`; a shadow rule
    reports "would quarantine" and lets the request through (to try values on live
    traffic). A rule is in shadow mode when the table's or its own `shadow` is true.

    Bounds (AdtConfigError past them; the admin API answers 422): at most MAX_RULES (1,000)
    thresholds and as many value rules, MAX_WINDOWS_PER_SRV (4) window lengths per SRV and
    4 for "*", MAX_VALUE_RULES_PER_SRV (4) value rules per SRV, MAX_EXCEPTIONS (64)
    exception windows. So one request meets at most 12 count windows (its SRV's and "*" of
    its User, the DCC-wide SRV's) and 8 value rules, however many rules the User has.
    """

    thresholds: Annotated[
        tuple[Threshold, ...],
        Meta(
            max_length=MAX_RULES,
            description=f"Count thresholds: at most {MAX_RULES}, and at most "
            f'{MAX_WINDOWS_PER_SRV} window lengths per SRV and {MAX_WINDOWS_PER_SRV} for "*"',
        ),
    ] = ()
    value_rules: Annotated[
        tuple[ValueRule, ...],
        Meta(
            max_length=MAX_RULES,
            description=f"Data-value rules: at most {MAX_RULES}, and at most "
            f"{MAX_VALUE_RULES_PER_SRV} per SRV",
        ),
    ] = ()
    exceptions: Annotated[
        tuple[ExceptionWindow, ...],
        Meta(max_length=MAX_EXCEPTIONS, description=f"At most {MAX_EXCEPTIONS}"),
    ] = ()
    shadow: bool = False

    def __post_init__(self) -> None:
        if len(self.thresholds) > MAX_RULES or len(self.value_rules) > MAX_RULES:
            raise AdtConfigError(
                f"too many rules: {len(self.thresholds)} thresholds and "
                f"{len(self.value_rules)} value rules; at most {MAX_RULES} of each"
            )
        if len(self.exceptions) > MAX_EXCEPTIONS:
            raise AdtConfigError(
                f"too many exceptions: {len(self.exceptions)}; at most {MAX_EXCEPTIONS}, "
                "remove the ones that have ended"
            )
        seen: dict[tuple[str, int], int] = {}
        windows: dict[str, list[int]] = {}
        for i, t in enumerate(self.thresholds):
            j = seen.setdefault((t.srv, t.window_s), i)
            if j != i:
                raise AdtConfigError(
                    f"thresholds[{j}] and thresholds[{i}] both count SRV {t.srv} over "
                    f"{t.window_s} s; keep one (the lower max is the one that would bite)"
                )
            windows.setdefault(t.srv, []).append(t.window_s)
        for srv, lengths in windows.items():
            if len(lengths) > MAX_WINDOWS_PER_SRV:
                what = 'all SRVs together ("*")' if srv == ALL_SRVS else f"SRV {srv}"
                shown = ", ".join(str(w) for w in sorted(lengths))
                # Every request is counted in each window of its SRV and of "*": the bound
                # keeps one User's values from making every request (anyone's) slower.
                raise AdtConfigError(
                    f"thresholds: {len(lengths)} window lengths for {what} ({shown} s); at "
                    f"most {MAX_WINDOWS_PER_SRV} per SRV, and {MAX_WINDOWS_PER_SRV} for "
                    '"*": keep the ones that matter (e.g. 60, 3600 and 86400) and remove '
                    "the others"
                )
        per_srv: dict[str, int] = {}
        for r in self.value_rules:
            per_srv[r.srv] = per_srv.get(r.srv, 0) + 1
        for srv, n in per_srv.items():
            if n > MAX_VALUE_RULES_PER_SRV:
                raise AdtConfigError(
                    f"value_rules: {n} rules for SRV {srv}; at most "
                    f"{MAX_VALUE_RULES_PER_SRV} per SRV (each is checked on every request of "
                    "the SRV): remove the others"
                )
        exception_ids: set[str] = set()
        for e in self.exceptions:
            if e.id in exception_ids:
                raise AdtConfigError(f"two exceptions have the id {e.id}; ids must be unique")
            exception_ids.add(e.id)


_decoder = msgspec.json.Decoder(AdtValues)
_encoder = msgspec.json.Encoder()


def decode_values(data: bytes | str) -> AdtValues:
    """Decode and validate an `AdtValues` JSON body; raise AdtConfigError naming the key."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise AdtConfigError(f"ADT values are not valid: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise AdtConfigError(f"ADT values are not valid JSON: {exc}") from exc


def convert_values(obj: Any) -> AdtValues:
    """Validate already-decoded builtins (e.g. from a YAML or TOML file) as `AdtValues`."""
    try:
        return msgspec.convert(obj, AdtValues)
    except msgspec.ValidationError as exc:
        raise AdtConfigError(f"ADT values are not valid: {exc}") from exc


def encode_values(values: AdtValues) -> bytes:
    """`values` as JSON, omitting nothing (defaults included) so a reader sees every key."""
    return _encoder.encode(values)
