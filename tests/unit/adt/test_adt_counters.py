"""adt.counters (and AdtEngine's use of it): the shortcuts decide and count exactly as reading
and counting every window of every threshold on every request does."""

from __future__ import annotations

import functools
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adt import (
    AdtDecision,
    AdtEngine,
    AdtValues,
    ExceptionWindow,
    Threshold,
    UserCountersSnapshot,
    ValueRule,
    decode_snapshot,
    encode_snapshot,
)
from adt.counters import value_entry
from adt.decision import Breach
from adt.table import AdtTable, CountRule
from adt.values import ValueCheck
from adt.windows import SlidingWindow

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"
T0 = 1_700_000_000.0


class Reference:
    """The engine as it was before keys and plans: one SlidingWindow per threshold, every
    window of a request's SRV, of "*" and DCC-wide read on every check and counted on
    every record."""

    def __init__(self, dcc: AdtValues) -> None:
        self.dcc = AdtTable.for_dcc(dcc)
        self.dcc_windows = {r.key: SlidingWindow(r.window_s) for r in self.dcc.count_rules}
        self.users: dict[str, tuple[AdtTable, dict[str, SlidingWindow]]] = {}
        self.peer: dict[tuple[str, int], int] = {}

    def set_user(self, user: str, values: AdtValues) -> None:
        table = AdtTable.for_user(user, values)
        old = self.users.get(user, (table, {}))[1]
        self.users[user] = (
            table,
            {r.key: old.get(r.key) or SlidingWindow(r.window_s) for r in table.count_rules},
        )

    def lanes(self, user: str, srv: str) -> list[tuple[CountRule, SlidingWindow, int]]:
        found = []
        if user in self.users:
            table, windows = self.users[user]
            rules = table.counts_by_srv.get(srv, ()) + table.counts_by_srv.get("*", ())
            found += [(r, windows[r.key], 0) for r in rules]
        found += [
            (r, self.dcc_windows[r.key], self.peer.get((r.srv, r.window_s), 0))
            for r in self.dcc.counts_by_srv.get(srv, ())
        ]
        return found

    def check(self, user: str, srv: str, body: dict[str, Any], now_s: float) -> AdtDecision:
        checks: tuple[ValueCheck, ...] = self.dcc.values_by_srv.get(srv, ())
        if user in self.users:
            checks += self.users[user][0].values_by_srv.get(srv, ())
        breach: Breach | None = None
        shadow: list[Breach] = []
        for check in checks:
            found = check.evaluate(body, now_s)
            if found is not None and found.shadow:
                shadow.append(found)
            elif found is not None and breach is None:
                breach = found
        for rule, window, peer in self.lanes(user, srv):
            count = window.count(now_s) + peer
            limit, by = rule.limit_at(now_s)
            if count < limit or (not rule.shadow and breach is not None):
                continue
            found = rule.breach(count + 1, limit, by)
            if found.shadow:
                shadow.append(found)
            else:
                breach = found
        if breach is None:
            return AdtDecision(shadow_breaches=tuple(shadow))
        return AdtDecision(outcome="quarantine", breach=breach, shadow_breaches=tuple(shadow))

    def record(self, user: str, srv: str, now_s: float) -> None:
        for _, window, _ in self.lanes(user, srv):
            window.add(now_s)

    def counts(self, user: str, now_s: float) -> list[int]:
        if user not in self.users:
            return []
        table, windows = self.users[user]
        return [windows[r.key].count(now_s) for r in table.count_rules]


_SRVS = ["7.2", "7.3", "4.1.1"]
_WINDOWS = [1, 10, 60, 600]
_EXCEPTION = ExceptionWindow(
    id="campaign",
    start=datetime.fromtimestamp(T0 + 30, UTC),
    end=datetime.fromtimestamp(T0 + 90, UTC),
    thresholds={f"user:{A}:7.2:60": 6},
)


@st.composite
def values(draw: st.DrawFn, *, user: bool) -> AdtValues:
    srvs = [*_SRVS, "*"] if user else _SRVS
    keys = draw(st.lists(st.tuples(st.sampled_from(srvs), st.sampled_from(_WINDOWS)), unique=True))
    thresholds = tuple(
        Threshold(
            srv=srv,
            window_s=w,
            max=draw(st.integers(0, 6)),
            shadow=draw(st.booleans()) and draw(st.booleans()),
        )
        for srv, w in keys
    )
    exceptions: tuple[ExceptionWindow, ...] = ()
    if user and draw(st.booleans()):
        thresholds = (*(t for t in thresholds if (t.srv, t.window_s) != ("7.2", 60)),)
        thresholds += (Threshold(srv="7.2", window_s=60, max=2),)
        exceptions = (_EXCEPTION,)
    rules: tuple[ValueRule, ...] = ()
    if draw(st.booleans()):
        rules = (ValueRule(srv="7.2", field="amount", min=0, max=10, shadow=draw(st.booleans())),)
    return AdtValues(thresholds=thresholds, value_rules=rules, exceptions=exceptions)


step = st.tuples(
    st.integers(-16, 80),  # eighths of a second on (or back)
    st.sampled_from([A, B]),
    st.sampled_from(_SRVS),
    st.sampled_from(["fused", "split", "release", "peers", "usage", "prune", "snapshot"]),
    st.sampled_from([5, 50, "5", None]),  # the body's amount
)


@settings(max_examples=300, deadline=None)
@given(
    user_values=values(user=True),
    dcc_values=values(user=False),
    steps=st.lists(step, min_size=10, max_size=150),
    peers=st.lists(st.integers(0, 4), min_size=3, max_size=3),
)
def test_the_engine_decides_and_counts_as_every_window_read_on_every_request(
    user_values: AdtValues,
    dcc_values: AdtValues,
    steps: list[tuple[int, str, str, str, Any]],
    peers: list[int],
) -> None:
    engine = AdtEngine(dcc_values=dcc_values)
    engine.set_user_values(A, user_values)
    model = Reference(dcc_values)
    model.set_user(A, user_values)
    now = T0
    for eighths, user, srv, op, amount in steps:
        now += eighths / 8
        body = {} if amount is None else {"amount": amount}
        if op in ("fused", "split"):
            expected = model.check(user, srv, body, now)
            getter: functools.partial[dict[str, Any]] = functools.partial(dict, body)
            if op == "fused":
                got = engine.check_and_record(user, srv, getter, now)
            else:
                got = engine.check(user, srv, getter, now)
                if not got.quarantined:
                    engine.record_processed(user, srv, now)
            assert got == expected, (now, user, srv)
            if not expected.quarantined:
                model.record(user, srv, now)
        elif op == "release":
            engine.record_released(user, srv, now)
            model.record(user, srv, now)
        elif op == "peers":
            counts = {(s, w): n for s, w, n in zip(_SRVS, _WINDOWS, peers, strict=False)}
            engine.set_peer_counts(counts)
            model.peer = counts
            peers = peers[1:] + peers[:1]
        elif op == "usage":
            assert [u.count for u in engine.usage(A, now)] == model.counts(A, now)
            assert [u.count for u in engine.dcc_usage(now)] == [
                w.count(now) + model.peer.get((r.srv, r.window_s), 0)
                for r in model.dcc.count_rules
                for w in [model.dcc_windows[r.key]]
            ]
        elif op == "prune":
            expected_freed = sum(
                w.release_if_idle(now)
                for w in [*model.users[A][1].values(), *model.dcc_windows.values()]
            )
            assert engine.prune(now) == expected_freed
        else:  # a crash: a new engine restores A's snapshot (taken now) before going on
            snapshot = engine.snapshot_user(A, now)
            assert snapshot is not None
            fresh = AdtEngine(dcc_values=dcc_values)
            fresh.set_user_values(A, user_values)
            fresh.restore_user(decode_snapshot(encode_snapshot(snapshot)))
            assert [u.count for u in fresh.usage(A, now)] == model.counts(A, now)
            engine.set_user_values(A, None)  # keep the DCC-wide counts: take A's only
            engine.set_user_values(A, user_values)
            engine.restore_user(decode_snapshot(encode_snapshot(snapshot)))
            for window in model.users[A][1].values():
                if window.count(now) == 0:
                    window.clear()  # an empty window is not in a snapshot: not restored
    assert [u.count for u in engine.usage(A, now)] == model.counts(A, now)


@settings(max_examples=100, deadline=None)
@given(
    user_values=values(user=True),
    steps=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(_SRVS)), max_size=80),
    cuts=st.sets(st.integers(0, 80)),
)
def test_per_key_snapshots_restore_the_counts_of_a_whole_snapshot(
    user_values: AdtValues, steps: list[tuple[int, str]], cuts: set[int]
) -> None:
    engine = AdtEngine()
    engine.set_user_values(A, user_values)
    newest: dict[str, bytes] = {}  # what a compacted state topic keeps: per key, the last
    now = T0
    for i, (eighths, srv) in enumerate(steps):
        now += eighths / 8
        engine.check_and_record(A, srv, dict, now)
        if i in cuts:  # the end of a batch
            for key_srv, snapshot in engine.snapshot_changed(A, now):
                newest[key_srv] = encode_snapshot(snapshot)
    for key_srv, snapshot in engine.snapshot_changed(A, now):
        newest[key_srv] = encode_snapshot(snapshot)
    assert engine.snapshot_changed(A, now) == ()
    restored = AdtEngine()
    restored.set_user_values(A, user_values)
    whole = engine.snapshot_user(A, now)
    assert whole is not None
    merged = msgspec_replace_windows(
        whole, tuple(w for raw in newest.values() for w in decode_snapshot(raw).windows)
    )
    restored.restore_user(merged)
    for later in (now, now + 30, now + 700):
        assert [u.count for u in restored.usage(A, later)] == [
            u.count for u in engine.usage(A, later)
        ]


def msgspec_replace_windows(snapshot: Any, windows: tuple[Any, ...]) -> Any:
    import msgspec

    return msgspec.structs.replace(snapshot, windows=windows)


def test_a_fresh_key_passes_without_reading_its_windows_until_its_smallest_max() -> None:
    engine = AdtEngine()
    engine.set_user_values(
        A,
        AdtValues(
            thresholds=(
                Threshold(srv="7.2", window_s=60, max=3),
                Threshold(srv="7.2", window_s=3600, max=10),
            )
        ),
    )
    outcomes = [engine.check_and_record(A, "7.2", dict, T0 + i).outcome for i in range(5)]
    assert outcomes == ["pass", "pass", "pass", "quarantine", "quarantine"]
    assert [u.count for u in engine.usage(A, T0 + 5)] == [3, 3]


def test_a_busy_key_counts_held_back_requests_before_anyone_reads_it() -> None:
    engine = AdtEngine()
    engine.set_user_values(A, AdtValues(thresholds=(Threshold(srv="7.2", window_s=60, max=99),)))
    for i in range(50):  # all in one bucket of 1 s: held back after the first
        engine.check_and_record(A, "7.2", dict, T0 + i / 100)
    assert [u.count for u in engine.usage(A, T0 + 0.5)] == [50]
    snapshot = engine.snapshot_user(A, T0 + 0.5)
    assert snapshot is not None
    assert snapshot.windows[0].buckets[0][1] == 50  # one bucket: as a pair
    # Over 20 s, 20 buckets hold requests: the window is written whole.
    for i in range(1, 20):
        engine.check_and_record(A, "7.2", dict, T0 + i)
    snapshot = engine.snapshot_user(A, T0 + 20)
    assert snapshot is not None
    (window,) = snapshot.windows
    assert (window.buckets, len(window.counts)) == ((), 61)  # every count fits a byte
    assert sum(window.counts) == 69


def test_new_peer_counts_take_room_from_dcc_wide_keys() -> None:
    engine = AdtEngine(dcc_values=AdtValues(thresholds=(Threshold(srv="7.2", window_s=60, max=5),)))
    assert engine.check_and_record(A, "7.2", dict, T0).outcome == "pass"
    engine.set_peer_counts({("7.2", 60): 3})
    assert engine.check_and_record(A, "7.2", dict, T0).outcome == "pass"  # 1 + 3 < 5
    decision = engine.check_and_record(A, "7.2", dict, T0)
    assert decision.breach is not None
    assert decision.breach.observed == 6  # 2 here + 3 elsewhere, and this one


def test_an_exception_window_raises_the_room_while_it_lasts() -> None:
    engine = AdtEngine()
    engine.set_user_values(
        A,
        AdtValues(thresholds=(Threshold(srv="7.2", window_s=60, max=2),), exceptions=(_EXCEPTION,)),
    )
    # From T0 + 30 to T0 + 90 the max is 6; before and after, 2.
    assert [engine.check_and_record(A, "7.2", dict, T0 + 29).outcome for _ in range(3)] == [
        "pass",
        "pass",
        "quarantine",
    ]
    passed = [engine.check_and_record(A, "7.2", dict, T0 + 30).outcome for _ in range(5)]
    assert passed == ["pass"] * 4 + ["quarantine"]
    decision = engine.check_and_record(A, "7.2", dict, T0 + 90)
    assert decision.breach is not None
    assert decision.breach.limit == 2


def _passes_fast(value: object, lo: float, hi: float) -> bool:
    """The engine's shortcut: an int or a float (not a bool) within [lo, hi]."""
    return type(value) in (int, float) and lo <= value <= hi  # type: ignore[operator]


@given(
    value=st.one_of(
        st.integers(-(10**400), 10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=3),
        st.none(),
    ),
    low=st.one_of(st.none(), st.integers(-5, 5)),
    span=st.one_of(st.none(), st.floats(0, 10)),
)
def test_a_number_the_shortcut_passes_is_one_evaluate_passes(
    value: object, low: int | None, span: float | None
) -> None:
    high = None if span is None else (low or 0) + span
    if low is None and high is None:
        high = 1.0
    check = ValueCheck(id="v", srv="2.2", field="amount", min=low, max=high)
    _, field, lo, hi = value_entry(check)
    if _passes_fast(value, lo, hi):
        assert check.evaluate({field: value}, T0) is None
    date = ValueCheck(id="d", srv="11.3", field="at", max_days_ahead=30)
    _, _, lo, hi = value_entry(date)
    assert not _passes_fast(value, lo, hi)  # a date rule is always evaluated


def test_the_fused_call_reads_an_unreadable_body_as_check_does_and_once() -> None:
    values = AdtValues(
        value_rules=(
            ValueRule(srv="2.2", field="amount", min=0, max=500),
            ValueRule(srv="2.2", field="fee", max=10, shadow=True),
        )
    )
    calls = []

    def broken() -> dict[str, Any]:
        calls.append(1)
        raise ValueError("Number out of range - at `$[...]`")

    fused = AdtEngine(dcc_values=values).check_and_record(A, "2.2", broken, T0)
    assert calls == [1]
    assert fused == AdtEngine(dcc_values=values).check(A, "2.2", broken, T0)
    assert fused.breach is not None
    assert fused.breach.observed == "unreadable body"
    assert [b.rule for b in fused.shadow_breaches] == ["value:2.2:fee"]


# --- keys made on first use, dropped by prune when idle -----------------------------------


def _owner(engine: AdtEngine, user: str) -> Any:
    return engine._users[user]


def _merged(user: str, newest: dict[str, bytes], taken_at_s: float) -> UserCountersSnapshot:
    """What a router restores from a compacted state topic: each key's newest snapshot."""
    return UserCountersSnapshot(
        user_id=user,
        buckets_per_window=60,
        taken_at_s=taken_at_s,
        windows=tuple(w for raw in newest.values() for w in decode_snapshot(raw).windows),
    )


lazy_step = st.tuples(
    st.sampled_from([0, 1, 4, 40, 400, 4000]),  # seconds on: idle long enough to be pruned
    st.sampled_from(_SRVS),
    st.sampled_from(["request", "request", "request", "changed", "prune", "usage", "crash"]),
)


@settings(max_examples=200, deadline=None)
@given(
    user_values=values(user=True),
    dcc_values=values(user=False),
    steps=st.lists(lazy_step, min_size=5, max_size=60),
    peers=st.integers(0, 3),
)
def test_keys_made_on_first_use_and_dropped_when_idle_count_as_every_window_does(
    user_values: AdtValues,
    dcc_values: AdtValues,
    steps: list[tuple[int, str, str]],
    peers: int,
) -> None:
    engine = AdtEngine(dcc_values=dcc_values)
    engine.set_user_values(A, user_values)
    model = Reference(dcc_values)
    model.set_user(A, user_values)
    counts = {("7.2", 60): peers}
    engine.set_peer_counts(counts)
    model.peer = counts
    assert _owner(engine, A).keys == {}  # configured: no key, no window yet
    newest: dict[str, bytes] = {}  # the state topic: per key, its last snapshot
    now = T0
    for seconds, srv, op in steps:
        now += seconds
        if op == "request":
            expected = model.check(A, srv, {}, now)
            assert engine.check_and_record(A, srv, dict, now) == expected, (now, srv)
            if not expected.quarantined:
                model.record(A, srv, now)
        elif op == "changed":
            for key_srv, snapshot in engine.snapshot_changed(A, now):
                newest[key_srv] = encode_snapshot(snapshot)
        elif op == "prune":
            expected_freed = sum(
                w.release_if_idle(now)
                for w in [*model.users[A][1].values(), *model.dcc_windows.values()]
            )
            assert engine.prune(now) == expected_freed
            owner = _owner(engine, A)
            # Kept: the keys that hold counts, or wait for their snapshot.
            assert all(key.live or key.dirty for key in owner.keys.values())
            # A plan holds its keys: none holds one that was dropped.
            made = {*owner.keys.values(), *engine._dcc.keys.values()}
            assert all(key in made for plan in owner.plans.values() for key in plan.keys)
        elif op == "usage":
            assert [u.count for u in engine.usage(A, now)] == model.counts(A, now)
        else:  # a crash after the last snapshots written: a new router restores them
            for key_srv, snapshot in engine.snapshot_changed(A, now):
                newest[key_srv] = encode_snapshot(snapshot)
            fresh = AdtEngine(dcc_values=dcc_values)
            fresh.set_peer_counts(counts)
            fresh.set_user_values(A, user_values)
            fresh.restore_user(_merged(A, newest, now))
            # (DCC-wide counts are each router's own: not in a User's snapshots.)
            assert [u.count for u in fresh.usage(A, now)] == model.counts(A, now)
    assert [u.count for u in engine.usage(A, now)] == model.counts(A, now)


def test_a_user_that_sends_nothing_costs_its_table_only() -> None:
    values = AdtValues(
        thresholds=tuple(
            Threshold(srv=srv, window_s=w, max=100)
            for srv in ("7.2", "7.3", "4.1.1", "*")
            for w in (60, 3600, 86_400)
        )
    )
    users = [f"90-B3-D5-1F-30-01-{i // 256:02X}-{i % 256:02X}" for i in range(200)]
    engine = AdtEngine()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tables = [AdtTable.for_user(user, values) for user in users]
        table_bytes = (tracemalloc.get_traced_memory()[0] - before) / len(users)
        del tables
        before = tracemalloc.get_traced_memory()[0]
        for user in users:
            engine.set_user_values(user, values)
        user_bytes = (tracemalloc.get_traced_memory()[0] - before) / len(users)
    finally:
        tracemalloc.stop()
    # Was some 6 KB more with a key and 3 windows made per (User, SRV) up front.
    assert user_bytes - table_bytes < 1024
    assert all(_owner(engine, user).keys == {} for user in users)


def test_a_key_is_made_on_its_first_request_and_dropped_once_idle_and_snapshotted() -> None:
    engine = AdtEngine()
    engine.set_user_values(
        A,
        AdtValues(
            thresholds=(
                Threshold(srv="7.2", window_s=60, max=2),
                Threshold(srv="7.3", window_s=60, max=5),
                Threshold(srv="*", window_s=3600, max=9),
            )
        ),
    )
    owner = _owner(engine, A)
    assert engine.check_and_record(A, "7.2", dict, T0).outcome == "pass"
    assert set(owner.keys) == {"7.2", "*"}  # the request's SRV and all SRVs; not 7.3
    assert engine.usage(A, T0)[1].count == 0  # 7.3: no key, nothing counted
    assert engine.prune(T0 + 3700) == 2  # both windows empty, their arrays freed ...
    assert set(owner.keys) == {"7.2", "*"}  # ... the keys kept: their snapshot is due
    assert {srv for srv, _ in engine.snapshot_changed(A, T0 + 3700)} == {"7.2", "*"}
    assert engine.prune(T0 + 3700) == 0
    assert owner.keys == {}
    assert owner.plans == {}  # a plan holds its keys: compiled again on the next request
    assert [engine.check_and_record(A, "7.2", dict, T0 + 3700).outcome for _ in range(3)] == [
        "pass",
        "pass",
        "quarantine",
    ]
    engine.forget_user(A)  # revoked: every key dropped, the values kept
    assert owner.keys == {}
    assert engine.user_table(A) is not None


def test_a_snapshot_restores_into_keys_not_made_yet_and_values_keep_their_counts() -> None:
    values = AdtValues(
        thresholds=(
            Threshold(srv="7.2", window_s=60, max=3),
            Threshold(srv="*", window_s=60, max=10),
        )
    )
    engine = AdtEngine()
    engine.set_user_values(A, values)
    for _ in range(2):
        engine.check_and_record(A, "7.2", dict, T0)
    snapshot = engine.snapshot_user(A, T0)
    assert snapshot is not None
    fresh = AdtEngine()
    fresh.set_user_values(A, values)
    assert _owner(fresh, A).keys == {}
    assert fresh.restore_user(snapshot) == 2  # the keys are made to take them
    assert [u.count for u in fresh.usage(A, T0)] == [2, 2]
    # New values keeping (7.2, 60): its counts stay, in a key made for them; a new
    # threshold on 7.3 gets no key until 7.3 is requested.
    more = AdtValues(thresholds=(*values.thresholds, Threshold(srv="7.3", window_s=60, max=1)))
    fresh.set_user_values(A, more)
    assert set(_owner(fresh, A).keys) == {"7.2", "*"}
    outcomes = [fresh.check_and_record(A, "7.2", dict, T0 + 1).outcome for _ in range(2)]
    assert outcomes == ["pass", "quarantine"]  # 2 restored + 1: the max of 3
