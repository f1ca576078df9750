"""DUIS validation of a Service Request: RequestID, User Role, SRV, Command Variant, replay.

Pure: no I/O and no clock. `DuisValidator.check` answers one request with `Validated` or a
`Rejection` whose reason names the field, the value seen and what is allowed; the caller
turns a rejection into an E-coded answer to the User.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

import msgspec

from broker.schemas import USER_ROLES, ServiceRequest
from workers.duis.catalogue import Srv
from workers.duis.request_id import request_id_problem, shorten, split_request_id

__all__ = ["DuisValidator", "RejectKind", "Rejection", "Validated"]

RejectKind = Literal[
    "invalid_request_id",
    "user_mismatch",
    "invalid_role",  # DUIS E1, invalid User Role (DOMAIN.md section 3.2)
    "unknown_srv",
    "role_not_eligible",  # DUIS E2, User Role may not use this Service Reference
    "invalid_command_variant",  # DUIS E12, Command Variant not valid for this request
    "replayed_counter",
]

_ROLES_TEXT = ", ".join(sorted(USER_ROLES))

# Evict this fraction of the pairs at once when the replay memory is full. Evicting one pair
# at a time with `next(iter(d))` is quadratic: a dict keeps deleted slots at the front of its
# entry table until it next resizes, and each `iter` walks over them again (measured 48 us per
# eviction at 200k pairs). One walk per batch spreads that cost over the batch.
_EVICT_FRACTION = 64


class Rejection(msgspec.Struct, frozen=True):
    """Why a request failed DUIS validation.

    kind: a machine-readable RejectKind. reason: for the User and the operator; names the
    field, the value seen (cut to about 80 characters) and what is allowed.
    """

    kind: RejectKind
    reason: str


class Validated(NamedTuple):
    """A request that passed `DuisValidator.check`.

    pair is "USER:TARGET", the key under which the anti-replay counter is kept. Hand the
    whole value to `DuisValidator.record_accepted` once the request is passed on.
    """

    user_id: str
    target_id: str
    counter: int
    pair: str
    srv: Srv


# `Validated(...)` runs a Python-level __new__ (about 300 ns here); tuple.__new__ on the class
# builds the same object in C for a third of that, which matters at 100k checks a second.
_new_validated: Callable[[tuple[str, str, int, str, Srv]], Validated] = functools.partial(
    tuple.__new__, Validated
)


class DuisValidator:
    """Checks Service Requests against the SRV catalogue and a per-(User, target) counter.

    catalogue: SRV -> Srv, e.g. from `load_catalogue()`; copied, so later changes to the
    mapping are not seen. replay_capacity: how many (User, target) pairs the anti-replay
    memory holds, default 1_000_000 (each costs about 170 bytes; see the benchmark figures).

    The checks run in this order and the first failure is returned:

    1. `request_id` is `USER:TARGET:COUNTER` (workers.duis.request_id).
    2. the Kafka record key, when given, equals USER: a User sends under its own ID.
    3. `user_role` is one of the seven DUIS User Roles.
    4. `srv` is in the catalogue.
    5. the role is eligible for the SRV.
    6. `command_variant` is allowed for the SRV (`Srv.allowed_command_variants`).
    7. COUNTER is strictly greater than the last accepted COUNTER for the same (USER, TARGET)
       pair. Whether DUIS demands this per originator is not confirmed (DOMAIN.md section
       2.1 marks it UNCERTAIN); it is how GBCS protects against replay.

    `check` does not remember the counter: a throttled request was not processed, and the
    User may resend it with the same RequestID. Call `record_accepted` when a request is
    passed on.

    The replay memory is bounded. When it is full, the least recently accepted pairs are
    forgotten, 1/64 of the capacity at once (at least one pair), oldest first. A forgotten
    pair's next request is accepted whatever its counter, so a replay of a request to a
    target that has been quiet for longer than the memory spans goes undetected; size
    `replay_capacity` above the number of (User, target) pairs active in that span.
    """

    __slots__ = ("_capacity", "_evict_count", "_last", "_rules")

    def __init__(self, catalogue: Mapping[str, Srv], *, replay_capacity: int = 1_000_000) -> None:
        if replay_capacity < 1:
            raise ValueError(
                f"replay_capacity must be at least 1, got {replay_capacity}; "
                "it is the number of (User, target) pairs whose last counter is remembered"
            )
        self._capacity = replay_capacity
        self._evict_count = max(1, replay_capacity // _EVICT_FRACTION)
        # Per SRV, what the hot path needs, read once instead of per request.
        self._rules: dict[str, tuple[Srv, frozenset[str], frozenset[int]]] = {
            key: (srv, srv.roles, srv.allowed_command_variants) for key, srv in catalogue.items()
        }
        # pair -> last accepted counter, least recently accepted first (insertion order).
        self._last: dict[str, int] = {}

    def __len__(self) -> int:
        """How many (User, target) pairs the replay memory holds."""
        return len(self._last)

    def check(self, request: ServiceRequest, key_user_id: str | None) -> Validated | Rejection:
        """Validate one Service Request; does not record its counter (see `record_accepted`).

        key_user_id: the Kafka record key (the sending User's ID), or None to skip that check.
        """
        parts = split_request_id(request.request_id)
        if parts is None:
            return Rejection("invalid_request_id", request_id_problem(request.request_id))
        pair, user_id, target_id, counter = parts
        if key_user_id is not None and key_user_id != user_id:
            return Rejection(
                "user_mismatch",
                f"request_id USER part {user_id} does not match the record key (User ID) "
                f"{shorten(key_user_id)}; a User may send requests only under its own User ID",
            )
        role = request.user_role
        if role not in USER_ROLES:
            return Rejection(
                "invalid_role",
                f"user_role {shorten(role)} is not a DUIS User Role; allowed: {_ROLES_TEXT}",
            )
        rule = self._rules.get(request.srv)
        if rule is None:
            return Rejection(
                "unknown_srv",
                f"srv {shorten(request.srv)} is not one of the {len(self._rules)} known DUIS "
                "Service Reference Variants (written like 4.1.1)",
            )
        srv, roles, variants = rule
        if role not in roles:
            return Rejection("role_not_eligible", _not_eligible(role, srv))
        if request.command_variant not in variants:
            return Rejection("invalid_command_variant", _bad_variant(request.command_variant, srv))
        last = self._last.get(pair)
        if last is not None and counter <= last:
            return Rejection(
                "replayed_counter",
                f"request_id COUNTER {counter} is not greater than {last}, the last accepted "
                f"COUNTER for User {user_id} and target {target_id}; send a higher COUNTER",
            )
        return _new_validated((user_id, target_id, counter, pair, srv))

    def record_accepted(self, v: Validated) -> None:
        """Remember `v.counter` as the last accepted counter of `v.pair`.

        Keeps the higher counter if a higher one was recorded in between (two requests
        checked before either was recorded), so the remembered counter never goes down.
        """
        last = self._last
        # Pop and re-insert: a dict keeps insertion order, so the pair moves to the end
        # (most recently accepted) and eviction can take from the front.
        previous = last.pop(v.pair, None)
        counter = v.counter
        if previous is None:
            if len(last) >= self._capacity:
                self._evict_oldest()
        elif previous > counter:
            counter = previous
        last[v.pair] = counter

    def forget_all(self) -> None:
        """Empty the replay memory: every pair's next request is accepted whatever its counter."""
        self._last.clear()

    def _evict_oldest(self) -> None:
        last = self._last
        for pair in list(itertools.islice(last, self._evict_count)):
            del last[pair]


def _not_eligible(role: str, srv: Srv) -> str:
    eligible = ", ".join(sorted(srv.roles)) or "none (no User Role may send it)"
    return f"user_role {role!r} may not use SRV {srv.srv} ({srv.name}); eligible roles: {eligible}"


def _bad_variant(command_variant: int, srv: Srv) -> str:
    if srv.non_device:
        kind = "a non-device SRV (Non-Device Service only)"
    elif srv.critical:
        kind = "a critical SRV (CV 4 to Transform, then 5, 6 or 7 with the signed Pre-Command)"
    else:
        kind = "a non-critical device SRV"
    allowed = ", ".join(str(cv) for cv in sorted(srv.allowed_command_variants))
    return (
        f"command_variant {command_variant} is not allowed for SRV {srv.srv} ({srv.name}), "
        f"{kind}; allowed: {allowed}"
    )
