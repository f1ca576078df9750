"""adt.engine: AdtEngine decisions, counting what is processed, snapshots and views."""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adt import (
    PASS,
    AdtDecision,
    AdtEngine,
    AdtValues,
    SnapshotError,
    Threshold,
    ValueRule,
    decode_snapshot,
    encode_snapshot,
)
from adt.snapshot import UserCountersSnapshot, WindowSnapshot

USER = "90-B3-D5-1F-30-01-00-00"
OTHER = "90-B3-D5-1F-30-02-00-00"
T0 = 1_700_000_000.0


def no_body() -> dict[str, Any]:
    raise AssertionError("the body must not be decoded when no value rule applies")


def run(engine: AdtEngine, user: str, srv: str, now_s: float) -> AdtDecision:
    """What the router does: check, and count the request if it is passed on."""
    decision = engine.check(user, srv, no_body, now_s)
    if not decision.quarantined:
        engine.record_processed(user, srv, now_s)
    return decision


def user_values(*thresholds: tuple[str, int, int], shadow: bool = False) -> AdtValues:
    return AdtValues(
        thresholds=tuple(Threshold(srv=s, window_s=w, max=m) for s, w, m in thresholds),
        shadow=shadow,
    )


# --- only the excess is quarantined ------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=200),
    limit=st.integers(min_value=0, max_value=150),
    spread_s=st.integers(min_value=0, max_value=3599),
)
def test_a_burst_of_n_against_max_m_quarantines_exactly_the_excess(
    n: int, limit: int, spread_s: int
) -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 3600, limit)))
    quarantined = 0
    for i in range(n):
        t = T0 + (spread_s * i / n if n else 0)  # all inside one window
        quarantined += run(engine, USER, "7.2", t).quarantined
    assert quarantined == max(0, n - limit)


@settings(max_examples=200, deadline=None)
@given(
    window_s=st.sampled_from([1, 10, 60]),
    limit=st.integers(min_value=0, max_value=10),
    gaps=st.lists(st.integers(min_value=0, max_value=40), max_size=150),
)
def test_no_true_sliding_window_ever_holds_more_than_max(
    window_s: int, limit: int, gaps: list[int]
) -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", window_s, limit)))
    admitted: list[float] = []
    now = T0
    for gap in gaps:
        now += gap / 16
        if not run(engine, USER, "7.2", now).quarantined:
            admitted.append(now)
    # Every closed interval [t - window_s, t] ending at an admitted request holds at most max.
    for t in admitted:
        assert sum(1 for u in admitted if t - window_s <= u <= t) <= limit


def test_the_first_max_pass_and_the_rest_are_quarantined_in_order() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 60, 3)))
    outcomes = [run(engine, USER, "7.2", T0 + i).outcome for i in range(5)]
    assert outcomes == ["pass", "pass", "pass", "quarantine", "quarantine"]
    # The window slides: after a minute and one granule, there is room again.
    assert run(engine, USER, "7.2", T0 + 61).outcome == "pass"


def test_a_quarantined_request_is_not_counted() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 3600, 2)))
    for _ in range(10):
        run(engine, USER, "7.2", T0)
    (usage,) = engine.usage(USER, T0)
    assert usage.count == 2


def test_a_released_request_is_counted_when_released() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 3600, 2)))
    run(engine, USER, "7.2", T0)
    assert run(engine, USER, "7.2", T0).outcome == "pass"
    assert run(engine, USER, "7.2", T0).quarantined
    engine.record_released(USER, "7.2", T0 + 100)  # may pass the max: the User decided
    (usage,) = engine.usage(USER, T0 + 100)
    assert usage.count == 3
    assert usage.ratio == 1.5
    # Released at T0 + 100: it leaves the window an hour after its release, not its arrival.
    assert engine.usage(USER, T0 + 3600 + 61)[0].count == 1


def test_max_zero_quarantines_every_request_of_that_kind() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 60, 0)))
    decision = run(engine, USER, "7.2", T0)
    assert decision.breach is not None
    assert decision.breach.observed == 1
    assert decision.breach.limit == 0
    assert run(engine, USER, "7.3", T0) is PASS


def test_the_count_breach_names_the_rule_the_count_and_the_limit() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 3600, 1)))
    run(engine, USER, "7.2", T0)
    decision = run(engine, USER, "7.2", T0)
    assert decision.breach is not None
    assert decision.breach.kind == "user_adt"
    assert decision.breach.rule == f"user:{USER}:7.2:3600"
    assert (decision.breach.observed, decision.breach.limit) == (2, 1)
    assert decision.breach.reason == (
        f"User ADT user:{USER}:7.2:3600: this would be request 2 of SRV 7.2 for User {USER} "
        "within 1 h; the limit is 1"
    )


# --- the engine against a simple model -------------------------------------------------------


def bucket(t: float, window_s: int) -> int:
    return math.floor(Fraction(t) * 60 / window_s)


class Model:
    """Exact reference: a list of processed (time, user, srv) and the bucket rule."""

    def __init__(self, user_t: list[tuple[str, int, int]], dcc_t: list[tuple[str, int, int]]):
        self.user_t = user_t
        self.dcc_t = dcc_t
        self.events: list[tuple[float, str, str]] = []

    def count(self, now: float, window_s: int, user: str | None, srv: str) -> int:
        """Processed events of `user` (None: any User) and `srv` ("*": any) in the window."""
        k = bucket(now, window_s)
        return sum(
            1
            for t, u, s in self.events
            if user in (None, u) and srv in ("*", s) and k - 60 <= bucket(t, window_s) <= k
        )

    def admits(self, user: str, srv: str, now: float) -> bool:
        for tsrv, w, m in self.user_t:
            if user == USER and tsrv in (srv, "*") and self.count(now, w, USER, tsrv) >= m:
                return False
        for tsrv, w, m in self.dcc_t:
            if tsrv == srv and self.count(now, w, None, tsrv) >= m:
                return False
        return True


threshold_lists = st.lists(
    st.tuples(
        st.sampled_from(["7.2", "7.3", "*"]),
        st.sampled_from([1, 10, 60, 120]),
        st.integers(min_value=0, max_value=8),
    ),
    max_size=4,
    unique_by=lambda t: (t[0], t[1]),
)


@settings(max_examples=200, deadline=None)
@given(
    user_t=threshold_lists,
    dcc_t=threshold_lists.map(lambda ts: [t for t in ts if t[0] != "*"]),
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=80),
            st.sampled_from([USER, OTHER]),
            st.sampled_from(["7.2", "7.3", "4.1.1"]),
        ),
        max_size=120,
    ),
)
def test_decisions_match_the_model_on_any_timeline(
    user_t: list[tuple[str, int, int]],
    dcc_t: list[tuple[str, int, int]],
    steps: list[tuple[int, str, str]],
) -> None:
    engine = AdtEngine(dcc_values=user_values(*dcc_t))
    engine.set_user_values(USER, user_values(*user_t))
    model = Model(user_t, dcc_t)
    now = T0
    for eighths, user, srv in steps:
        now += eighths / 8
        expected = model.admits(user, srv, now)
        decision = run(engine, user, srv, now)
        assert decision.quarantined is not expected, (now, user, srv)
        if expected:
            model.events.append((now, user, srv))


# --- shadow mode -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=20),
    n=st.integers(min_value=0, max_value=60),
    amounts=st.lists(st.one_of(st.integers(-100, 100), st.text(max_size=3)), max_size=60),
)
def test_shadow_mode_never_quarantines(limit: int, n: int, amounts: list[object]) -> None:
    shadow = AdtValues(
        thresholds=(Threshold(srv="2.2", window_s=3600, max=limit),),
        value_rules=(ValueRule(srv="2.2", field="amount", min=0, max=10),),
        shadow=True,
    )
    engine = AdtEngine(dcc_values=shadow)
    engine.set_user_values(USER, shadow)
    would = 0
    for i in range(n):
        body: dict[str, Any] = {"amount": amounts[i]} if i < len(amounts) else {}
        decision = engine.check(USER, "2.2", functools.partial(dict, body), T0 + i)
        assert not decision.quarantined
        assert decision.breach is None
        would += decision.would_quarantine
        engine.record_processed(USER, "2.2", T0 + i)  # passed, so processed and counted
    # Count rules alone: every request after the first `limit` would have been quarantined.
    assert would >= max(0, n - limit)


def test_shadow_breaches_are_reported_beside_an_enforcing_one() -> None:
    engine = AdtEngine()
    engine.set_user_values(
        USER,
        AdtValues(
            thresholds=(
                Threshold(srv="7.2", window_s=60, max=0, shadow=True),
                Threshold(srv="*", window_s=60, max=0),
            )
        ),
    )
    decision = engine.check(USER, "7.2", no_body, T0)
    assert decision.quarantined
    assert decision.breach is not None
    assert decision.breach.rule == f"user:{USER}:*:60"
    assert [b.rule for b in decision.shadow_breaches] == [f"user:{USER}:7.2:60"]
    assert decision.would_quarantine


def test_a_shadow_breach_alone_passes_with_would_quarantine() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 60, 0), shadow=True))
    decision = engine.check(USER, "7.2", no_body, T0)
    assert decision.outcome == "pass"
    assert decision.would_quarantine
    assert decision.shadow_breaches[0].reason.endswith("(shadow mode: not enforced)")


# --- decision order and body decoding --------------------------------------------------------


def test_the_body_is_decoded_only_when_a_value_rule_applies_and_once() -> None:
    calls = []

    def body() -> dict[str, Any]:
        calls.append(1)
        return {"amount": 5}

    engine = AdtEngine(
        dcc_values=AdtValues(value_rules=(ValueRule(srv="2.2", field="amount", max=10),))
    )
    engine.set_user_values(
        USER, AdtValues(value_rules=(ValueRule(srv="2.2", field="amount", min=1),))
    )
    assert engine.check(USER, "7.2", body, T0) is PASS
    assert engine.check(OTHER, "7.2", body, T0) is PASS
    assert calls == []
    assert engine.check(USER, "2.2", body, T0) is PASS
    assert calls == [1]


def test_data_values_then_user_counts_then_dcc_counts() -> None:
    dcc = AdtValues(
        thresholds=(Threshold(srv="2.2", window_s=60, max=0),),
        value_rules=(ValueRule(srv="2.2", field="amount", max=10),),
    )
    engine = AdtEngine(dcc_values=dcc)
    engine.set_user_values(USER, user_values(("2.2", 60, 0)))
    decide = engine.check
    first = decide(USER, "2.2", lambda: {"amount": 11}, T0).breach
    second = decide(USER, "2.2", lambda: {"amount": 1}, T0).breach
    third = decide(OTHER, "2.2", lambda: {"amount": 1}, T0).breach
    assert first is not None
    assert first.kind == "data_value"
    assert second is not None
    assert second.kind == "user_adt"
    assert third is not None
    assert third.kind == "dcc_adt"
    assert third.reason == (
        "DCC-wide ADT dcc:2.2:60: this would be request 1 of SRV 2.2 for all Users within "
        "1 min; the limit is 0"
    )


def test_a_user_all_srvs_threshold_counts_every_srv() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("*", 60, 3)))
    outcomes = [run(engine, USER, srv, T0).outcome for srv in ["7.2", "7.3", "4.1.1", "7.2"]]
    assert outcomes == ["pass", "pass", "pass", "quarantine"]
    assert run(engine, OTHER, "7.2", T0) is PASS


def test_users_without_values_meet_only_dcc_rules() -> None:
    engine = AdtEngine(dcc_values=user_values(("7.2", 60, 2)))
    assert [run(engine, u, "7.2", T0).outcome for u in (USER, OTHER, "X")] == [
        "pass",
        "pass",
        "quarantine",
    ]


# --- values changes ----------------------------------------------------------------------------


def test_changing_values_keeps_the_counts_of_thresholds_that_stay() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 3600, 5), ("7.2", 60, 5)))
    for _ in range(3):
        run(engine, USER, "7.2", T0)
    engine.set_user_values(USER, user_values(("7.2", 3600, 3), ("7.3", 60, 1)))
    assert run(engine, USER, "7.2", T0).quarantined  # 3 of 3 already counted
    counts = {u.rule: u.count for u in engine.usage(USER, T0)}
    assert counts == {f"user:{USER}:7.2:3600": 3, f"user:{USER}:7.3:60": 0}
    engine.set_user_values(USER, None)
    assert engine.user_table(USER) is None
    assert engine.usage(USER, T0) == ()
    assert run(engine, USER, "7.2", T0) is PASS


def test_new_dcc_values_reach_users_whose_plans_are_cached() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.3", 60, 5)))
    assert run(engine, USER, "7.2", T0) is PASS
    assert run(engine, OTHER, "7.2", T0) is PASS
    engine.set_dcc_values(user_values(("7.2", 60, 2)))
    assert run(engine, USER, "7.2", T0).outcome == "pass"
    assert run(engine, OTHER, "7.2", T0).outcome == "pass"
    assert run(engine, USER, "7.2", T0).quarantined
    assert engine.dcc_table.count_rules[0].id == "dcc:7.2:60"


# --- DCC-wide counts across routers ------------------------------------------------------------


def test_peer_counts_add_to_the_local_count() -> None:
    engine = AdtEngine(dcc_values=user_values(("7.2", 60, 10)))
    run(engine, USER, "7.2", T0)
    engine.set_peer_counts({("7.2", 60): 8, ("7.2", 3600): 1000, ("9.9", 60): 5})
    assert run(engine, USER, "7.2", T0).outcome == "pass"  # 1 + 8 < 10
    decision = run(engine, USER, "7.2", T0)
    assert decision.breach is not None
    assert decision.breach.observed == 11
    report = engine.count_report("router-a", T0)
    assert report.router_id == "router-a"
    assert [(c.srv, c.window_s, c.count) for c in report.counts] == [("7.2", 60, 2)]
    (usage,) = engine.dcc_usage(T0)
    assert (usage.count, usage.max) == (10, 10)
    # New DCC values keep the peers' counts.
    engine.set_dcc_values(user_values(("7.2", 60, 20)))
    assert engine.dcc_usage(T0)[0].count == 10


# --- snapshots ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    before=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["7.2", "7.3"])), max_size=80),
    after=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["7.2", "7.3"])), max_size=40),
)
def test_snapshot_restore_round_trips_and_decides_the_same(
    before: list[tuple[int, str]], after: list[tuple[int, str]]
) -> None:
    values = user_values(("7.2", 60, 6), ("7.2", 600, 15), ("*", 60, 10))
    first = AdtEngine()
    first.set_user_values(USER, values)
    now = T0
    for eighths, srv in before:
        now += eighths / 8
        run(first, USER, srv, now)
    snapshot = first.snapshot_user(USER, now)
    assert snapshot is not None
    # A crash: a new router gets the values, then the snapshot from the state topic.
    second = AdtEngine()
    second.set_user_values(USER, values)
    second.restore_user(decode_snapshot(encode_snapshot(snapshot)))
    assert second.snapshot_user(USER, now) == snapshot
    for eighths, srv in after:
        now += eighths / 8
        assert run(first, USER, srv, now) == run(second, USER, srv, now)


def test_restore_replaces_and_skips_removed_thresholds() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 60, 5), ("7.3", 60, 5)))
    run(engine, USER, "7.3", T0)
    snapshot = UserCountersSnapshot(
        user_id=USER,
        buckets_per_window=60,
        taken_at_s=T0,
        windows=(
            WindowSnapshot(srv="7.2", window_s=60, head=int(T0), buckets=((int(T0), 4),)),
            WindowSnapshot(srv="8.1", window_s=60, head=int(T0), buckets=((int(T0), 4),)),
        ),
    )
    assert engine.restore_user(snapshot) == 1
    counts = {u.srv: u.count for u in engine.usage(USER, T0)}
    assert counts == {"7.2": 4, "7.3": 0}


def test_a_user_without_values_has_no_snapshot_and_restores_nothing() -> None:
    engine = AdtEngine()
    assert engine.snapshot_user(USER, T0) is None
    empty = UserCountersSnapshot(user_id=USER, buckets_per_window=60, taken_at_s=T0)
    assert engine.restore_user(empty) == 0


def test_a_snapshot_with_other_buckets_is_refused() -> None:
    engine = AdtEngine(buckets_per_window=30)
    engine.set_user_values(USER, user_values(("7.2", 60, 5)))
    other = UserCountersSnapshot(user_id=USER, buckets_per_window=60, taken_at_s=T0)
    with pytest.raises(SnapshotError, match="has 60 buckets per window, this engine 30"):
        engine.restore_user(other)


def test_a_corrupt_snapshot_is_refused_and_changes_nothing() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 60, 5), ("7.3", 60, 5)))
    run(engine, USER, "7.2", T0)
    bad = UserCountersSnapshot(
        user_id=USER,
        buckets_per_window=60,
        taken_at_s=T0,
        windows=(
            WindowSnapshot(srv="7.3", window_s=60, head=int(T0), buckets=((int(T0), 2),)),
            WindowSnapshot(srv="7.2", window_s=60, head=100, buckets=((5, 1),)),
        ),
    )
    with pytest.raises(SnapshotError, match=r"window 7\.2/60 s, is corrupt: bucket 5 is outside"):
        engine.restore_user(bad)
    assert {u.srv: u.count for u in engine.usage(USER, T0)} == {"7.2": 1, "7.3": 0}


def test_decode_snapshot_refuses_garbage() -> None:
    with pytest.raises(SnapshotError, match="not an ADT counter snapshot"):
        decode_snapshot(b'{"user_id": 1}')
    with pytest.raises(SnapshotError, match="not an ADT counter snapshot"):
        decode_snapshot(b"\xff")


def test_forget_user_drops_counts_and_keeps_values() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, user_values(("7.2", 60, 1)))
    run(engine, USER, "7.2", T0)
    engine.forget_user(USER)
    engine.forget_user(OTHER)  # unknown: nothing to do
    assert run(engine, USER, "7.2", T0).outcome == "pass"
    assert run(engine, USER, "7.2", T0).quarantined


def test_prune_frees_idle_windows_only() -> None:
    engine = AdtEngine(dcc_values=user_values(("7.2", 60, 100)))
    engine.set_user_values(USER, user_values(("7.2", 60, 100), ("7.2", 3600, 100)))
    run(engine, USER, "7.2", T0)
    assert engine.prune(T0 + 30) == 0
    assert engine.prune(T0 + 120) == 2  # the minute windows, the User's and the DCC's
    assert engine.prune(T0 + 120) == 0
    assert engine.usage(USER, T0 + 120)[1].count == 1  # the hour window kept its count


# --- views -------------------------------------------------------------------------------------


def test_nearest_threshold_is_the_highest_ratio() -> None:
    engine = AdtEngine()
    assert engine.nearest_threshold(USER, T0) is None
    engine.set_user_values(USER, user_values(("7.2", 60, 10), ("*", 3600, 4)))
    for _ in range(3):
        run(engine, USER, "7.2", T0)
    nearest = engine.nearest_threshold(USER, T0)
    assert nearest is not None
    assert (nearest.rule, nearest.count, nearest.max, nearest.ratio) == (
        f"user:{USER}:*:3600",
        3,
        4,
        0.75,
    )
    engine.set_user_values(USER, user_values(("7.2", 120, 0)))  # a new window: count 0
    assert engine.usage(USER, T0)[0].ratio == 0.0
    engine.record_released(USER, "7.2", T0)
    assert engine.usage(USER, T0)[0].ratio == math.inf
    assert engine.users() == [USER]


def test_engine_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="buckets_per_window must be >= 1"):
        AdtEngine(buckets_per_window=0)
    assert AdtEngine().buckets_per_window == 60


# --- a body that cannot be decoded, or holds numbers no rule can compare (issue #12) -----------

_decode_body = msgspec.json.Decoder(dict[str, Any]).decode


def _value_engine(*, shadow: bool = False) -> AdtEngine:
    return AdtEngine(
        dcc_values=AdtValues(
            value_rules=(
                ValueRule(srv="2.2", field="amount", min=0, max=500, shadow=shadow),
                ValueRule(srv="2.2", field="fee", max=10, shadow=True),
            )
        )
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        # msgspec names no dict key in the path: `$[...]`
        (b'{"amount": 1e400}', "Number out of range - at `$[...]`"),
        (b'{"amount": -1e400}', "Number out of range - at `$[...]`"),
        (b'{"amount": ' + b"9" * 5000 + b"}", "Integer value out of range - at `$[...]`"),
        (b'{"other": 1e400, "amount": 1}', "Number out of range - at `$[...]`"),
        (b'{"amount": NaN}', "JSON is malformed: invalid character"),
        (b'{"amount": 1, "note": "\xff"}', "can't decode byte 0xff"),  # UnicodeDecodeError
    ],
    ids=["1e400", "-1e400", "5000 digits", "elsewhere in the body", "NaN", "invalid UTF-8"],
)
def test_an_undecodable_body_is_a_data_value_breach_not_an_exception(body: bytes, why: str) -> None:
    decision = _value_engine().check(USER, "2.2", lambda: _decode_body(body), T0)
    assert decision.quarantined
    assert decision.breach is not None
    assert decision.breach.kind == "data_value"
    assert decision.breach.rule == "value:2.2:amount"
    assert decision.breach.observed == "unreadable body"
    assert "body field amount cannot be checked: the body cannot be decoded (" in (
        decision.breach.reason
    )
    assert why in decision.breach.reason
    # Every value rule of the SRV is breached: the shadow one is reported too.
    assert [b.rule for b in decision.shadow_breaches] == ["value:2.2:fee"]


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b'{"amount": 1' + b"0" * 400 + b"}", "an integer of 401 digits"),
        (b'{"amount": -1' + b"0" * 400 + b"}", "a negative integer of 401 digits"),
        (b'{"amount": 1' + b"0" * 4299 + b"}", "an integer of 4300 digits"),
    ],
    ids=["401 digits", "-401 digits", "4300 digits"],
)
def test_a_decoded_integer_beyond_a_float_is_a_breach(body: bytes, shown: str) -> None:
    decision = _value_engine().check(USER, "2.2", lambda: _decode_body(body), T0)
    assert decision.breach is not None
    assert decision.breach.observed == shown


def test_an_undecodable_body_under_shadow_rules_only_passes_with_would_quarantine() -> None:
    decision = _value_engine(shadow=True).check(
        USER, "2.2", lambda: _decode_body(b'{"amount": 1e400}'), T0
    )
    assert not decision.quarantined
    assert [b.observed for b in decision.shadow_breaches] == ["unreadable body"] * 2


@pytest.mark.parametrize("body", [b'{"amount": -0}', b'{"amount": -0.0}', b'{"amount": 0}'])
def test_minus_zero_passes(body: bytes) -> None:
    assert _value_engine().check(USER, "2.2", lambda: _decode_body(body), T0) is PASS


def test_a_getter_bug_that_is_not_a_value_error_propagates() -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("amount")

    with pytest.raises(KeyError):
        _value_engine().check(USER, "2.2", broken, T0)
