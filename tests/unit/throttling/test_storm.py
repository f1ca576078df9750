"""throttling.storm: SECMP0062 storm windows, copies, exclusion list, expiry and the key cap."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from throttling.storm import (
    StormCopy,
    StormGuard,
    StormParams,
    StormPolicy,
    StormState,
    normalize_alert_code,
)

DEVICE = "00-DB-12-34-56-78-90-A0"
OTHER = "00-DB-12-34-56-78-90-A1"
CODES = ("8F35", "8F36", "AD1")


def guard(
    window_s: int = 60,
    max_alerts: int = 3,
    period_s: int = 10,
    *,
    exclusions: tuple[str, ...] = (),
    per_code: dict[str, StormParams] | None = None,
    max_keys: int = 1_000_000,
) -> StormGuard[str]:
    policy = StormPolicy(
        default=StormParams(window_s=window_s, max_alerts=max_alerts, period_s=period_s),
        per_code=per_code or {},
    )
    return StormGuard(policy, exclusions=exclusions, max_keys=max_keys)


# --- windows and storm start -----------------------------------------------------------------


def test_first_max_alerts_are_forwarded_then_a_storm_starts() -> None:
    g = guard(max_alerts=3)
    reasons = [g.decide(DEVICE, "8F35", f"a{i}", float(i)).reason for i in range(5)]
    assert reasons == [
        "under_threshold",
        "under_threshold",
        "under_threshold",
        "storm_started",
        "suppressed",
    ]
    assert g.active_storms == 1
    assert g.tracked_keys == 1


def test_keys_are_per_device_and_per_code() -> None:
    g = guard(max_alerts=1)
    assert g.decide(DEVICE, "8F35", "a", 0.0).forward
    assert g.decide(DEVICE, "8F36", "b", 0.0).forward
    assert g.decide(OTHER, "8F35", "c", 0.0).forward
    assert not g.decide(DEVICE, "8F35", "d", 0.0).forward
    assert g.tracked_keys == 3
    assert g.active_storms == 1


def test_a_new_window_opens_after_the_old_one_ends() -> None:
    g = guard(window_s=10, max_alerts=2)
    # Two alerts per 10 s window never make a storm, however long it goes on.
    for n in range(20):
        t = n * 10.0
        assert g.decide(DEVICE, "8F35", "x", t).forward
        assert g.decide(DEVICE, "8F35", "y", t + 9.9).forward
    assert g.active_storms == 0


def test_unknown_codes_pass_with_the_default_parameters() -> None:
    g = guard(max_alerts=2, per_code={"8F35": StormParams(window_s=60, max_alerts=5, period_s=10)})
    assert [g.decide(DEVICE, "ZZ99", str(i), 0.0).forward for i in range(3)] == [True, True, False]
    assert [g.decide(DEVICE, "8F35", str(i), 0.0).forward for i in range(6)] == [True] * 5 + [False]


def test_codes_are_compared_in_canonical_form() -> None:
    assert normalize_alert_code(" 0x8f75 ") == "8F75"
    assert normalize_alert_code("ad1") == "AD1"
    g = guard(max_alerts=1, per_code={"0x8f35": StormParams(window_s=60, max_alerts=2, period_s=5)})
    assert g.decide(DEVICE, "8f35", "a", 0.0).forward
    assert g.decide(DEVICE, "0x8F35", "b", 0.0).forward
    assert not g.decide(DEVICE, "8F35", "c", 0.0).forward  # one key, whatever the spelling


# --- copies and the end of a storm -----------------------------------------------------------


def test_periodic_copy_is_the_latest_alert_with_the_count_since_the_last_forwarded() -> None:
    g = guard(max_alerts=1, period_s=10)
    g.decide(DEVICE, "8F35", "a0", 0.0)  # forwarded
    for i in range(1, 5):  # storm starts at t=1: a1..a4 suppressed
        g.decide(DEVICE, "8F35", f"a{i}", float(i))
    assert g.flush(10.9) == []
    (copy,) = g.flush(11.0)
    assert copy == StormCopy(
        device_id=DEVICE,
        alert_code="8F35",
        item="a4",
        throttled_alert_count=3,
        throttled_alert_sequence_id=f"{DEVICE}:8F35:1000",
        final=False,
        suppressed_total=3,
        at_s=11.0,
    )


def test_storm_ends_after_a_quiet_period_with_a_final_copy_carrying_the_total() -> None:
    g = guard(max_alerts=1, period_s=10)
    g.decide(DEVICE, "8F35", "a0", 0.0)
    for i in range(1, 5):  # storm from t=1; boundaries at 11, 21, 31
        g.decide(DEVICE, "8F35", f"a{i}", float(i))
    for i in range(5, 8):  # in the second period (11, 21]
        g.decide(DEVICE, "8F35", f"a{i}", 10.0 + i)
    first, second = g.flush(21.0)
    assert (first.item, first.throttled_alert_count, first.final) == ("a4", 3, False)
    assert (second.item, second.throttled_alert_count, second.final) == ("a7", 2, False)
    assert g.active_storms == 1
    # The period (21, 31] is quiet: the storm ends at 31.
    assert g.flush(30.9) == []
    (final,) = g.flush(31.0)
    assert final.final
    assert final.item == "a7"  # a repeat of the last forwarded copy
    assert final.throttled_alert_count == 5 == final.suppressed_total
    assert final.throttled_alert_sequence_id == first.throttled_alert_sequence_id
    assert g.active_storms == 0
    assert g.tracked_keys == 0
    # The key is forgotten: its next alert opens a fresh window and is forwarded.
    assert g.decide(DEVICE, "8F35", "b0", 32.0).reason == "under_threshold"


def test_a_new_storm_gets_a_new_sequence_id() -> None:
    g = guard(max_alerts=1, period_s=5)
    g.decide(DEVICE, "8F35", "a", 0.0)
    g.decide(DEVICE, "8F35", "b", 1.0)
    first = g.flush(100.0)
    g.decide(DEVICE, "8F35", "c", 200.0)
    g.decide(DEVICE, "8F35", "d", 200.5)
    second = g.flush(300.0)
    ids = {c.throttled_alert_sequence_id for c in first} | {
        c.throttled_alert_sequence_id for c in second
    }
    assert ids == {f"{DEVICE}:8F35:1000", f"{DEVICE}:8F35:200500"}


def test_sequence_prefix_and_counters() -> None:
    g: StormGuard[str] = StormGuard(
        StormPolicy(default=StormParams(window_s=60, max_alerts=1, period_s=5)),
        sequence_prefix="w7-",
    )
    g.decide(DEVICE, "8F35", "a", 0.0)
    g.decide(DEVICE, "8F35", "b", 1.0)
    g.decide(DEVICE, "8F35", "c", 2.0)
    copies = g.flush(100.0)
    assert {c.throttled_alert_sequence_id for c in copies} == {f"w7-{DEVICE}:8F35:1000"}
    stats = g.stats()
    assert (stats.storms_started, stats.storms_ended) == (1, 1)
    assert (stats.periodic_copies, stats.final_copies) == (1, 1)
    assert (stats.tracked_keys, stats.active_storms) == (0, 0)


def test_decide_after_a_missed_boundary_settles_it_first() -> None:
    g = guard(max_alerts=1, period_s=10)
    g.decide(DEVICE, "8F35", "a", 0.0)
    g.decide(DEVICE, "8F35", "b", 1.0)  # storm, boundary at 11
    g.decide(DEVICE, "8F35", "c", 12.0)  # no flush at 11: c belongs to the next period
    copies = g.flush(12.0)
    assert [(c.item, c.at_s) for c in copies] == [("b", 11.0)]
    (copy,) = g.flush(21.0)
    assert (copy.item, copy.throttled_alert_count) == ("c", 0)


def test_late_flush_passes_every_boundary_in_order() -> None:
    g = guard(max_alerts=1, period_s=10)
    g.decide(DEVICE, "8F35", "a", 0.0)
    g.decide(DEVICE, "8F35", "b", 1.0)
    copies = g.flush(1000.0)
    assert [(c.item, c.final, c.at_s) for c in copies] == [("b", False, 11.0), ("b", True, 21.0)]


# --- exclusion list and policy swaps ---------------------------------------------------------


def test_excluded_codes_are_never_throttled() -> None:
    g = guard(max_alerts=1, exclusions=("0x8F75",))
    assert g.is_excluded("8f75")
    decisions = [g.decide(DEVICE, "8F75", str(i), 0.0) for i in range(100)]
    assert all(d.forward and d.reason == "excluded" for d in decisions)
    assert g.tracked_keys == 0  # excluded alerts keep no state


def test_excluding_a_storming_code_forwards_it_and_ends_the_storm() -> None:
    g = guard(max_alerts=1, period_s=10)
    g.decide(DEVICE, "8F75", "a", 0.0)
    g.decide(DEVICE, "8F75", "b", 1.0)
    assert g.active_storms == 1
    g.set_exclusions(["8F75"])
    assert g.decide(DEVICE, "8F75", "c", 2.0).reason == "excluded"
    copies = g.flush(21.0)
    assert [(c.item, c.final, c.throttled_alert_count) for c in copies] == [
        ("b", False, 0),
        ("b", True, 0),
    ]
    # 2023: 0x8F75 proposed for removal from the list, then throttled like any other code.
    g.set_exclusions([])
    assert [g.decide(DEVICE, "8F75", str(i), 30.0).forward for i in range(2)] == [True, False]


def test_set_policy_applies_to_open_windows_and_to_the_next_boundary() -> None:
    g = guard(max_alerts=5, period_s=10)
    for i in range(3):
        assert g.decide(DEVICE, "8F35", str(i), 0.0).forward
    g.set_policy(StormPolicy(default=StormParams(window_s=60, max_alerts=2, period_s=30)))
    assert g.policy.default.period_s == 30
    assert not g.decide(DEVICE, "8F35", "3", 1.0).forward  # 3 already counted > new max 2
    # The storm started at t=1 under the new policy: first boundary at 31.
    assert g.flush(30.0) == []
    assert len(g.flush(31.0)) == 1
    g.set_policy(StormPolicy(default=StormParams(window_s=60, max_alerts=2, period_s=5)))
    g.decide(DEVICE, "8F35", "4", 32.0)
    # The boundary after 31 was scheduled with period 30 and stays; the next uses period 5.
    assert g.flush(60.9) == []
    assert [c.at_s for c in g.flush(61.0)] == [61.0]
    g.decide(DEVICE, "8F35", "5", 62.0)
    assert [c.at_s for c in g.flush(66.0)] == [66.0]


def test_params_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="window_s"):
        StormParams(window_s=0, max_alerts=1, period_s=1)
    with pytest.raises(ValueError, match="max_alerts"):
        StormParams(window_s=1, max_alerts=0, period_s=1)
    with pytest.raises(ValueError, match="period_s"):
        StormParams(window_s=1, max_alerts=1, period_s=0)
    with pytest.raises(ValueError, match="max_keys"):
        StormGuard(StormPolicy(), max_keys=0)


# --- bounded memory --------------------------------------------------------------------------


def test_flush_drops_windows_that_have_ended() -> None:
    g = guard(window_s=10)
    for n in range(100):
        g.decide(f"dev-{n}", "8F35", "x", float(n) / 10)
    assert g.tracked_keys == 100
    g.flush(10.45)  # windows opened at 0.0 .. 0.4 have ended
    assert g.tracked_keys == 95
    g.flush(20.0)
    assert g.tracked_keys == 0
    assert g.stats().expired_keys == 100


def test_expiry_keeps_storms() -> None:
    g = guard(window_s=10, max_alerts=1, period_s=1000)
    g.decide(DEVICE, "8F35", "a", 0.0)
    g.decide(DEVICE, "8F35", "b", 0.0)
    g.flush(500.0)
    assert g.active_storms == 1


def test_the_cap_evicts_the_oldest_windows_in_a_batch() -> None:
    g = guard(window_s=1000, max_alerts=3, max_keys=128)  # evicts 128 // 64 = 2 at once
    for n in range(128):
        g.decide(f"dev-{n}", "8F35", "x", float(n))
    g.decide("dev-new", "8F35", "x", 200.0)
    assert g.tracked_keys == 127
    assert g.stats().evicted_keys == 2
    # dev-0 was forgotten: its count starts again, three more go through.
    assert [g.decide("dev-0", "8F35", "x", 201.0).forward for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    # dev-2 was kept: it had one, two more go through.
    assert [g.decide("dev-2", "8F35", "x", 201.0).forward for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert g.tracked_keys <= 128


def test_when_every_key_is_a_storm_the_oldest_storm_is_cut_short_with_its_copies() -> None:
    g = guard(max_alerts=1, period_s=100, max_keys=2)
    for dev in ("d1", "d2"):
        g.decide(dev, "8F35", f"{dev}-a", 0.0)
        g.decide(dev, "8F35", f"{dev}-b", 1.0)
        g.decide(dev, "8F35", f"{dev}-c", 2.0)
    assert g.active_storms == 2
    assert g.decide("d3", "8F35", "d3-a", 3.0).forward
    copies = g.flush(3.0)
    assert [(c.device_id, c.item, c.throttled_alert_count, c.final) for c in copies] == [
        ("d1", "d1-c", 1, False),
        ("d1", "d1-c", 1, True),
    ]
    assert g.tracked_keys == 2
    assert g.stats().storms_cut_short == 1


def test_a_storm_cut_short_and_restarted_at_once_gets_a_new_sequence_id() -> None:
    g = guard(max_alerts=1, period_s=10, max_keys=1)
    g.decide("d1", "8F35", "a", 0.0)
    g.decide("d1", "8F35", "b", 0.0)  # storm d1:8F35:0
    g.decide("d2", "8F35", "c", 0.0)  # cuts it short
    g.decide("d1", "8F35", "d", 0.0)  # evicts d2's window
    g.decide("d1", "8F35", "e", 0.0)  # a new storm in the same millisecond
    copies = g.flush(100.0)
    assert [(c.item, c.final, c.throttled_alert_sequence_id) for c in copies] == [
        ("b", False, "d1:8F35:0"),
        ("b", True, "d1:8F35:0"),
        ("e", False, "d1:8F35:1"),
        ("e", True, "d1:8F35:1"),
    ]


# --- state across restarts ------------------------------------------------------------------


def test_an_exported_storm_continues_in_another_guard_under_its_sequence_id() -> None:
    first = guard(max_alerts=1, period_s=10)
    first.decide(DEVICE, "8F35", "a", 0.0)
    first.decide(DEVICE, "8F35", "b", 1.0)  # storm at 1, boundary at 11
    first.decide(DEVICE, "8F35", "c", 2.0)
    assert first.storm_state(DEVICE, "8f35") == StormState(
        device_id=DEVICE,
        alert_code="8F35",
        sequence_id=f"{DEVICE}:8F35:1000",
        due_s=11.0,
        pending=2,
        suppressed=0,
        latest="c",
    )
    assert first.storm_state(DEVICE, "8F36") is None
    assert first.storm_state(OTHER, "8F35") is None
    state = first.storm_state(DEVICE, "8F35")
    assert state is not None
    second = guard(max_alerts=1, period_s=10)
    second.decide(DEVICE, "8F35", "x", 3.0)  # a window of the key: replaced
    second.restore_storm(state, 3.0)
    assert (second.tracked_keys, second.active_storms) == (1, 1)
    assert not second.decide(DEVICE, "8F35", "d", 4.0).forward
    copies = second.flush(100.0)
    assert [(c.item, c.final, c.throttled_alert_count, c.at_s) for c in copies] == [
        ("d", False, 2, 11.0),
        ("d", True, 2, 21.0),
    ]
    assert {c.throttled_alert_sequence_id for c in copies} == {f"{DEVICE}:8F35:1000"}


def test_a_boundary_passed_while_nobody_held_the_storm_waits_a_period_after_the_restore() -> None:
    first = guard(max_alerts=1, period_s=10)
    first.decide(DEVICE, "8F35", "a", 0.0)
    first.decide(DEVICE, "8F35", "b", 1.0)  # storm at 1, boundary at 11
    state = first.storm_state(DEVICE, "8F35")
    assert state is not None
    second = guard(max_alerts=1, period_s=10)
    second.restore_storm(state, 50.0)  # restored long after its boundary
    assert second.flush(59.0) == []
    # The alerts that waited meanwhile are counted in the storm, not in a fresh window.
    assert not second.decide(DEVICE, "8F35", "c", 55.0).forward
    copies = second.flush(100.0)
    assert [(c.item, c.final, c.throttled_alert_count, c.at_s) for c in copies] == [
        ("c", False, 1, 60.0),
        ("c", True, 1, 70.0),
    ]


def test_forget_storm_hands_a_storm_over_without_copies_and_clear_windows_keeps_storms() -> None:
    g = guard(max_alerts=1, period_s=10)
    g.decide(DEVICE, "8F35", "a", 0.0)
    g.decide(DEVICE, "8F35", "b", 1.0)
    g.decide(OTHER, "8F35", "c", 1.0)  # a window
    g.clear_windows()
    assert (g.tracked_keys, g.active_storms) == (1, 1)
    g.forget_storm(DEVICE, "0x8f35")
    assert g.flush(100.0) == []
    assert g.tracked_keys == 0


def test_restore_refuses_negative_counts_and_respects_the_cap() -> None:
    g = guard(max_alerts=1, period_s=10, max_keys=1)
    bad = StormState(
        device_id=DEVICE,
        alert_code="8F35",
        sequence_id="s",
        due_s=1.0,
        pending=-1,
        suppressed=0,
        latest="a",
    )
    with pytest.raises(ValueError, match="cannot be negative"):
        g.restore_storm(bad, 0.0)
    g.decide(OTHER, "8F35", "w", 0.0)  # one window: the cap is reached
    g.restore_storm(msgspec_replace(bad, pending=1), 0.0)
    assert (g.tracked_keys, g.active_storms) == (1, 1)


def msgspec_replace(state: StormState[str], **changes: object) -> StormState[str]:
    import msgspec

    return msgspec.structs.replace(state, **changes)


# --- properties ------------------------------------------------------------------------------

# (seconds since the previous alert, device index, code index); the gaps include 0 and whole
# numbers so alerts land exactly on window ends and period boundaries.
_alerts = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 7.5]),
        st.integers(0, 2),
        st.integers(0, 2),
    ),
    max_size=150,
)
_params = st.builds(
    StormParams,
    window_s=st.integers(1, 6),
    max_alerts=st.integers(1, 4),
    period_s=st.integers(1, 5),
)


@dataclass
class _Run:
    """What one run forwarded: at once, periodic copies, final copies; alerts by id."""

    alerts: list[tuple[float, str, str]] = field(default_factory=list)
    immediate: list[int] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    periodic: list[StormCopy[int]] = field(default_factory=list)
    finals: list[StormCopy[int]] = field(default_factory=list)
    excluded_suppressed: int = 0


def _run(
    g: StormGuard[int],
    alerts: list[tuple[float, int, int]],
    *,
    flush_every_alert: bool,
    final_flush: bool = True,
    start: tuple[float, int] = (0.0, 0),
) -> _Run:
    run = _Run()
    t, first = start
    for n, (gap, dev, code_index) in enumerate(alerts, start=first):
        t += gap
        device, code = f"dev-{dev}", CODES[code_index]
        run.alerts.append((t, device, code))
        if flush_every_alert:
            _collect(run, g.flush(t))
        decision = g.decide(device, code, n, t)
        if decision.forward:
            run.immediate.append(n)
        else:
            run.suppressed.append(n)
            if decision.reason == "storm_started":
                run.started.append(n)
            if g.is_excluded(code):
                run.excluded_suppressed += 1
    if final_flush:
        _collect(run, g.flush(t + 1000.0))
    return run


def _collect(run: _Run, copies: list[StormCopy[int]]) -> None:
    for c in copies:
        (run.finals if c.final else run.periodic).append(c)


def _key(run: _Run, n: int) -> tuple[str, str]:
    _, device, code = run.alerts[n]
    return device, code


@settings(max_examples=300, deadline=None)
@given(_alerts, _params, st.booleans(), st.sampled_from([1, 2, 4, 1_000_000]))
def test_every_alert_is_forwarded_or_counted_as_suppressed(
    alerts: list[tuple[float, int, int]], params: StormParams, flush_often: bool, max_keys: int
) -> None:
    # Small max_keys: windows evicted and storms cut short must keep the accounting exact.
    g: StormGuard[int] = StormGuard(StormPolicy(default=params), max_keys=max_keys)
    run = _run(g, alerts, flush_every_alert=flush_often)
    received = Counter(_key(run, n) for n in range(len(run.alerts)))
    forwarded = Counter(_key(run, n) for n in run.immediate)
    forwarded.update((c.device_id, c.alert_code) for c in run.periodic)
    suppressed: Counter[tuple[str, str]] = Counter()
    for c in run.periodic:
        suppressed[c.device_id, c.alert_code] += c.throttled_alert_count
    for key, n in received.items():
        assert forwarded[key] + suppressed[key] == n, key
    # A periodic copy forwards an alert that decide suppressed, and no alert goes out twice.
    copied = [c.item for c in run.periodic]
    assert len(copied) == len(set(copied))
    assert set(copied) <= set(run.suppressed)
    # Every storm ended; its final copy repeats its last periodic copy and carries the total.
    assert g.active_storms == 0
    by_storm: dict[str, list[StormCopy[int]]] = defaultdict(list)
    for c in run.periodic:
        by_storm[c.throttled_alert_sequence_id].append(c)
    final_ids = [f.throttled_alert_sequence_id for f in run.finals]
    assert len(final_ids) == len(set(final_ids))  # one final per storm, IDs unique
    assert set(final_ids) == set(by_storm)
    for final in run.finals:
        copies = by_storm[final.throttled_alert_sequence_id]
        assert final.throttled_alert_count == sum(c.throttled_alert_count for c in copies)
        assert final.item == copies[-1].item
        if not g.stats().storms_cut_short:
            assert final.at_s >= copies[-1].at_s + params.period_s
    assert g.tracked_keys <= max_keys


@settings(max_examples=200, deadline=None)
@given(_alerts, _params, st.sets(st.sampled_from(CODES)))
def test_excluded_codes_are_never_suppressed(
    alerts: list[tuple[float, int, int]], params: StormParams, excluded: set[str]
) -> None:
    g: StormGuard[int] = StormGuard(StormPolicy(default=params), exclusions=excluded)
    run = _run(g, alerts, flush_every_alert=False)
    assert run.excluded_suppressed == 0
    assert all(c.alert_code not in excluded for c in run.periodic + run.finals)


@settings(max_examples=300, deadline=None)
@given(_alerts, _params)
def test_at_most_one_copy_per_period_and_max_alerts_per_window(
    alerts: list[tuple[float, int, int]], params: StormParams
) -> None:
    g: StormGuard[int] = StormGuard(StormPolicy(default=params))
    run = _run(g, alerts, flush_every_alert=True)
    by_storm: dict[str, list[float]] = defaultdict(list)
    for c in run.periodic:
        by_storm[c.throttled_alert_sequence_id].append(c.at_s)
    for times in by_storm.values():
        assert all(b - a >= params.period_s for a, b in itertools.pairwise(times))
    # No alert of a key is forwarded at once while the key is in a storm: between the alert
    # that started it and the final copy.
    started = {
        f"{run.alerts[n][1]}:{run.alerts[n][2]}:{int(run.alerts[n][0] * 1000)}": n
        for n in run.started
    }
    spans: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for f in run.finals:
        spans[f.device_id, f.alert_code].append((started[f.throttled_alert_sequence_id], f.at_s))
    forwarded_at: dict[tuple[str, str], list[float]] = defaultdict(list)
    for n in run.immediate:
        t, device, code = run.alerts[n]
        forwarded_at[device, code].append(t)
        assert not any(first < n and t < end for first, end in spans[device, code])
    # Fixed windows: any window_s-long span holds at most two windows' worth.
    for times in forwarded_at.values():
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t < start + params.window_s)
            assert inside <= 2 * params.max_alerts


@settings(max_examples=200, deadline=None)
@given(_alerts, _params)
def test_copies_do_not_depend_on_how_often_flush_is_called(
    alerts: list[tuple[float, int, int]], params: StormParams
) -> None:
    often = _run(StormGuard(StormPolicy(default=params)), alerts, flush_every_alert=True)
    rarely = _run(StormGuard(StormPolicy(default=params)), alerts, flush_every_alert=False)
    assert often.immediate == rarely.immediate
    assert sorted(often.periodic + often.finals, key=_order) == sorted(
        rarely.periodic + rarely.finals, key=_order
    )


@settings(max_examples=200, deadline=None)
@given(_alerts, _params, st.integers(0, 150))
def test_a_restart_with_exported_storms_continues_them_unchanged(
    alerts: list[tuple[float, int, int]], params: StormParams, restart_at: int
) -> None:
    # Without a restart, and with one after alert `restart_at` (its storms exported into a
    # new guard, its windows lost): the storms running at the restart give the same copies.
    whole = _run(StormGuard(StormPolicy(default=params)), alerts, flush_every_alert=True)
    before = StormGuard[int](StormPolicy(default=params))
    head = _run(before, alerts[:restart_at], flush_every_alert=True, final_flush=False)
    states = [
        state
        for dev, code in itertools.product(range(3), CODES)
        if (state := before.storm_state(f"dev-{dev}", code)) is not None
    ]
    after = StormGuard[int](StormPolicy(default=params))
    t0 = sum(gap for gap, _, _ in alerts[:restart_at])
    for state in states:
        after.restore_storm(state, t0)
    tail = _run(after, alerts[restart_at:], flush_every_alert=True, start=(t0, restart_at))
    running = {s.sequence_id for s in states}

    def copies(*runs: _Run) -> list[StormCopy[int]]:
        found = [c for r in runs for c in r.periodic + r.finals]
        return sorted((c for c in found if c.throttled_alert_sequence_id in running), key=_order)

    assert copies(head, tail) == copies(whole)
    # And the accounting still holds across the restart, every key alike.
    received = Counter(_key(whole, n) for n in range(len(alerts)))
    forwarded = Counter(_key(whole, n) for n in head.immediate + tail.immediate)
    for c in head.periodic + tail.periodic:
        forwarded[c.device_id, c.alert_code] += 1 + c.throttled_alert_count
    assert forwarded == received


def _order(c: StormCopy[int]) -> tuple[float, str, bool]:
    return c.at_s, c.throttled_alert_sequence_id, c.final


def test_the_rule_cache_keeps_short_codes_only() -> None:
    # The per-code rules are cached by the code as sent; a long code (a record may be
    # 256 KiB) is answered the same but not kept, so the cache cannot hold gigabytes.
    g = guard(max_alerts=1, exclusions=("8F35",))
    long_code = " 0x8f35" + " " * 40
    assert g.decide(DEVICE, long_code, "a", 1.0).reason == "excluded"
    assert g.decide(DEVICE, " 0x8f36 ", "b", 1.0).reason == "under_threshold"
    assert g.decide(DEVICE, "8F36" + " " * 40, "c", 1.0).reason == "storm_started"
    assert g._rules.keys() == {" 0x8f36 "}
