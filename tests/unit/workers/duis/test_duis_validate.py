"""workers.duis.validate: DuisValidator's checks, reasons and anti-replay memory."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.schemas import ServiceRequest
from workers.duis.catalogue import load_catalogue
from workers.duis.validate import DuisValidator, Rejection, Validated

USER = "90-B3-D5-1F-30-01-00-00"
OTHER_USER = "90-B3-D5-1F-30-01-00-01"
DEVICE = "00-DB-12-34-56-78-90-A0"
OTHER_DEVICE = "00-DB-12-34-56-78-90-A1"


def make_request(
    *,
    user: str = USER,
    target: str = DEVICE,
    counter: int = 1000,
    request_id: str | None = None,
    user_role: str = "IS",
    srv: str = "4.1.1",
    command_variant: int = 1,
    **extra: Any,
) -> ServiceRequest:
    return ServiceRequest(
        request_id=request_id if request_id is not None else f"{user}:{target}:{counter}",
        user_role=user_role,
        srv=srv,
        command_variant=command_variant,
        **extra,
    )


ALL_ROLES = ["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]


def make_validator(
    replay_pairs_per_user: int = 1_000_000,
    users: dict[str, list[str]] | None = None,
) -> DuisValidator:
    """A validator with USER and OTHER_USER registered in every role (or `users`)."""
    validator = DuisValidator(load_catalogue(), replay_pairs_per_user=replay_pairs_per_user)
    validator.set_users(users if users is not None else {USER: ALL_ROLES, OTHER_USER: ALL_ROLES})
    return validator


def rejected(verdict: Validated | Rejection, kind: str) -> str:
    assert isinstance(verdict, Rejection), verdict
    assert verdict.kind == kind
    return verdict.reason


def accept(validator: DuisValidator, request: ServiceRequest) -> Validated:
    verdict = validator.check(request, request.request_id.partition(":")[0])
    assert isinstance(verdict, Validated), verdict
    validator.record_accepted(verdict)
    return verdict


# --- accept path -----------------------------------------------------------------------------


def test_accepts_a_valid_request() -> None:
    validator = make_validator()
    verdict = validator.check(make_request(), USER)
    assert verdict == Validated(
        user_id=USER,
        target_id=DEVICE,
        counter=1000,
        pair=f"{USER}:{DEVICE}",
        srv=load_catalogue()["4.1.1"],
    )


def test_a_record_without_a_key_is_refused() -> None:
    reason = rejected(make_validator().check(make_request(), None), "user_mismatch")
    assert reason == (
        f"the record has no key; its key must be the sending User's ID ({USER}, the "
        "request_id's USER part)"
    )


# --- registered Users and the roles they hold (E1) ---------------------------------------------


def test_an_unregistered_user_is_refused() -> None:
    validator = make_validator(users={OTHER_USER: ["IS"]})
    reason = rejected(validator.check(make_request(), USER), "unknown_user")
    assert reason == (
        f"User {USER} is not a registered DCC User (never registered, or deleted); "
        "nothing is forwarded for it"
    )


def test_a_deleted_user_is_refused() -> None:
    validator = make_validator(users={USER: ["IS"]})
    assert isinstance(validator.check(make_request(), USER), Validated)
    validator.set_users({})
    rejected(validator.check(make_request(), USER), "unknown_user")


def test_a_role_the_user_does_not_hold_is_refused() -> None:
    # The case: a User registered as ED sends 7.2 Disable Supply claiming IS.
    validator = make_validator(users={USER: ["ED"]})
    request = make_request(srv="7.2", user_role="IS", command_variant=4)
    assert rejected(validator.check(request, USER), "role_not_held") == (
        f"User {USER} is not registered in User Role IS; its registered roles: ED"
    )
    gs = make_request(srv="4.1.1", user_role="GS")
    rejected(validator.check(gs, USER), "role_not_held")


def test_an_open_validator_takes_any_user_in_any_role() -> None:
    validator = make_validator(users={})
    validator.set_users(None)
    assert isinstance(validator.check(make_request(user_role="GS"), USER), Validated)


@pytest.mark.parametrize(
    ("srv", "role", "variants"),
    [
        ("8.2", "RSA", {8}),  # non-device, every role
        ("7.2", "GS", {4, 5, 6, 7}),  # critical
        ("4.8.1", "OU", {1, 2, 3}),  # non-critical device
    ],
)
def test_command_variants_by_kind_of_srv(srv: str, role: str, variants: set[int]) -> None:
    validator = make_validator()
    for cv in range(1, 9):
        verdict = validator.check(make_request(srv=srv, user_role=role, command_variant=cv), USER)
        assert isinstance(verdict, Validated) is (cv in variants), (srv, cv)


# --- each rejection, with its reason -----------------------------------------------------------


def test_invalid_request_id() -> None:
    verdict = make_validator().check(make_request(request_id=f"{USER}:{DEVICE}:x"), USER)
    reason = rejected(verdict, "invalid_request_id")
    assert reason == (
        "request_id COUNTER part 'x' is not a non-negative decimal integer; "
        "expected digits 0-9 only"
    )


def test_user_mismatch() -> None:
    verdict = make_validator().check(make_request(), OTHER_USER)
    assert rejected(verdict, "user_mismatch") == (
        f"request_id USER part {USER} does not match the record key (User ID) "
        f"'{OTHER_USER}'; a User may send requests only under its own User ID"
    )


def test_invalid_role() -> None:
    verdict = make_validator().check(make_request(user_role="is"), USER)
    assert rejected(verdict, "invalid_role") == (
        "user_role 'is' is not a DUIS User Role; allowed: ED, ES, GS, GT, IS, LC, OU, RSA"
    )


def test_unknown_srv() -> None:
    verdict = make_validator().check(make_request(srv="4.1.9"), USER)
    assert rejected(verdict, "unknown_srv") == (
        "srv '4.1.9' is not one of the 129 known DUIS Service Reference Variants "
        "(written like 4.1.1)"
    )


def test_role_not_eligible() -> None:
    verdict = make_validator().check(make_request(srv="7.2", user_role="ED"), USER)
    assert rejected(verdict, "role_not_eligible") == (
        "user_role 'ED' may not use SRV 7.2 (Disable Supply); eligible roles: GS, IS"
    )


def test_srv_without_eligible_roles_refuses_every_role() -> None:
    # No packaged SRV has an empty role list any more (issue #16 settled 7.16, 8.5 and
    # 8.6), so a catalogue with one such row is built from the packaged 7.16.
    packaged = load_catalogue()
    catalogue = {**packaged, "7.16": msgspec.structs.replace(packaged["7.16"], roles=frozenset())}
    validator = DuisValidator(catalogue, replay_pairs_per_user=1000)
    validator.set_users({USER: [*ALL_ROLES, "LC"]})
    for role in (*ALL_ROLES, "LC"):
        verdict = validator.check(make_request(srv="7.16", user_role=role, command_variant=4), USER)
        assert rejected(verdict, "role_not_eligible").endswith(
            "eligible roles: none (no User Role may send it)"
        )


def test_limit_apc_level_is_the_load_controllers_alone() -> None:
    validator = make_validator(users={USER: [*ALL_ROLES, "LC"]})
    for role in ALL_ROLES:
        verdict = validator.check(make_request(srv="7.16", user_role=role, command_variant=4), USER)
        assert rejected(verdict, "role_not_eligible").endswith("eligible roles: LC")
    verdict = validator.check(make_request(srv="7.16", user_role="LC", command_variant=4), USER)
    assert not isinstance(verdict, Rejection)


@pytest.mark.parametrize(
    ("srv", "role", "cv", "expected"),
    [
        (
            "7.2",
            "IS",
            1,
            "command_variant 1 is not allowed for SRV 7.2 (Disable Supply), a critical SRV "
            "(CV 4 to Transform, then 5, 6 or 7 with the signed Pre-Command); allowed: 4, 5, 6, 7",
        ),
        (
            "8.2",
            "IS",
            1,
            "command_variant 1 is not allowed for SRV 8.2 (Read Inventory), a non-device SRV "
            "(Non-Device Service only); allowed: 8",
        ),
        (
            "4.1.1",
            "IS",
            8,
            "command_variant 8 is not allowed for SRV 4.1.1 (Read Instantaneous Import "
            "Registers), a non-critical device SRV; allowed: 1, 2, 3",
        ),
        ("4.1.1", "IS", 0, "command_variant 0 is not allowed"),
        ("4.1.1", "IS", 9, "command_variant 9 is not allowed"),
    ],
)
def test_invalid_command_variant(srv: str, role: str, cv: int, expected: str) -> None:
    verdict = make_validator().check(
        make_request(srv=srv, user_role=role, command_variant=cv), USER
    )
    assert rejected(verdict, "invalid_command_variant").startswith(expected)


def test_replayed_counter() -> None:
    validator = make_validator()
    accept(validator, make_request(counter=1000))
    verdict = validator.check(make_request(counter=999), USER)
    assert rejected(verdict, "replayed_counter") == (
        f"request_id COUNTER 999 is not greater than 1000, the last accepted COUNTER for "
        f"User {USER} and target {DEVICE}; send a higher COUNTER"
    )


def test_checks_run_in_the_documented_order() -> None:
    validator = make_validator(users={USER: ["IS", "GS"]})
    accept(validator, make_request(counter=5))
    # Everything wrong at first; fix one thing per step, from the first check to the last:
    # each time, the earliest check that still fails is the one reported.
    fields: dict[str, Any] = {
        "request_id": "nonsense",
        "user_role": "XX",
        "srv": "99.9",
        "command_variant": 0,
        "counter": 5,
    }
    key = OTHER_USER
    steps: list[tuple[str, dict[str, Any]]] = [
        ("invalid_request_id", {"request_id": None}),
        ("user_mismatch", {"key": USER}),
        ("invalid_role", {"user_role": "ES"}),
        ("role_not_held", {"user_role": "IS"}),
        ("unknown_srv", {"srv": "7.16"}),
        ("role_not_eligible", {"srv": "4.1.1"}),
        ("invalid_command_variant", {"command_variant": 1}),
        ("replayed_counter", {"counter": 6}),
    ]
    for kind, fix in steps:
        rejected(validator.check(make_request(**fields), key), kind)
        key = fix.pop("key", key)
        fields.update(fix)
    assert isinstance(validator.check(make_request(**fields), key), Validated)


def test_rejection_encodes_as_json() -> None:
    rejection = Rejection("unknown_srv", "srv '1' is unknown")
    assert (
        msgspec.json.encode(rejection) == b'{"kind":"unknown_srv","reason":"srv \'1\' is unknown"}'
    )


def test_long_hostile_values_are_cut_in_reasons() -> None:
    validator = make_validator()
    huge = "A" * 100_000
    for verdict in (
        validator.check(make_request(request_id=huge), None),
        validator.check(make_request(), huge),
        validator.check(make_request(user_role=huge), None),
        validator.check(make_request(srv=huge), None),
    ):
        assert isinstance(verdict, Rejection)
        assert len(verdict.reason) < 250


# --- anti-replay -----------------------------------------------------------------------------


def test_equal_counter_is_refused() -> None:
    validator = make_validator()
    accept(validator, make_request(counter=1000))
    reason = rejected(validator.check(make_request(counter=1000), USER), "replayed_counter")
    assert "COUNTER 1000 is not greater than 1000" in reason


def test_lower_counter_is_refused_and_higher_accepted() -> None:
    validator = make_validator()
    accept(validator, make_request(counter=1000))
    rejected(validator.check(make_request(counter=3), USER), "replayed_counter")
    assert accept(validator, make_request(counter=1001)).counter == 1001


def test_pairs_are_independent() -> None:
    validator = make_validator()
    accept(validator, make_request(counter=1000))
    # Same User, other target; other User, same target: each its own counter.
    accept(validator, make_request(target=OTHER_DEVICE, counter=1))
    accept(validator, make_request(user=OTHER_USER, counter=1))
    assert len(validator) == 3


def test_check_alone_does_not_advance_the_counter() -> None:
    # A throttled request is checked but not processed; its retry with the same RequestID
    # must pass.
    validator = make_validator()
    accept(validator, make_request(counter=1000))
    assert isinstance(validator.check(make_request(counter=1001), USER), Validated)
    assert isinstance(validator.check(make_request(counter=1001), USER), Validated)
    assert len(validator) == 1


def test_record_keeps_the_highest_counter() -> None:
    validator = make_validator()
    first = validator.check(make_request(counter=10), USER)
    second = validator.check(make_request(counter=20), USER)
    assert isinstance(first, Validated)
    assert isinstance(second, Validated)
    validator.record_accepted(second)
    validator.record_accepted(first)
    rejected(validator.check(make_request(counter=15), USER), "replayed_counter")


def test_forget_all() -> None:
    validator = make_validator()
    accept(validator, make_request(counter=1000))
    validator.forget_all()
    assert len(validator) == 0
    assert isinstance(validator.check(make_request(counter=1), USER), Validated)


def test_replay_pairs_per_user_must_be_positive() -> None:
    with pytest.raises(ValueError, match="replay_pairs_per_user must be at least 1, got 0"):
        make_validator(replay_pairs_per_user=0)


def device(n: int) -> str:
    return f"00-DB-12-34-56-78-{n >> 8:02X}-{n & 255:02X}"


def test_full_memory_evicts_the_least_recently_accepted_pair_and_raises_the_floor() -> None:
    validator = make_validator(replay_pairs_per_user=3)
    for n in range(3):
        accept(validator, make_request(target=device(n), counter=100 + n))
    # Touch device 0 so that device 1 becomes the least recently accepted.
    accept(validator, make_request(target=device(0), counter=110))
    accept(validator, make_request(target=device(3), counter=120))
    assert len(validator) == 3
    book = validator.books[USER]
    assert device(1) not in book.last
    assert book.floor == 101
    # Device 1 was forgotten, but its replay is still refused: it is not above the floor.
    reason = rejected(
        validator.check(make_request(target=device(1), counter=101), USER), "replayed_counter"
    )
    assert "101, the highest COUNTER of the targets" in reason
    # A new request to it, or to a new target, above the floor passes.
    assert isinstance(validator.check(make_request(target=device(1), counter=102), USER), Validated)
    assert isinstance(validator.check(make_request(target=device(9), counter=102), USER), Validated)


def test_eviction_is_per_user() -> None:
    # One User writing to many devices evicts only its own oldest pairs.
    validator = make_validator(replay_pairs_per_user=10)
    accept(validator, make_request(user=OTHER_USER, counter=5))
    for n in range(1000):
        accept(validator, make_request(target=device(n), counter=1_000 + n))
    rejected(
        validator.check(make_request(user=OTHER_USER, counter=5), OTHER_USER), "replayed_counter"
    )
    assert validator.books[OTHER_USER].floor == -1  # nothing forgotten
    assert len(validator.books[USER].last) <= 10


def test_large_memory_evicts_a_batch_of_the_oldest_pairs() -> None:
    validator = make_validator(replay_pairs_per_user=128)  # evicts 128 // 64 = 2 at a time
    for n in range(129):
        accept(validator, make_request(target=device(n), counter=7 + n))
    assert len(validator) == 127
    assert validator.books[USER].floor == 8
    assert validator.books[USER].evicted == [device(0), device(1)]


@given(
    st.integers(1, 20),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 50)), max_size=300),
)
@settings(database=None, deadline=None)
def test_memory_never_exceeds_its_capacity_and_never_reopens_a_counter(
    capacity: int, events: list[tuple[int, int]]
) -> None:
    validator = make_validator(replay_pairs_per_user=capacity)
    highest: dict[int, int] = {}
    for n, counter in events:
        verdict = validator.check(make_request(target=device(n), counter=counter), USER)
        if isinstance(verdict, Validated):
            # Whatever was evicted, an accepted counter is above every one accepted before
            # for that target.
            assert counter > highest.get(n, -1)
            validator.record_accepted(verdict)
            highest[n] = counter
        assert len(validator) <= capacity


@given(
    st.lists(
        st.tuples(st.sampled_from([USER, OTHER_USER]), st.integers(0, 3), st.integers(0, 30)),
        max_size=200,
    )
)
@settings(database=None, deadline=None)
def test_accepted_counters_strictly_increase_per_pair(
    events: list[tuple[str, int, int]],
) -> None:
    validator = make_validator()
    accepted: dict[str, list[int]] = {}
    for user, n, counter in events:
        verdict = validator.check(make_request(user=user, target=device(n), counter=counter), user)
        # With the memory never full, the model is exact: accepted iff above every
        # counter accepted before for that pair.
        history = accepted.setdefault(f"{user}:{device(n)}", [])
        assert isinstance(verdict, Validated) is (not history or counter > history[-1])
        if isinstance(verdict, Validated):
            validator.record_accepted(verdict)
            history.append(counter)
    for history in accepted.values():
        assert all(a < b for a, b in itertools.pairwise(history))


def test_undo_takes_back_what_a_failed_batch_accepted() -> None:
    validator = make_validator()
    accept(validator, make_request(counter=5))
    validator.journal.clear()  # a new batch begins
    accept(validator, make_request(counter=6))
    accept(validator, make_request(counter=7))
    accept(validator, make_request(target=OTHER_DEVICE, counter=1))
    assert validator.undo() == 3
    assert validator.journal == []
    # The batch is decided again: its requests pass as the first time; the one before
    # the batch is still a replay.
    assert isinstance(validator.check(make_request(counter=6), USER), Validated)
    assert isinstance(
        validator.check(make_request(target=OTHER_DEVICE, counter=1), USER), Validated
    )
    rejected(validator.check(make_request(counter=5), USER), "replayed_counter")


# --- the hot path against the straightforward way ------------------------------------------------


def _reference_check(
    validator: DuisValidator,
    roles: dict[str, list[str]] | None,
    request: ServiceRequest,
    key_user_id: str | None,
) -> Validated | Rejection:
    """`check` as it was written before it was tuned (issue 17): split_request_id, then each
    check in the documented order, reasons built the same way."""
    from broker.schemas import USER_ROLES
    from workers.duis.request_id import request_id_problem, shorten, split_request_id
    from workers.duis.validate import _bad_variant, _key_mismatch, _not_eligible

    parts = split_request_id(request.request_id)
    if parts is None:
        return Rejection("invalid_request_id", request_id_problem(request.request_id))
    pair, user_id, target_id, counter = parts
    if key_user_id != user_id:
        return Rejection("user_mismatch", _key_mismatch(user_id, key_user_id))
    role = request.user_role
    held: frozenset[str] | None = None
    if roles is not None:
        held = frozenset(roles[user_id]) if user_id in roles else None
        if held is None:
            return Rejection(
                "unknown_user",
                f"User {user_id} is not a registered DCC User (never registered, or "
                "deleted); nothing is forwarded for it",
            )
    if role not in USER_ROLES:
        allowed = ", ".join(sorted(USER_ROLES))
        return Rejection(
            "invalid_role", f"user_role {shorten(role)} is not a DUIS User Role; allowed: {allowed}"
        )
    if held is not None and role not in held:
        return Rejection(
            "role_not_held",
            f"User {user_id} is not registered in User Role {role}; its registered "
            f"roles: {', '.join(sorted(held))}",
        )
    catalogue = load_catalogue()
    srv = catalogue.get(request.srv)
    if srv is None:
        return Rejection(
            "unknown_srv",
            f"srv {shorten(request.srv)} is not one of the {len(catalogue)} known DUIS "
            "Service Reference Variants (written like 4.1.1)",
        )
    if role not in srv.roles:
        return Rejection("role_not_eligible", _not_eligible(role, srv))
    if request.command_variant not in srv.allowed_command_variants:
        return Rejection("invalid_command_variant", _bad_variant(request.command_variant, srv))
    book = validator.books.get(user_id)
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
    return Validated(user_id, target_id, counter, pair, srv)


_good_ids = st.builds(
    lambda u, t, c: f"{u}:{t}:{c}",
    st.sampled_from([USER, OTHER_USER]),
    st.sampled_from([DEVICE, OTHER_DEVICE]),
    st.integers(0, 12),
)
_bad_ids = st.one_of(
    st.builds(
        lambda u, t, c: f"{u}:{t}:{c}",
        st.sampled_from([USER, "90-b3-d5-1f-30-01-00-00", "90-B3-D5-1F-30-01-00"]),
        st.sampled_from([DEVICE, "00-DB"]),
        st.sampled_from(["0", "07", "18446744073709551615", "18446744073709551616", "x", ""]),
    ),
    st.text(max_size=60),
)


@st.composite
def _request_ids(draw: st.DrawFn) -> str:
    # Mostly requests that pass, so that the replay memory fills and refuses; the rest
    # wrong in one place or another.
    return draw(_bad_ids if draw(st.integers(0, 9)) == 0 else _good_ids)


_roles = st.sampled_from(["IS"] * 12 + ["ES", "ED", "XX", "LC", "", "is"])
_srvs = st.sampled_from(["4.1.1"] * 12 + ["7.2", "6.2.1", "8.4", "99.1", "", "4.1.1 "])
_cvs = st.sampled_from([1] * 12 + [2, 3, 4, 5, 8, 0, 9])


@given(
    st.sampled_from(
        [
            None,
            {USER: ALL_ROLES, OTHER_USER: ["IS"]},
            {USER: ["ES", "XX", "LC"]},  # a role that is not a DUIS role, registered
            {},
        ]
    ),
    st.lists(
        st.tuples(
            _request_ids(),
            _roles,
            _srvs,
            _cvs,
            st.sampled_from([USER, OTHER_USER, None, "junk\u00e9"]),
            st.sampled_from([True] * 12 + [False]),
        ),
        max_size=40,
    ),
)
@settings(database=None, deadline=None, max_examples=300)
def test_check_answers_as_the_straightforward_way(
    roles: dict[str, list[str]] | None,
    requests: list[tuple[str, str, str, int, str | None, bool]],
) -> None:
    validator = make_validator(replay_pairs_per_user=3, users=roles)
    if roles is None:
        validator.set_users(None)
    for request_id, role, srv, cv, key, use_own_key in requests:
        request = make_request(request_id=request_id, user_role=role, srv=srv, command_variant=cv)
        key_user = request_id.partition(":")[0] if use_own_key else key
        got = validator.check(request, key_user)
        assert got == _reference_check(validator, roles, request, key_user)
        if isinstance(got, Validated):
            validator.record_accepted(got)  # later requests meet a replay memory
