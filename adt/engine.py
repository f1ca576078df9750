"""`AdtEngine`: the router's ADT decision per request, and the count windows behind it.

What is counted (SEC G6 (a) and (b)(i)): every request the hub processes, per
(User, SRV), per (User, all SRVs) and per SRV across all Users, in each window length a
threshold names. "Processed" means admitted by `check` and then passed on
(`record_processed`), or released from quarantine (`record_released`, at release time). A
quarantined request is not counted: it was not processed, so only the requests in excess
of a threshold are quarantined and the ones under it pass (SEC G6 (c), "those
communications that ... are in excess"). A request passed by a shadow rule was processed,
so it counts.

Only configured windows count: a threshold starts counting when it is set, keeps its counts
across later changes of the values that keep its (srv, window_s), and loses them when it
is removed. Counts are partition-local (the router owning a User's partition owns its
counts); DCC-wide counts add the peers' reports (adt.reports, with its overshoot bound).

Pure: no I/O and no clock; every call takes `now_s` (epoch seconds, a float). Not
thread-safe: one engine per router event loop. Values are swapped whole: a failed
`set_*_values` leaves the previous values in force.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from adt.config import ALL_SRVS, AdtValues
from adt.decision import PASS, AdtDecision, Breach, BreachKind
from adt.errors import SnapshotError
from adt.reports import AdtCountReport, SrvWindowCount
from adt.snapshot import UserCountersSnapshot, WindowSnapshot
from adt.table import AdtTable, CountRule, counter_key
from adt.values import ValueCheck
from adt.windows import DEFAULT_BUCKETS, SlidingWindow

__all__ = ["AdtEngine", "BodyGetter", "ThresholdUsage"]

BodyGetter = Callable[[], Mapping[str, Any]]
"""Returns the decoded request body; called only when a value rule applies to the SRV.

Raises ValueError (`msgspec.DecodeError` is one; so are `UnicodeDecodeError` and
`json.JSONDecodeError`) when the body cannot be decoded: every value rule of the SRV is
then breached as `unreadable` (`ServiceRequest.body_values` raises nothing else). Any other
exception is a bug in the getter and propagates."""

# Per owner, plans are cached per SRV; requests reach ADT after DUIS validation, so the SRVs
# are the catalogue's 129, but a bound keeps a stray caller from growing the cache.
_PLAN_CACHE_MAX = 512


class ThresholdUsage(msgspec.Struct, frozen=True, kw_only=True):
    """How close one count threshold is to biting, for metrics and the admin API.

    count: requests counted in the window now (DCC-wide: local plus peers). max: the limit
    in force (raised by exception_id, if any). ratio: count / max (inf when max is 0 and
    count > 0).
    """

    rule: str
    kind: BreachKind
    srv: str
    window_s: int
    count: int
    max: int
    ratio: float
    shadow: bool
    exception_id: str | None = None


class _Lane:
    """A count rule with the window it reads; `peer` is the peers' count (DCC-wide only)."""

    __slots__ = ("max", "peer", "rule", "window")

    def __init__(self, rule: CountRule, window: SlidingWindow, peer: int = 0) -> None:
        self.rule = rule
        self.max = rule.max  # read per request: one attribute lookup fewer
        self.window = window
        self.peer = peer


class _Plan:
    """Everything `check` needs for one (owner, SRV): value checks, then count lanes in
    decision order (User per SRV, User all SRVs, DCC-wide)."""

    __slots__ = ("lanes", "value_checks")

    def __init__(self, value_checks: tuple[ValueCheck, ...], lanes: tuple[_Lane, ...]) -> None:
        self.value_checks = value_checks
        self.lanes = lanes


_EMPTY_PLAN = _Plan((), ())


class _UserState:
    __slots__ = ("lanes", "plans", "table")

    def __init__(self, table: AdtTable, lanes: dict[str, _Lane]) -> None:
        self.table = table
        self.lanes = lanes  # counter key -> lane
        self.plans: dict[str, _Plan] = {}


def _usage(lane: _Lane, now_s: float, count: int) -> ThresholdUsage:
    rule = lane.rule
    limit, by = rule.limit_at(now_s)
    ratio = count / limit if limit else (math.inf if count else 0.0)
    return ThresholdUsage(
        rule=rule.id,
        kind=rule.kind,
        srv=rule.srv,
        window_s=rule.window_s,
        count=count,
        max=limit,
        ratio=ratio,
        shadow=rule.shadow,
        exception_id=by,
    )


class AdtEngine:
    """ADT decisions for one router: User and DCC-wide tables, and their count windows.

    buckets_per_window: buckets per window, default 60 (granularity window_s / 60; see
    adt.windows). dcc_values: the DCC-wide values to start with, default none.
    """

    __slots__ = ("_buckets", "_dcc", "_dcc_lanes", "_dcc_plans", "_peer", "_users")

    def __init__(
        self, *, buckets_per_window: int = DEFAULT_BUCKETS, dcc_values: AdtValues | None = None
    ) -> None:
        if buckets_per_window < 1:
            raise ValueError(f"buckets_per_window must be >= 1, got {buckets_per_window}")
        self._buckets = buckets_per_window
        self._users: dict[str, _UserState] = {}
        self._peer: dict[tuple[str, int], int] = {}
        self._dcc = AdtTable.for_dcc(AdtValues())
        self._dcc_lanes: dict[str, _Lane] = {}
        # Plans for Users without values of their own: only DCC-wide rules apply.
        self._dcc_plans: dict[str, _Plan] = {}
        if dcc_values is not None:
            self.set_dcc_values(dcc_values)

    # --- values ---------------------------------------------------------------------------

    @property
    def buckets_per_window(self) -> int:
        """Buckets per window."""
        return self._buckets

    @property
    def dcc_table(self) -> AdtTable:
        """The DCC-wide values in force, compiled."""
        return self._dcc

    def user_table(self, user_id: str) -> AdtTable | None:
        """The User's own values in force, compiled, or None when it has none."""
        state = self._users.get(user_id)
        return None if state is None else state.table

    def users(self) -> list[str]:
        """The User IDs that have values of their own."""
        return list(self._users)

    def set_user_values(self, user_id: str, values: AdtValues | None) -> None:
        """Put a User's own ADT values in force (None removes them and their counts).

        Raise AdtConfigError, changing nothing, when they do not hold. Counts of the
        thresholds whose (srv, window_s) stays are kept; new thresholds start at zero.
        """
        if values is None:
            self._users.pop(user_id, None)
            return
        table = AdtTable.for_user(user_id, values)
        old = self._users.get(user_id)
        self._users[user_id] = _UserState(table, self._lanes_for(table, old.lanes if old else {}))

    def set_dcc_values(self, values: AdtValues) -> None:
        """Put the DCC-wide ADT values in force; raise AdtConfigError, changing nothing."""
        table = AdtTable.for_dcc(values)
        lanes = self._lanes_for(table, self._dcc_lanes)
        for lane in lanes.values():
            lane.peer = self._peer.get((lane.rule.srv, lane.rule.window_s), 0)
        self._dcc = table
        self._dcc_lanes = lanes
        self._dcc_plans = {}
        for state in self._users.values():
            state.plans = {}

    def _lanes_for(self, table: AdtTable, old: dict[str, _Lane]) -> dict[str, _Lane]:
        lanes: dict[str, _Lane] = {}
        for rule in table.count_rules:
            kept = old.get(rule.key)
            window = kept.window if kept else SlidingWindow(rule.window_s, self._buckets)
            lanes[rule.key] = _Lane(rule, window)
        return lanes

    def _plan(self, user_id: str, srv: str) -> _Plan:
        state = self._users.get(user_id)
        plans = self._dcc_plans if state is None else state.plans
        plan = plans.get(srv)
        if plan is not None:
            return plan
        dcc = self._dcc
        checks = dcc.values_by_srv.get(srv, ())
        lanes: list[_Lane] = []
        if state is not None:
            user = state.table
            checks += user.values_by_srv.get(srv, ())
            rules = user.counts_by_srv.get(srv, ())
            if srv != ALL_SRVS:
                rules += user.counts_by_srv.get(ALL_SRVS, ())
            lanes.extend(state.lanes[rule.key] for rule in rules)
        lanes.extend(self._dcc_lanes[rule.key] for rule in dcc.counts_by_srv.get(srv, ()))
        plan = _Plan(checks, tuple(lanes)) if checks or lanes else _EMPTY_PLAN
        if len(plans) < _PLAN_CACHE_MAX:
            plans[srv] = plan
        return plan

    # --- decisions ------------------------------------------------------------------------

    def check(self, user_id: str, srv: str, body_getter: BodyGetter, now_s: float) -> AdtDecision:
        """Decide one request: pass, or quarantine with the breach. Counts nothing.

        body_getter: returns the decoded body; called at most once, and only when a value
        rule applies to `srv` (decoding is the expensive part). When it raises ValueError
        (the body cannot be decoded: see `BodyGetter`), every value rule is breached, with
        the error in the reason. Data values are checked first (Q3), then the User's counts
        (Q1), then the DCC-wide counts (Q2); the first enforcing breach decides. A count
        breaches when this request would be number max + 1 or more in the window. Call
        `record_processed` once the request is passed on.
        """
        plan = self._plan(user_id, srv)
        if plan is _EMPTY_PLAN:
            return PASS
        breach: Breach | None = None
        shadow: list[Breach] | None = None
        if plan.value_checks:
            body: Mapping[str, Any] | None
            why = ""
            try:
                body = body_getter()
            except ValueError as exc:
                # SEC G6 (b)(ii): a value that cannot be read cannot be shown to be in range.
                body, why = None, str(exc) or type(exc).__name__
            for check in plan.value_checks:
                found = check.evaluate(body, now_s) if body is not None else check.unreadable(why)
                if found is None:
                    continue
                if found.shadow:
                    shadow = [found] if shadow is None else [*shadow, found]
                elif breach is None:
                    breach = found
        for lane in plan.lanes:
            count = lane.window.count(now_s) + lane.peer
            if count < lane.max:  # exceptions only raise a max, so this is the fast "under"
                continue
            rule = lane.rule
            if not rule.shadow and breach is not None:
                continue  # only the first enforcing breach is reported: skip building this one
            limit, by = rule.limit_at(now_s)
            if count < limit:
                continue
            found = rule.breach(count + 1, limit, by)
            if found.shadow:
                shadow = [found] if shadow is None else [*shadow, found]
            else:
                breach = found
        if breach is None:
            return PASS if shadow is None else AdtDecision(shadow_breaches=tuple(shadow))
        return AdtDecision(
            outcome="quarantine",
            breach=breach,
            shadow_breaches=() if shadow is None else tuple(shadow),
        )

    def record_processed(self, user_id: str, srv: str, now_s: float) -> None:
        """Count one request of `srv` from `user_id`, processed at `now_s`, in every window."""
        for lane in self._plan(user_id, srv).lanes:
            lane.window.add(now_s)

    def record_released(self, user_id: str, srv: str, now_s: float) -> None:
        """Count a request released from quarantine, at `now_s`, the time of release.

        The released request is processed whatever the counts say (the User or an operator
        decided so), so it may take a count past its max; the next requests are then
        quarantined until the window has room again.
        """
        self.record_processed(user_id, srv, now_s)

    # --- DCC-wide counts across routers ---------------------------------------------------

    def count_report(self, router_id: str, now_s: float) -> AdtCountReport:
        """This router's local counts of every DCC-wide threshold, to publish to peers."""
        return AdtCountReport(
            router_id=router_id,
            at_s=now_s,
            counts=tuple(
                SrvWindowCount(
                    srv=lane.rule.srv, window_s=lane.rule.window_s, count=lane.window.count(now_s)
                )
                for lane in self._dcc_lanes.values()
            ),
        )

    def set_peer_counts(self, counts: Mapping[tuple[str, int], int]) -> None:
        """Put the peers' summed counts in force (`adt.reports.merge_reports`)."""
        self._peer = dict(counts)
        for lane in self._dcc_lanes.values():
            lane.peer = self._peer.get((lane.rule.srv, lane.rule.window_s), 0)

    # --- per-User state: snapshot, restore, forget, prune ---------------------------------

    def snapshot_user(self, user_id: str, now_s: float) -> UserCountersSnapshot | None:
        """The User's count windows at `now_s`, or None when it has no values of its own."""
        state = self._users.get(user_id)
        if state is None:
            return None
        windows = []
        for lane in state.lanes.values():
            head, buckets = lane.window.snapshot(now_s)
            if buckets:
                windows.append(
                    WindowSnapshot(
                        srv=lane.rule.srv, window_s=lane.rule.window_s, head=head, buckets=buckets
                    )
                )
        return UserCountersSnapshot(
            user_id=user_id,
            buckets_per_window=self._buckets,
            taken_at_s=now_s,
            windows=tuple(windows),
        )

    def restore_user(self, snapshot: UserCountersSnapshot) -> int:
        """Replace the User's counts with `snapshot`; return how many windows were restored.

        Call on partition assignment, after the values (from the control topic) and before
        the User's first request. Windows of thresholds the User no longer has are skipped;
        a User without values restores nothing. Raise SnapshotError, changing nothing, when
        the snapshot was taken with other buckets_per_window or is corrupt.
        """
        if snapshot.buckets_per_window != self._buckets:
            raise SnapshotError(
                f"the snapshot of User {snapshot.user_id} has {snapshot.buckets_per_window} "
                f"buckets per window, this engine {self._buckets}; start the User's counters "
                "empty, or run with the same buckets_per_window"
            )
        state = self._users.get(snapshot.user_id)
        if state is None:
            return 0
        staged: list[tuple[_Lane, WindowSnapshot]] = []
        for ws in snapshot.windows:
            lane = state.lanes.get(counter_key(ws.srv, ws.window_s))
            if lane is None:
                continue
            try:  # on a scratch window first, so a corrupt snapshot changes nothing
                SlidingWindow(ws.window_s, self._buckets).restore(ws.head, ws.buckets)
            except ValueError as exc:
                raise SnapshotError(
                    f"the snapshot of User {snapshot.user_id}, window {ws.srv}/{ws.window_s} "
                    f"s, is corrupt: {exc}; start the User's counters empty"
                ) from exc
            staged.append((lane, ws))
        for lane in state.lanes.values():
            lane.window.clear()
        for lane, ws in staged:
            lane.window.restore(ws.head, ws.buckets)
        return len(staged)

    def forget_user(self, user_id: str) -> None:
        """Drop the User's counts, keeping its values (on partition revocation)."""
        state = self._users.get(user_id)
        if state is not None:
            for lane in state.lanes.values():
                lane.window.clear()

    def prune(self, now_s: float) -> int:
        """Free the memory of every window that is empty at `now_s`; return how many.

        Call every minute or so: an idle User's windows then cost no counter array.
        """
        freed = 0
        for state in self._users.values():
            for lane in state.lanes.values():
                freed += lane.window.release_if_idle(now_s)
        for lane in self._dcc_lanes.values():
            freed += lane.window.release_if_idle(now_s)
        return freed

    # --- views ----------------------------------------------------------------------------

    def usage(self, user_id: str, now_s: float) -> tuple[ThresholdUsage, ...]:
        """Each of the User's own thresholds: count against max, at `now_s`."""
        state = self._users.get(user_id)
        if state is None:
            return ()
        return tuple(_usage(lane, now_s, lane.window.count(now_s)) for lane in state.lanes.values())

    def nearest_threshold(self, user_id: str, now_s: float) -> ThresholdUsage | None:
        """The User's threshold with the highest count / max, or None when it has none."""
        return max(self.usage(user_id, now_s), key=lambda u: u.ratio, default=None)

    def dcc_usage(self, now_s: float) -> tuple[ThresholdUsage, ...]:
        """Each DCC-wide threshold: local plus peers' count against max, at `now_s`."""
        return tuple(
            _usage(lane, now_s, lane.window.count(now_s) + lane.peer)
            for lane in self._dcc_lanes.values()
        )
