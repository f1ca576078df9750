"""SECMP0067 traffic management: the policy's rules, the manager, reports and reasons."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from throttling.traffic import (
    ADMITTED,
    ADMITTED_RESERVED,
    RULE_CAPACITY,
    Allocation,
    LoadReport,
    SystemView,
    TrafficManager,
    TrafficPolicy,
    merge_reports,
    plan_limits,
    reason,
)

USER = "90-B3-D5-1F-30-01-00-00"
OTHER = "90-B3-D5-1F-30-02-00-00"
NOW = 1_795_000_000.0

PolicyFactory = Callable[..., TrafficPolicy]
ManagerFactory = Callable[..., TrafficManager]


@pytest.fixture
def make_policy() -> PolicyFactory:
    """Factory for a TrafficPolicy: C 1000/s, T 800/s, default 10/s burst 5; overridable."""

    def make(**overrides: Any) -> TrafficPolicy:
        fields: dict[str, Any] = {
            "capacity_per_s": 1000.0,
            "operating_threshold_per_s": 800.0,
            "default_allocation": Allocation(rate_per_s=10.0, burst=5),
        }
        fields.update(overrides)
        return TrafficPolicy(**fields)

    return make


@pytest.fixture
def make_manager(make_policy: PolicyFactory) -> ManagerFactory:
    """Factory for a TrafficManager with peer ID "me"; policy keywords go to make_policy."""

    def make(allocations: Mapping[str, Allocation] | None = None, **policy: Any) -> TrafficManager:
        return TrafficManager(make_policy(**policy), allocations, peer_id="me")

    return make


def view(admitted: float, rates: Mapping[str, float], *, reserved: float = 0.0) -> SystemView:
    return SystemView(
        at_s=NOW, admitted_per_s=admitted, reserved_per_s=reserved, user_rates=dict(rates)
    )


def hammer(manager: TrafficManager, user: str, n: int, srv: str = "4.1.1") -> list[bool]:
    """n requests of `user` at NOW; admitted ones are recorded, as the router does."""
    allowed = []
    for _ in range(n):
        decision = manager.decide(user, srv, NOW)
        if decision.allowed:
            manager.record_admitted(user, srv, NOW)
        allowed.append(decision.allowed)
    return allowed


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"operating_threshold_per_s": 1200.0}, "operating_threshold_per_s"),
        ({"operating_threshold_per_s": -1.0}, "operating_threshold_per_s"),
        ({"capacity_per_s": 0.0}, "capacity_per_s"),
        ({"capacity_per_s": -5.0}, "capacity_per_s"),
        ({"capacity_per_s": math.nan}, "capacity_per_s"),
        ({"capacity_per_s": math.inf}, "capacity_per_s"),
        ({"reserved_share": 1.0}, "reserved_share"),
        ({"reserved_share": -0.1}, "reserved_share"),
        ({"reserved_share": math.nan}, "reserved_share"),
        ({"max_retry_after_s": 0.0}, "max_retry_after_s"),
        ({"reserved_srvs": frozenset({" 8.1.1"})}, "reserved_srvs"),
        ({"reserved_srvs": frozenset({""})}, "reserved_srvs"),
        ({"exit_margin_ratio": 1.0}, "exit_margin_ratio"),
        ({"exit_margin_ratio": -0.01}, "exit_margin_ratio"),
        ({"exit_margin_ratio": math.nan}, "exit_margin_ratio"),
        ({"exit_hold_s": -1.0}, "exit_hold_s"),
        ({"exit_hold_s": math.inf}, "exit_hold_s"),
        ({"exit_hold_s": math.nan}, "exit_hold_s"),
    ],
)
def test_bad_policy_names_the_field(
    make_policy: PolicyFactory, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"TrafficPolicy.{field}"):
        make_policy(**overrides)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rate_per_s": -1.0, "burst": 1}, "rate_per_s"),
        ({"rate_per_s": math.inf, "burst": 1}, "rate_per_s"),
        ({"rate_per_s": 1.0, "burst": 0}, "burst"),
    ],
)
def test_bad_allocation_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"Allocation.{field}"):
        Allocation(**fields)


def test_threshold_equal_to_capacity_and_zero_are_valid(make_policy: PolicyFactory) -> None:
    assert make_policy(operating_threshold_per_s=1000.0).operating_threshold_per_s == 1000.0
    assert make_policy(operating_threshold_per_s=0.0).operating_threshold_per_s == 0.0


def test_policy_decodes_from_json_and_validates() -> None:
    doc = (
        b'{"capacity_per_s": 500, "operating_threshold_per_s": 400,'
        b' "default_allocation": {"rate_per_s": 5, "burst": 2},'
        b' "reserved_srvs": ["8.1.1", "2.2"], "reserved_share": 0.05}'
    )
    policy = msgspec.json.decode(doc, type=TrafficPolicy)
    assert policy.reserved_srvs == frozenset({"8.1.1", "2.2"})
    assert policy.default_allocation == Allocation(rate_per_s=5, burst=2)
    bad = doc.replace(b'"operating_threshold_per_s": 400', b'"operating_threshold_per_s": 600')
    with pytest.raises(msgspec.ValidationError, match="operating_threshold_per_s"):
        msgspec.json.decode(bad, type=TrafficPolicy)


# -- plan_limits: the rules, worked examples -------------------------------------------------


def test_plan_shares_spare_in_proportion_to_allocation(make_policy: PolicyFactory) -> None:
    allocations = {
        "a": Allocation(rate_per_s=100, burst=1),
        "b": Allocation(rate_per_s=300, burst=1),
    }
    plan = plan_limits(
        make_policy(),
        allocations,
        view(850.0, {"a": 50.0, "b": 500.0, "c": 300.0, "d": 0.0}),
    )
    # under: a (50 <= 100), d (0 <= 10); over: b (A 300), c (default A 10).
    assert plan.active
    assert plan.under_rate_per_s == 50.0
    assert plan.over_allocation_per_s == 310.0
    assert plan.spare_per_s == 800.0 - 50.0 - 310.0
    assert plan.factor == pytest.approx(1.0 + 440.0 / 310.0)
    assert plan.limits_per_s == pytest.approx({"b": 300.0 * plan.factor, "c": 10.0 * plan.factor})
    assert 50.0 + sum(plan.limits_per_s.values()) == pytest.approx(800.0)  # work-conserving
    assert not plan.capped


def test_plan_without_spare_limits_to_the_allocation(make_policy: PolicyFactory) -> None:
    allocations = {
        "a": Allocation(rate_per_s=600, burst=1),
        "b": Allocation(rate_per_s=300, burst=1),
    }
    plan = plan_limits(make_policy(), allocations, view(1000.0, {"a": 500.0, "b": 500.0}))
    assert plan.spare_per_s == 0.0
    assert plan.limits_per_s == {"b": 300.0}


def test_plan_is_capped_by_capacity_less_the_reserved_share(make_policy: PolicyFactory) -> None:
    allocations = {
        "a": Allocation(rate_per_s=600, burst=1),
        "b": Allocation(rate_per_s=500, burst=1),
    }
    policy = make_policy(reserved_share=0.1, reserved_srvs=frozenset({"8.1.1"}))
    plan = plan_limits(policy, allocations, view(1200.0, {"a": 600.0, "b": 900.0}))
    # U = 600, S = 500, spare 0, k would be 1; budget C * (1 - s) - U = 300.
    assert plan.capped
    assert plan.factor == pytest.approx(0.6)
    assert plan.limits_per_s == pytest.approx({"b": 300.0})
    assert not plan.oversubscribed


def test_plan_oversubscribed_stops_over_users_only(make_policy: PolicyFactory) -> None:
    allocations = {"a": Allocation(rate_per_s=1200, burst=1)}
    plan = plan_limits(make_policy(), allocations, view(1300.0, {"a": 1100.0, "b": 200.0}))
    assert plan.oversubscribed
    assert plan.capped
    assert plan.limits_per_s == {"b": 0.0}


def test_plan_inactive_below_threshold(make_policy: PolicyFactory) -> None:
    plan = plan_limits(make_policy(), {}, view(799.9, {"a": 700.0}))
    assert not plan.active
    assert plan.limits_per_s == {}
    assert plan.factor == math.inf
    assert plan.over_allocation_per_s == 10.0  # the sums are still there for dashboards


def test_plan_active_exactly_at_threshold(make_policy: PolicyFactory) -> None:
    assert plan_limits(make_policy(), {}, view(800.0, {"a": 700.0})).active


def test_plan_zero_allocations_over_get_zero(make_policy: PolicyFactory) -> None:
    policy = make_policy(default_allocation=Allocation(rate_per_s=0.0, burst=1))
    plan = plan_limits(policy, {}, view(900.0, {"a": 5.0}))
    assert plan.limits_per_s == {"a": 0.0}


# -- TrafficManager ------------------------------------------------------------------------


def test_inactive_before_the_first_view(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    assert not manager.active
    assert all(hammer(manager, USER, 1000))
    assert manager.decide(USER, "4.1.1", NOW) is ADMITTED
    assert not manager.plan.active


def test_over_user_is_throttled_with_numbers_and_reason(make_manager: ManagerFactory) -> None:
    manager = make_manager({USER: Allocation(rate_per_s=100.0, burst=3)})
    plan = manager.update_view(view(900.0, {USER: 400.0, OTHER: 690.0}))
    # U = 0; S = 100 + 10; spare = 800 - 110 = 690; k = 1 + 690 / 110.
    limit = 100.0 * (1.0 + 690.0 / 110.0)
    assert plan.limits_per_s[USER] == pytest.approx(limit)
    assert hammer(manager, USER, 4) == [True, True, True, False]
    decision = manager.decide(USER, "4.1.1", NOW)
    assert not decision.allowed
    assert decision.would_throttle
    assert decision.rule == f"traffic.allocation.{USER}"
    assert decision.retry_after_ms == math.ceil(1000.0 / limit)
    assert decision.allocation_per_s == 100.0
    assert decision.user_rate_per_s == 400.0
    assert decision.limit_per_s == pytest.approx(limit)
    assert decision.system_rate_per_s == 900.0
    assert (decision.threshold_per_s, decision.capacity_per_s) == (800.0, 1000.0)
    text = reason(decision)
    assert text.startswith("throttled by traffic management (SECMP0067): ")
    for part in (
        f"User {USER} is sending 400.0 requests/s",
        "allocation of 100.0/s",
        "system load of 900.0 requests/s",
        "operating threshold of 800.0/s",
        "capacity 1000.0/s",
        f"limited to {limit:.1f} requests/s (burst 3)",
        f"retry after {decision.retry_after_ms} ms",
    ):
        assert part in text
    # A retry after retry_after_ms is allowed (NOW + 1.0 / limit may round to just before).
    assert manager.decide(USER, "4.1.1", NOW + decision.retry_after_ms / 1000.0).allowed


def test_capacity_rule_and_reason(make_manager: ManagerFactory) -> None:
    allocations = {
        OTHER: Allocation(rate_per_s=900.0, burst=1),
        USER: Allocation(rate_per_s=200.0, burst=1),
    }
    manager = make_manager(allocations)
    manager.update_view(view(1300.0, {OTHER: 900.0, USER: 400.0}))
    # U = 900, S = 200, spare 0: the over User would get 200, but C leaves only 100.
    assert manager.plan.capped
    assert hammer(manager, USER, 2) == [True, False]
    decision = manager.decide(USER, "4.1.1", NOW)
    assert decision.rule == RULE_CAPACITY
    assert decision.limit_per_s == pytest.approx(100.0)
    assert "cut to 100.0 requests/s (burst 1) to keep the system within its capacity" in (
        reason(decision)
    )


def test_user_within_allocation_passes_while_active(make_manager: ManagerFactory) -> None:
    manager = make_manager({USER: Allocation(rate_per_s=100.0, burst=1)})
    manager.update_view(view(900.0, {USER: 100.0, OTHER: 800.0}))
    assert manager.active
    assert all(hammer(manager, USER, 10_000))
    assert manager.decide(USER, "4.1.1", NOW) is ADMITTED


def test_shadow_policy_admits_and_reports(make_manager: ManagerFactory) -> None:
    manager = make_manager(shadow=True)
    manager.update_view(view(900.0, {USER: 50.0}))
    decisions = [manager.decide(USER, "4.1.1", NOW) for _ in range(10)]
    assert all(d.allowed for d in decisions)
    assert [d.would_throttle for d in decisions] == [False] * 5 + [True] * 5
    assert reason(decisions[-1]).startswith(
        "would be throttled (shadow mode, admitted) by traffic management"
    )


def test_shadow_allocation_is_per_user(make_manager: ManagerFactory) -> None:
    manager = make_manager({USER: Allocation(rate_per_s=10.0, burst=1, shadow=True)})
    manager.update_view(view(900.0, {USER: 50.0, OTHER: 50.0}))
    assert all(hammer(manager, USER, 5))
    assert hammer(manager, OTHER, 6)[-1] is False


def test_reserved_srv_passes_the_limit_within_its_share(make_manager: ManagerFactory) -> None:
    manager = make_manager(reserved_srvs=frozenset({"8.1.1"}), reserved_share=0.05)
    manager.update_view(view(900.0, {USER: 50.0}, reserved=49.0))
    assert hammer(manager, USER, 6)[-1] is False  # burst 5 spent
    assert manager.decide(USER, "8.1.1", NOW) is ADMITTED_RESERVED
    assert manager.decide(USER, "8.1.1", NOW) is ADMITTED_RESERVED  # uses no GCRA allowance
    assert not manager.decide(USER, "4.1.1", NOW).allowed
    # Q reaches s * C = 50: reserved SRVs are throttled too, and the reason says why.
    manager.update_view(view(900.0, {USER: 50.0}, reserved=50.0))
    decision = manager.decide(USER, "8.1.1", NOW)
    assert not decision.allowed
    assert decision.reserved_srv
    assert "SRV 8.1.1 is reserved, but reserved SRVs already use 50.0 of their 50.0" in (
        reason(decision)
    )


def test_no_reserved_share_means_no_bypass(make_manager: ManagerFactory) -> None:
    manager = make_manager(reserved_srvs=frozenset({"8.1.1"}))
    manager.update_view(view(900.0, {USER: 50.0}))
    assert hammer(manager, USER, 6, srv="8.1.1")[-1] is False


def test_retry_after_is_capped_by_the_policy(make_manager: ManagerFactory) -> None:
    manager = make_manager({USER: Allocation(rate_per_s=0.0, burst=1)}, max_retry_after_s=2.5)
    manager.update_view(view(900.0, {USER: 1.0}))
    decision = manager.decide(USER, "4.1.1", NOW)
    assert not decision.allowed
    assert decision.retry_after_ms == 2500


def test_throttled_requests_are_not_counted(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    manager.update_view(view(900.0, {USER: 50.0}))
    assert sum(hammer(manager, USER, 100)) == 5
    report = manager.local_report(NOW)
    assert report.user_rates == {USER: pytest.approx(5.0)}
    assert report.admitted_per_s == pytest.approx(5.0)


def test_local_report(make_manager: ManagerFactory) -> None:
    manager = make_manager(reserved_srvs=frozenset({"8.1.1"}), reserved_share=0.1)
    for _ in range(3):
        manager.record_admitted(USER, "4.1.1", NOW)
    manager.record_admitted(OTHER, "8.1.1", NOW)
    report = manager.local_report(NOW)
    assert report.peer_id == "me"
    assert report.at_s == NOW
    assert report.admitted_per_s == pytest.approx(4.0)
    assert report.reserved_per_s == pytest.approx(1.0)
    assert report.user_rates == {USER: pytest.approx(3.0), OTHER: pytest.approx(1.0)}
    # Idle Users are forgotten: after 10 s a single request is far under 0.01/s.
    assert manager.local_report(NOW + 10.0).user_rates == {}


def test_users_are_classified_on_the_local_meter(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    for _ in range(50):
        manager.record_admitted(USER, "4.1.1", NOW)
    # The view has not heard of USER yet; this router's meter says 50/s > 10/s.
    plan = manager.update_view(view(900.0, {}))
    assert USER in plan.limits_per_s
    # and its own 50/s were added to R: 900 + 50.
    assert plan.system_rate_per_s == pytest.approx(950.0)


def test_own_part_of_the_view_is_replaced_by_the_meter(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    stale = SystemView(
        at_s=NOW,
        admitted_per_s=900.0,
        user_rates={USER: 850.0},
        peer_admitted_per_s={"me": 850.0, "peer": 50.0},
    )
    # This router's Users went quiet since it reported 850/s: R is 50 now, not 900.
    assert not manager.update_view(stale).active


def test_set_allocations_and_policy_swap_and_replan(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    manager.update_view(view(900.0, {USER: 50.0}))
    assert USER in manager.plan.limits_per_s
    manager.set_allocations({USER: Allocation(rate_per_s=60.0, burst=1)})
    assert manager.allocation(USER).rate_per_s == 60.0
    assert manager.plan.limits_per_s == {}
    assert all(hammer(manager, USER, 100))
    raised = manager.policy.__replace__(
        capacity_per_s=2000.0, operating_threshold_per_s=1100.0, exit_hold_s=0.0
    )
    manager.set_policy(raised)
    # R = 900 in the view + the 100/s this router has recorded since: under 1100 x 0.95,
    # and with no hold time it switches off at once.
    assert manager.plan.system_rate_per_s == pytest.approx(1000.0)
    assert not manager.active
    manager.set_allocations({})
    manager.set_policy(manager.policy.__replace__(operating_threshold_per_s=500.0, shadow=True))
    assert manager.active
    assert all(hammer(manager, USER, 100))


def test_active_time_accounting(make_manager: ManagerFactory) -> None:
    manager = make_manager(exit_hold_s=0.0)
    assert manager.active_seconds_total(NOW) == 0.0

    def at(at_s: float, admitted: float) -> SystemView:
        return SystemView(at_s=at_s, admitted_per_s=admitted)

    manager.update_view(at(NOW, 900.0))
    manager.update_view(at(NOW + 2.0, 850.0))
    assert manager.active_seconds_total(NOW + 3.0) == pytest.approx(3.0)
    manager.update_view(at(NOW + 4.0, 100.0))
    assert manager.active_seconds_total(NOW + 10.0) == pytest.approx(4.0)
    manager.update_view(at(NOW + 3.0, 900.0))  # out of order: taken as at NOW + 4
    manager.update_view(at(NOW + 6.0, 100.0))
    assert manager.active_seconds_total(NOW + 10.0) == pytest.approx(6.0)
    assert manager.activations_total == 2
    assert manager.take_episode_durations() == pytest.approx([4.0, 2.0])
    assert manager.take_episode_durations() == []


# -- rule 1's hysteresis ---------------------------------------------------------------------


def _at(at_s: float, admitted: float) -> SystemView:
    return SystemView(at_s=NOW + at_s, admitted_per_s=admitted)


def test_hysteresis_enters_at_threshold_and_leaves_below_margin_after_hold(
    make_manager: ManagerFactory,
) -> None:
    manager = make_manager(exit_margin_ratio=0.05, exit_hold_s=1.0)  # T 800: out under 760
    assert not manager.update_view(_at(0.0, 799.9)).active
    assert manager.episode_age_s(NOW) == 0.0
    assert manager.update_view(_at(0.1, 800.0)).active  # SECMP0067: on at T
    assert manager.update_view(_at(0.2, 761.0)).active  # under T, above T x 0.95: on
    assert manager.update_view(_at(0.3, 700.0)).active  # under the margin: the hold starts
    assert manager.update_view(_at(1.2, 700.0)).active
    assert manager.update_view(_at(1.25, 790.0)).active  # back above the margin: reset
    assert manager.update_view(_at(1.3, 500.0)).active
    assert manager.update_view(_at(2.25, 500.0)).active
    assert manager.episode_age_s(NOW + 2.25) == pytest.approx(2.15)
    plan = manager.update_view(_at(2.3, 500.0))  # 1 s under the margin: off
    assert not plan.active
    assert plan.limits_per_s == {}
    assert manager.episode_age_s(NOW + 2.3) == 0.0
    assert manager.activations_total == 1
    assert manager.take_episode_durations() == pytest.approx([2.2])
    # Off, it stays off until R reaches T again, not T x (1 - m).
    assert not manager.update_view(_at(2.4, 790.0)).active
    assert manager.update_view(_at(2.5, 800.0)).active
    assert manager.activations_total == 2


def test_hysteresis_limits_still_apply_while_holding(make_manager: ManagerFactory) -> None:
    manager = make_manager({USER: Allocation(rate_per_s=100.0, burst=1)})
    manager.update_view(view(900.0, {USER: 400.0}))
    # The over User's limit stays in force under T: its release would take R back above.
    plan = manager.update_view(view(700.0, {USER: 400.0}))
    assert plan.active
    assert plan.limits_per_s == pytest.approx({USER: 800.0})
    assert hammer(manager, USER, 2) == [True, False]


def test_strict_rule_one_with_no_margin_and_no_hold(make_manager: ManagerFactory) -> None:
    manager = make_manager(exit_margin_ratio=0.0, exit_hold_s=0.0)
    assert manager.update_view(_at(0.0, 800.0)).active
    assert not manager.update_view(_at(0.1, 799.99)).active
    assert manager.take_episode_durations() == pytest.approx([0.1])


def test_episode_durations_kept_are_bounded(make_manager: ManagerFactory) -> None:
    manager = make_manager(exit_hold_s=0.0)
    for i in range(1100):
        manager.update_view(_at(2.0 * i, 900.0))
        manager.update_view(_at(2.0 * i + 1.0, 0.0))
    taken = manager.take_episode_durations()
    assert len(taken) == 1024
    assert taken == pytest.approx([1.0] * 1024)


def test_user_rate(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    manager.record_admitted(USER, "4.1.1", NOW)
    assert manager.user_rate(USER, NOW) == pytest.approx(1.0)
    assert manager.user_rate(OTHER, NOW) == 0.0


def test_reason_of_an_admitted_request() -> None:
    assert reason(ADMITTED) == "not throttled by traffic management"


# -- reports -------------------------------------------------------------------------------


def _report(peer: str, at_s: float, users: dict[str, float], reserved: float = 0.0) -> LoadReport:
    return LoadReport(
        peer_id=peer,
        at_s=at_s,
        admitted_per_s=sum(users.values()),
        reserved_per_s=reserved,
        user_rates=users,
    )


def test_merge_reports_sums_fresh_peers_and_drops_stale() -> None:
    reports = {
        "r1": _report("r1", NOW - 0.2, {USER: 100.0, OTHER: 5.0}, reserved=2.0),
        "r2": _report("r2", NOW - 0.7, {USER: 20.0}, reserved=1.0),  # rebalance: USER twice
        "r3": _report("r3", NOW - 0.76, {"gone": 999.0}),
        "r4": _report("r4", NOW + 0.1, {"skewed": 1.0}),  # a clock ahead of ours is used
    }
    merged = merge_reports(reports, NOW, 0.75)
    assert merged.at_s == NOW
    assert merged.admitted_per_s == pytest.approx(126.0)
    assert merged.reserved_per_s == pytest.approx(3.0)
    assert merged.user_rates == {USER: 120.0, OTHER: 5.0, "skewed": 1.0}
    assert merged.peer_admitted_per_s == {"r1": 105.0, "r2": 20.0, "r4": 1.0}
    assert (merged.peers, merged.stale_peers) == (3, 1)


def test_merge_reports_empty_duplicate_and_bad_age() -> None:
    assert merge_reports({}, NOW, 1.0).admitted_per_s == 0.0
    twice = {"a": _report("r1", NOW - 0.5, {USER: 1.0}), "b": _report("r1", NOW, {USER: 2.0})}
    merged = merge_reports(twice, NOW, 1.0)
    assert (merged.admitted_per_s, merged.user_rates, merged.peers) == (2.0, {USER: 2.0}, 1)
    with pytest.raises(ValueError, match="max_age_s"):
        merge_reports({}, NOW, 0.0)


def test_load_report_json_round_trip_and_validation() -> None:
    report = _report("r1", NOW, {USER: 3.5, OTHER: 1.25}, reserved=0.5)
    data = msgspec.json.encode(report)
    assert msgspec.json.decode(data, type=LoadReport) == report
    assert data.startswith(b'{"peer_id":"r1","at_s":')
    with pytest.raises(msgspec.ValidationError, match="user_rates"):
        msgspec.json.decode(data.replace(b"1.25", b"-1.25"), type=LoadReport)
    with pytest.raises(msgspec.ValidationError, match="admitted_per_s"):
        msgspec.json.decode(data.replace(b"4.75", b"-4.75"), type=LoadReport)
    minimal = msgspec.json.decode(b'{"peer_id":"r","at_s":1,"admitted_per_s":0}', type=LoadReport)
    assert minimal.user_rates == {}


# -- properties ----------------------------------------------------------------------------

users = st.sampled_from([f"u{i}" for i in range(6)])
allocation_tables = st.dictionaries(
    users,
    st.builds(
        Allocation,
        rate_per_s=st.floats(0.0, 500.0, allow_subnormal=False),
        burst=st.integers(1, 20),
        shadow=st.booleans(),
    ),
    max_size=6,
)
user_rate_tables = st.dictionaries(users, st.floats(0.0, 2000.0), max_size=6)


@st.composite
def policies(draw: st.DrawFn) -> TrafficPolicy:
    capacity = draw(st.floats(1.0, 5000.0))
    return TrafficPolicy(
        capacity_per_s=capacity,
        operating_threshold_per_s=draw(st.floats(0.0, 1.0)) * capacity,
        default_allocation=Allocation(
            rate_per_s=draw(st.floats(0.0, 200.0, allow_subnormal=False)),
            burst=draw(st.integers(1, 10)),
        ),
        reserved_srvs=frozenset({"8.1.1"}),
        reserved_share=draw(st.floats(0.0, 0.5)),
        shadow=draw(st.booleans()),
    )


requests = st.lists(
    st.tuples(users, st.sampled_from(["4.1.1", "8.1.1"]), st.floats(0.0, 0.05)),
    max_size=200,
)


def _run(manager: TrafficManager, request_list: list[tuple[str, str, float]]) -> list[Any]:
    decisions = []
    now = NOW
    for user, srv, gap in request_list:
        now += gap
        decisions.append(manager.decide(user, srv, now))
    return decisions


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    allocations=allocation_tables,
    rates=user_rate_tables,
    below=st.floats(0.0, 1.0, exclude_max=True),
    request_list=requests,
)
def test_nobody_is_throttled_while_below_threshold(
    policy: TrafficPolicy,
    allocations: dict[str, Allocation],
    rates: dict[str, float],
    below: float,
    request_list: list[tuple[str, str, float]],
) -> None:
    admitted = below * policy.operating_threshold_per_s
    assume(admitted < policy.operating_threshold_per_s)  # R < T, after rounding too
    manager = TrafficManager(policy, allocations, peer_id="me")
    plan = manager.update_view(view(admitted, rates))
    assert not plan.active
    assert all(d is ADMITTED for d in _run(manager, request_list))


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    allocations=allocation_tables,
    rates=user_rate_tables,
    user=users,
    fraction=st.floats(0.0, 1.0),
    request_list=requests,
)
def test_user_at_or_under_allocation_is_never_throttled(
    policy: TrafficPolicy,
    allocations: dict[str, Allocation],
    rates: dict[str, float],
    user: str,
    fraction: float,
    request_list: list[tuple[str, str, float]],
) -> None:
    allocated = allocations.get(user, policy.default_allocation).rate_per_s
    rates[user] = fraction * allocated
    manager = TrafficManager(policy, allocations, peer_id="me")
    manager.update_view(view(policy.capacity_per_s, rates))  # active: R = C >= T
    assert manager.active
    for decision in _run(manager, [(user, srv, gap) for _, srv, gap in request_list]):
        assert decision.allowed
        assert not decision.would_throttle


@settings(max_examples=300, deadline=None)
@given(policy=policies(), allocations=allocation_tables, rates=user_rate_tables)
def test_planned_total_stays_within_capacity(
    policy: TrafficPolicy, allocations: dict[str, Allocation], rates: dict[str, float]
) -> None:
    plan = plan_limits(policy, allocations, view(policy.capacity_per_s, rates))
    capacity = policy.capacity_per_s
    reserved = policy.reserved_share * capacity
    total = plan.under_rate_per_s + sum(plan.limits_per_s.values()) + reserved
    if plan.under_rate_per_s <= capacity - reserved:
        assert total <= capacity * (1.0 + 1e-9)
        assert not plan.oversubscribed
    else:
        assert plan.oversubscribed
        assert all(limit == 0.0 for limit in plan.limits_per_s.values())


@settings(max_examples=300, deadline=None)
@given(policy=policies(), allocations=allocation_tables, rates=user_rate_tables)
def test_over_allocation_limits_are_proportional_to_allocations(
    policy: TrafficPolicy, allocations: dict[str, Allocation], rates: dict[str, float]
) -> None:
    plan = plan_limits(policy, allocations, view(policy.capacity_per_s, rates))
    default = policy.default_allocation
    over = [
        (limit, allocations.get(user, default).rate_per_s)
        for user, limit in plan.limits_per_s.items()
    ]
    for user in plan.limits_per_s:
        assert rates[user] > allocations.get(user, default).rate_per_s
    for limit, allocated in over:
        if not plan.capped:
            assert limit >= allocated * (1.0 - 1e-12)  # L_u = max(A_u, A_u + share)
        # L_u / A_u is the same for every over User (cross-multiplied: no overflow).
        for other_limit, other_allocated in over:
            assert limit * other_allocated == pytest.approx(
                other_limit * allocated, rel=1e-9, abs=1e-300
            )
    if plan.spare_per_s > 0.0 and plan.over_allocation_per_s > 0.0 and not plan.capped:
        total = plan.under_rate_per_s + sum(plan.limits_per_s.values())
        assert total == pytest.approx(policy.operating_threshold_per_s)  # work-conserving


@settings(max_examples=100, deadline=None)
@given(
    policy=policies(),
    allocations=allocation_tables,
    rates=user_rate_tables,
    window_s=st.floats(0.01, 5.0),
)
@example(
    # Regression (issue #12): float TATs rounded to 2.4e-7 s at NOW at every admitted request;
    # this User, limited to its 1311/s, had 238 requests admitted in 0.18 s, bound 237.98.
    policy=TrafficPolicy(
        capacity_per_s=5000.0,
        operating_threshold_per_s=0.0,
        default_allocation=Allocation(rate_per_s=1311.0, burst=2),
    ),
    allocations={},
    rates={USER: 4500.0},
    window_s=0.18,
)
def test_over_users_admitted_at_most_limit_times_window_plus_burst(
    policy: TrafficPolicy,
    allocations: dict[str, Allocation],
    rates: dict[str, float],
    window_s: float,
) -> None:
    # With the planned total <= C (above), this bounds what is admitted above T to C * W
    # plus the bursts.
    policy = policy.__replace__(shadow=False, reserved_share=0.0)
    allocations = {user: a.__replace__(shadow=False) for user, a in allocations.items()}
    manager = TrafficManager(policy, allocations, peer_id="me")
    plan = manager.update_view(view(policy.capacity_per_s, rates))
    for user, limit in plan.limits_per_s.items():
        burst = manager.allocation(user).burst
        step_s = window_s / 400.0
        times = [NOW + i * step_s for i in range(401)]
        admitted = sum(manager.decide(user, "4.1.1", now).allowed for now in times)
        # Over the times given: NOW + i * step_s rounds to 2.4e-7 s, so the last of them may
        # be up to 1.2e-7 s past NOW + window_s, and the GCRA is exact in the times it gets.
        assert admitted <= limit * (times[-1] - NOW) + burst + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    allocations=allocation_tables,
    rates=user_rate_tables,
    request_list=requests,
)
def test_shadow_mode_never_changes_allowed(
    policy: TrafficPolicy,
    allocations: dict[str, Allocation],
    rates: dict[str, float],
    request_list: list[tuple[str, str, float]],
) -> None:
    enforce = TrafficManager(policy.__replace__(shadow=False), allocations, peer_id="me")
    shadow = TrafficManager(policy.__replace__(shadow=True), allocations, peer_id="me")
    the_view = view(policy.capacity_per_s, rates)
    enforce.update_view(the_view)
    shadow.update_view(the_view)
    for real, simulated in zip(
        _run(enforce, request_list), _run(shadow, request_list), strict=True
    ):
        assert simulated.allowed
        assert simulated.would_throttle == real.would_throttle
        if real.would_throttle and allocations.get(real.user_id) is not None:
            assert real.allowed == allocations[real.user_id].shadow


# -- the overshoot of the global view, simulated ---------------------------------------------


def _simulate(
    routers: int, report_s: float, update_s: float, duration_s: float
) -> tuple[float, float, float]:
    """P routers, one User each at 5/s, stepping to 200/s at t0; allocation 10/s burst 5,
    T 100/s, C 400/s, meter tau 1 s; reports delivered at once (d = 0).

    Returns (t0, when every router is active, admitted between t0 and then) and checks
    the long-run admitted total against C.
    """
    policy = TrafficPolicy(
        capacity_per_s=400.0,
        operating_threshold_per_s=100.0,
        default_allocation=Allocation(rate_per_s=10.0, burst=5),
    )
    managers = [TrafficManager(policy, peer_id=f"r{p}") for p in range(routers)]
    latest: dict[str, LoadReport] = {}
    owed = [0.0] * routers
    tick_s = 0.001
    start = NOW
    t0 = start + 3.0
    next_report = next_update = start
    all_active_at = math.inf
    admitted_at: list[float] = []
    for k in range(round((3.0 + duration_s) / tick_s)):
        now = start + k * tick_s
        if now >= next_report - 1e-9:
            for manager in managers:
                report = manager.local_report(now)
                latest[report.peer_id] = report
            next_report += report_s
        if now >= next_update - 1e-9:
            merged = merge_reports(latest, now, 3 * report_s)
            for manager in managers:
                manager.update_view(merged)
            next_update += update_s
            if now >= t0 and all_active_at == math.inf and all(m.active for m in managers):
                all_active_at = now
        rate = 5.0 if now < t0 else 200.0
        for p, manager in enumerate(managers):
            owed[p] += rate * tick_s
            while owed[p] >= 1.0:
                owed[p] -= 1.0
                if manager.decide(f"u{p}", "4.1.1", now).allowed:
                    manager.record_admitted(f"u{p}", "4.1.1", now)
                    admitted_at.append(now)
    end = start + 3.0 + duration_s
    long_run = sum(1 for t in admitted_at if t >= t0 + 2.0) / (end - t0 - 2.0)
    assert long_run <= 400.0  # C
    detected = sum(1 for t in admitted_at if t0 <= t <= all_active_at)
    return t0, all_active_at, detected


@pytest.mark.parametrize("routers", [2, 4, 8])
@pytest.mark.parametrize("report_s", [0.25, 1.0])
def test_overshoot_is_within_the_documented_bound(routers: int, report_s: float) -> None:
    update_s = 0.05
    t0, all_active_at, admitted = _simulate(routers, report_s, update_s, duration_s=12.0)
    assert all_active_at <= t0 + report_s + update_s + 1.0  # D + the meter's lag
    excess = admitted - 100.0 * (all_active_at - t0)
    rise = routers * (200.0 - 5.0)
    bound = rise * (report_s + update_s + 1.0 / math.e) + routers * 5  # E, with d = 0
    assert excess <= bound
