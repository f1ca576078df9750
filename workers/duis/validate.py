"""DUIS validation of a Service Request: the User, its Role, SRV, Command Variant, replay.

Pure: no I/O and no clock. `DuisValidator.check` answers one request with `Validated` or a
`Rejection` whose reason names the field, the value seen and what is allowed; the caller
turns a rejection into an E-coded answer to the User.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, NamedTuple

import msgspec

from broker.schemas import USER_ROLES, ServiceRequest
from workers.duis.catalogue import Srv
from workers.duis.request_id import MAX_COUNTER, match_request_id, request_id_problem, shorten

__all__ = ["DuisValidator", "RejectKind", "Rejection", "ReplayBook", "Validated"]

RejectKind = Literal[
    "invalid_request_id",
    "user_mismatch",
    "unknown_user",  # DUIS E1, invalid User (not registered, or deleted)
    "invalid_role",  # DUIS E1, invalid User Role (DOMAIN.md section 3.2)
    "role_not_held",  # DUIS E1, a User Role the User is not registered for
    "unknown_srv",
    "role_not_eligible",  # DUIS E2, User Role may not use this Service Reference
    "invalid_command_variant",  # DUIS E12, Command Variant not valid for this request
    "replayed_counter",
]

_ROLES_TEXT = ", ".join(sorted(USER_ROLES))

# Evict this fraction of a User's pairs at once when its replay memory is full. Evicting one
# pair at a time with `next(iter(d))` is quadratic: a dict keeps deleted slots at the front of
# its entry table until it next resizes, and each `iter` walks over them again (measured 48 us
# per eviction at 200k pairs). One walk now and then spreads that cost.
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


class ReplayBook:
    """One User's anti-replay memory: the last accepted COUNTER per target, and a floor.

    `last` is ordered least recently accepted first. When it holds more than its capacity,
    the oldest 1/64 are forgotten and `floor` rises to the highest COUNTER among them: a
    request to a target the book does not know must have a COUNTER above the floor. So
    forgetting never re-opens a counter. It does refuse a first request to a new target whose
    COUNTER is at or below the floor; where COUNTERs are epoch milliseconds, as in the DCC's
    own tools (DOMAIN.md section 2.1), a new request's COUNTER is always above any forgotten
    one, and a User that numbers each target from 1 must be given a capacity above its number
    of targets (docs/operations.md, "Replay protection"). A floor of -1: nothing forgotten.
    """

    __slots__ = ("capacity", "evicted", "floor", "last")

    def __init__(self, capacity: int, floor: int = -1) -> None:
        self.capacity = capacity
        self.floor = floor
        self.last: dict[str, int] = {}
        self.evicted: list[str] = []
        """Targets forgotten since the changelog last took them (it writes tombstones)."""

    def accept(self, target: str, counter: int) -> None:
        """Remember `counter` as the last accepted COUNTER of `target` (never lowering it)."""
        last = self.last
        previous = last.pop(target, None)
        if previous is not None and previous > counter:
            counter = previous
        last[target] = counter
        if len(last) > self.capacity:
            self._evict()

    def restore(self, target: str, counter: int) -> None:
        """Take a pair from the changelog (a counter at or below the floor adds nothing)."""
        if counter > self.floor:
            self.accept(target, counter)

    def _evict(self) -> None:
        last = self.last
        n = max(1, self.capacity // _EVICT_FRACTION)
        gone = list(itertools.islice(last, n))
        floor = self.floor
        for target in gone:
            counter = last.pop(target)
            floor = max(floor, counter)
        self.floor = floor
        self.evicted.extend(gone)


class DuisValidator:
    """Checks Service Requests against the registered Users, the SRV catalogue and each
    User's anti-replay memory.

    catalogue: SRV -> Srv, e.g. from `load_catalogue()`; copied, so later changes to the
    mapping are not seen. replay_pairs_per_user: how many (target, COUNTER) pairs each User's
    replay memory holds, default 1_000_000 (see `ReplayBook`, and docs/benchmarks.md for the
    bytes a pair costs).

    The checks run in this order and the first failure is returned:

    1. `request_id` is `USER:TARGET:COUNTER` (workers.duis.request_id).
    2. the Kafka record key equals USER: a User sends under its own ID (a record without a
       key is refused too).
    3. USER is registered (`set_users`), unless the validator is open (`set_users(None)`,
       a demo setting): E1.
    4. `user_role` is one of the seven DUIS User Roles (E1), and one the User is registered
       for (E1): nothing a sender says about itself is trusted beyond the registry.
    5. `srv` is in the catalogue.
    6. the role is eligible for the SRV (E2).
    7. `command_variant` is allowed for the SRV (E12).
    8. COUNTER is strictly greater than the last accepted COUNTER for the same (USER, TARGET)
       pair, or, for a target the User's memory does not hold, greater than the User's
       floor (`ReplayBook`). Whether DUIS demands this per originator is not confirmed
       (DOMAIN.md section 2.1 marks it UNCERTAIN); it is how GBCS protects against replay.

    `check` does not remember the counter: a throttled request was not processed, and the
    User may resend it with the same RequestID. Call `record_accepted` when a request is
    passed on (or held in quarantine).

    The memory is per User, so one User writing to millions of targets evicts only its own
    oldest pairs. The router keeps it across restarts and rebalances on `dcc.state.router`
    (workers/router/adt_state.py), with `books`, `restore_pair`, `restore_floor` and
    `forget_user`.
    """

    __slots__ = (
        "_duis_roles",
        "_pairs_per_user",
        "_roles",
        "_rules",
        "books",
        "evicting",
        "journal",
    )

    def __init__(
        self, catalogue: Mapping[str, Srv], *, replay_pairs_per_user: int = 1_000_000
    ) -> None:
        if replay_pairs_per_user < 1:
            raise ValueError(
                f"replay_pairs_per_user must be at least 1, got {replay_pairs_per_user}; "
                "it is the number of targets whose last COUNTER is remembered per User"
            )
        self._pairs_per_user = replay_pairs_per_user
        # Per SRV, what the hot path needs, read once instead of per request.
        self._rules: dict[str, tuple[Srv, frozenset[str], frozenset[int]]] = {
            key: (srv, srv.roles, srv.allowed_command_variants) for key, srv in catalogue.items()
        }
        # User -> its registered roles; None: open (any User, any role; demos only).
        self._roles: dict[str, frozenset[str]] | None = {}
        # The same, each User's roles kept only if DUIS User Roles: one test on the hot path.
        self._duis_roles: dict[str, frozenset[str]] | None = {}
        self.books: dict[str, ReplayBook] = {}
        """User -> its anti-replay memory."""
        self.evicting: set[str] = set()
        """Users whose books forgot targets since the changelog last took them."""
        self.journal: list[tuple[str, str, int | None]] = []
        """(User, target, the COUNTER before) of each `record_accepted` since the caller last
        cleared it: what `undo` takes back when a batch's decisions are abandoned."""

    def __len__(self) -> int:
        """How many (User, target) pairs the replay memory holds."""
        return sum(len(book.last) for book in self.books.values())

    def set_users(self, users: Mapping[str, Iterable[str]] | None) -> None:
        """The registered Users and their roles (from `dcc.control`); None opens the gate to
        every User in every role (the `open_users` demo setting)."""
        self._roles = None if users is None else {u: frozenset(roles) for u, roles in users.items()}
        self._duis_roles = (
            None
            if self._roles is None
            else {u: roles & USER_ROLES for u, roles in self._roles.items()}
        )

    def check(self, request: ServiceRequest, key_user_id: str | None) -> Validated | Rejection:
        """Validate one Service Request; does not record its counter (see `record_accepted`).

        key_user_id: the Kafka record key (the sending User's ID); None when it has none.
        """
        # Runs once per request: `split_request_id` inlined (its call and tuple cost a tenth
        # of this method), and the roles of a registered User checked in one lookup.
        text = request.request_id
        match = match_request_id(text)
        if match is None:
            return Rejection("invalid_request_id", request_id_problem(text))
        pair, user_id, target_id, digits = match.groups()
        counter = int(digits)
        if counter > MAX_COUNTER:
            return Rejection("invalid_request_id", request_id_problem(text))
        if key_user_id != user_id:
            return Rejection("user_mismatch", _key_mismatch(user_id, key_user_id))
        role = request.user_role
        duis_roles = self._duis_roles
        if duis_roles is None:
            if role not in USER_ROLES:
                return _invalid_role(role)
        else:
            held = duis_roles.get(user_id)
            # held: the User's registered roles that are DUIS User Roles. Not there, or
            # the role not among them: which of checks 3 and 4 failed, in their order.
            if held is None or role not in held:
                return self._role_rejection(user_id, role)
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
        book = self.books.get(user_id)
        if book is not None:
            last = book.last.get(target_id)
            if last is not None:
                if counter <= last:
                    return Rejection(
                        "replayed_counter",
                        f"request_id COUNTER {counter} is not greater than {last}, the last "
                        f"accepted COUNTER for User {user_id} and target {target_id}; send a "
                        "higher COUNTER",
                    )
            elif counter <= book.floor:
                return Rejection(
                    "replayed_counter",
                    f"request_id COUNTER {counter} is not greater than {book.floor}, the "
                    f"highest COUNTER of the targets User {user_id}'s replay memory has "
                    "forgotten; send a higher COUNTER (epoch milliseconds always are)",
                )
        return _new_validated((user_id, target_id, counter, pair, srv))

    def _role_rejection(self, user_id: str, role: str) -> Rejection:
        """Checks 3 and 4 for a registered validator, in order, once the fast test failed."""
        held = self._roles.get(user_id) if self._roles is not None else None
        if held is None:
            return Rejection(
                "unknown_user",
                f"User {user_id} is not a registered DCC User (never registered, or "
                "deleted); nothing is forwarded for it",
            )
        if role not in USER_ROLES:
            return _invalid_role(role)
        return Rejection(
            "role_not_held",
            f"User {user_id} is not registered in User Role {role}; its registered "
            f"roles: {', '.join(sorted(held))}",
        )

    def record_accepted(self, v: Validated) -> None:
        """Remember `v.counter` as the last accepted counter of `v.pair`.

        Keeps the higher counter if a higher one was recorded in between (two requests
        checked before either was recorded), so the remembered counter never goes down.
        """
        user_id, target_id, counter = v[0], v[1], v[2]
        book = self.books.get(user_id)
        if book is None:
            book = self.books[user_id] = ReplayBook(self._pairs_per_user)
        # ReplayBook.accept inlined: this runs once per accepted request.
        last = book.last
        previous = last.pop(target_id, None)
        self.journal.append((user_id, target_id, previous))
        if previous is not None and previous > counter:
            counter = previous
        last[target_id] = counter
        if len(last) > book.capacity:
            book.accept(target_id, counter)  # evicts, raising the floor
            self.evicting.add(user_id)

    def undo(self) -> int:
        """Take back every `record_accepted` in `journal`, newest first, and clear it; return
        how many. A pair a book forgot meanwhile stays forgotten (its floor covers it)."""
        journal = self.journal
        n = len(journal)
        books = self.books
        for user_id, target_id, before in reversed(journal):
            book = books.get(user_id)
            if book is None:
                continue
            if before is None:
                book.last.pop(target_id, None)
            else:
                book.last[target_id] = before
        journal.clear()
        return n

    def book(self, user_id: str) -> ReplayBook:
        """The User's replay memory, made empty if it has none."""
        book = self.books.get(user_id)
        if book is None:
            book = self.books[user_id] = ReplayBook(self._pairs_per_user)
        return book

    def forget_user(self, user_id: str) -> None:
        """Drop the User's replay memory (its partition moved to another router)."""
        self.books.pop(user_id, None)
        self.evicting.discard(user_id)

    def forget_all(self) -> None:
        """Empty the replay memory: every pair's next request is accepted whatever its counter."""
        self.books.clear()
        self.evicting.clear()


def _invalid_role(role: str) -> Rejection:
    return Rejection(
        "invalid_role",
        f"user_role {shorten(role)} is not a DUIS User Role; allowed: {_ROLES_TEXT}",
    )


def _key_mismatch(user_id: str, key_user_id: str | None) -> str:
    if key_user_id is None:
        return (
            f"the record has no key; its key must be the sending User's ID ({user_id}, the "
            "request_id's USER part)"
        )
    return (
        f"request_id USER part {user_id} does not match the record key (User ID) "
        f"{shorten(key_user_id)}; a User may send requests only under its own User ID"
    )


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
