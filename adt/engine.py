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

Cost per request (SEC G6 must not slow the hub): a plan per (owner, SRV) is compiled once
per configuration, so a request reads only its own SRV's rules and "*" (at most 12 windows
and 8 value rules, `adt.config`), never the rules of other SRVs or other Users; a User's
snapshot and `prune` visit only keys that hold counts. The router calls `check_and_record`,
one pass that decides and counts; `adt.counters` describes how a request far from every
limit skips reading its windows, and how a busy key is counted with one addition.

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
from adt.counters import EMPTY_PLAN, KeyCounts, Plan, count_breaches, value_entry
from adt.decision import PASS, AdtDecision, Breach, BreachKind
from adt.errors import SnapshotError
from adt.key_records import encode_keys
from adt.reports import AdtCountReport, SrvWindowCount
from adt.snapshot import UserCountersSnapshot, WindowSnapshot
from adt.table import AdtTable, CountRule
from adt.windows import DEFAULT_BUCKETS, LOG_MAX, SlidingWindow

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
# A key's log takes requests by `append` until one short of LOG_MAX; that one goes through
# WindowSet.add_cold, which counts the log.
_LOG_LAST = LOG_MAX - 1


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


class _Owner:
    """One owner's compiled values and counts: a User's own, or the DCC-wide ones.

    keys: srv (or "*") -> its KeyCounts. A User's keys are made on first use (`key`: the
    plan of a request, or a restore) and dropped by `drop_idle` once they hold no count,
    so a User with values that sends nothing costs its compiled table only; the DCC's are
    all made up front (they are shared by every User's plans, and their peers' counts
    must apply). live: the keys that hold counts. changed: the keys counted under since
    their last snapshot (a User's; None for the DCC's, never snapshotted). plans: srv ->
    Plan (cleared when a key is dropped: a plan holds its keys).
    """

    __slots__ = ("buckets", "changed", "keys", "lazy", "live", "plans", "table")

    def __init__(self, table: AdtTable, buckets: int, old: _Owner | None, *, user: bool) -> None:
        kept: dict[tuple[str, int], SlidingWindow] = {}
        was_changed: set[str] = set()
        if old is not None:
            for srv, key in old.keys.items():
                key.flush()
                for rule, window in zip(key.rules, key.windows, strict=True):
                    if window.allocated:  # an empty window is the same as a new one
                        kept[(rule.srv, rule.window_s)] = window
                if key.dirty:
                    was_changed.add(srv)
        self.table = table
        self.buckets = buckets
        self.lazy = user
        self.live: dict[KeyCounts, None] = {}
        self.changed: dict[KeyCounts, None] | None = {} if user else None
        self.keys: dict[str, KeyCounts] = {}
        self.plans: dict[str, Plan] = {}
        for srv, rules in table.counts_by_srv.items():
            if (
                user
                and srv not in was_changed
                and not any((srv, rule.window_s) in kept for rule in rules)
            ):
                continue  # made on first use
            key = self._make(srv, rules, kept)
            if srv in was_changed:  # counts not snapshotted yet: they still are to be
                key.mark_changed()

    def key(self, srv: str) -> KeyCounts | None:
        """The key of `srv` (or "*"), made now if the owner has thresholds on it; else None."""
        key = self.keys.get(srv)
        if key is None:
            rules = self.table.counts_by_srv.get(srv)
            if rules is not None:
                key = self._make(srv, rules, {})
        return key

    def _make(
        self,
        srv: str,
        rules: tuple[CountRule, ...],
        kept: Mapping[tuple[str, int], SlidingWindow],
    ) -> KeyCounts:
        windows = []
        for rule in rules:
            same = kept.get((srv, rule.window_s))
            windows.append(SlidingWindow(rule.window_s, self.buckets) if same is None else same)
        key = self.keys[srv] = KeyCounts(
            rules, tuple(windows), tuple(r.rank for r in rules), self.live, self.changed
        )
        return key

    def drop_idle(self) -> None:
        """Drop the keys that hold no count and wait for no snapshot (a User's only), and
        with them the plans, which are compiled again on the next request."""
        if not self.lazy or len(self.keys) == len(self.live):
            return
        idle = [srv for srv, key in self.keys.items() if not key.live and not key.dirty]
        if idle:
            for srv in idle:
                del self.keys[srv]
            self.plans.clear()  # the same dict as the engine's _plans[user]: kept, emptied
            if not self.keys:
                # No key left to hold these maps (none dirty: `changed` is empty): new ones,
                # as a dict keeps the table it grew to when its entries go.
                self.keys = {}
                self.live = {}
                if self.changed is not None:
                    self.changed = {}

    def lanes(self) -> list[tuple[CountRule, KeyCounts | None, int]]:
        """(rule, its key or None when not made yet, the rule's index in the key), in the
        table's `count_rules` order (usage views)."""
        index = {
            (srv, rule.window_s): i
            for srv, rules in self.table.counts_by_srv.items()
            for i, rule in enumerate(rules)
        }
        return [
            (rule, self.keys.get(rule.srv), index[(rule.srv, rule.window_s)])
            for rule in self.table.count_rules
        ]


def _usage(rule: CountRule, now_s: float, count: int) -> ThresholdUsage:
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


def _record(keys: tuple[KeyCounts, ...], tick: int) -> None:
    """Count one request at `tick` (int(now_s * buckets)) under each of `keys`."""
    for key in keys:
        key.room -= 1  # the room left before some rule of the key must be read
        if key.lo <= tick < key.hi:
            key.pending += 1
        else:
            log = key.log
            if log is not None and len(log) < _LOG_LAST:
                try:  # WindowSet.add_cold, inlined for its usual case: one more logged
                    log.append(tick)
                except OverflowError:  # a tick beyond 64 bits: add_cold counts it at once
                    key.add_cold(tick)
            else:
                key.add_cold(tick)
        if not key.dirty:
            key.mark_changed()


def _check_values(
    plan: Plan, body_getter: BodyGetter, now_s: float
) -> tuple[Breach | None, list[Breach] | None]:
    """The plan's value checks on the body: (first enforcing breach, shadow breaches)."""
    body: Mapping[str, Any] | None
    try:
        body = body_getter()
    except ValueError as exc:
        # SEC G6 (b)(ii): a value that cannot be read cannot be shown to be in range.
        return _unreadable(plan, str(exc) or type(exc).__name__)
    if body is None:
        return _unreadable(plan, "")
    breach: Breach | None = None
    shadow: list[Breach] | None = None
    for check, field, lo, hi in plan.values:
        value = body.get(field)
        if value is None:
            continue  # absent: the rule does not apply
        kind = type(value)
        if (kind is float or kind is int) and lo <= value <= hi:
            continue  # in range: what check.evaluate would say, without the call
        found = check.evaluate(body, now_s)
        if found is None:
            continue
        if found.shadow:
            shadow = [found] if shadow is None else [*shadow, found]
        elif breach is None:
            breach = found
    return breach, shadow


def _unreadable(plan: Plan, why: str) -> tuple[Breach | None, list[Breach] | None]:
    """Every value rule of the plan breached by a body that cannot be decoded."""
    breach: Breach | None = None
    shadow: list[Breach] | None = None
    for check, _, _, _ in plan.values:
        found = check.unreadable(why)
        if found.shadow:
            shadow = [found] if shadow is None else [*shadow, found]
        elif breach is None:
            breach = found
    return breach, shadow


def _decision(breach: Breach | None, shadow: list[Breach] | None) -> AdtDecision:
    if breach is None:
        return PASS if shadow is None else AdtDecision(shadow_breaches=tuple(shadow))
    return AdtDecision(
        outcome="quarantine",
        breach=breach,
        shadow_breaches=() if shadow is None else tuple(shadow),
    )


class AdtEngine:
    """ADT decisions for one router: User and DCC-wide tables, and their count windows.

    buckets_per_window: buckets per window, default 60 (granularity window_s / 60; see
    adt.windows). dcc_values: the DCC-wide values to start with, default none.
    """

    __slots__ = ("_buckets", "_dcc", "_dcc_plans", "_peer", "_plans", "_users")

    def __init__(
        self, *, buckets_per_window: int = DEFAULT_BUCKETS, dcc_values: AdtValues | None = None
    ) -> None:
        if buckets_per_window < 1:
            raise ValueError(f"buckets_per_window must be >= 1, got {buckets_per_window}")
        self._buckets = buckets_per_window
        self._users: dict[str, _Owner] = {}
        # User -> its plans (the same dict as its _Owner's), for one lookup per request.
        self._plans: dict[str, dict[str, Plan]] = {}
        self._peer: dict[tuple[str, int], int] = {}
        self._dcc = _Owner(AdtTable.for_dcc(AdtValues()), buckets_per_window, None, user=False)
        # Plans for Users without values of their own: only DCC-wide rules apply.
        self._dcc_plans: dict[str, Plan] = self._dcc.plans
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
        return self._dcc.table

    def user_table(self, user_id: str) -> AdtTable | None:
        """The User's own values in force, compiled, or None when it has none."""
        owner = self._users.get(user_id)
        return None if owner is None else owner.table

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
            self._plans.pop(user_id, None)
            return
        table = AdtTable.for_user(user_id, values)
        owner = _Owner(table, self._buckets, self._users.get(user_id), user=True)
        self._users[user_id] = owner
        self._plans[user_id] = owner.plans

    def set_dcc_values(self, values: AdtValues) -> None:
        """Put the DCC-wide ADT values in force; raise AdtConfigError, changing nothing."""
        table = AdtTable.for_dcc(values)
        owner = _Owner(table, self._buckets, self._dcc, user=False)
        self._dcc = owner
        self._dcc_plans.clear()  # the dict stays: it is shared with nobody else but kept
        owner.plans = self._dcc_plans
        self._apply_peers()
        for user in self._users.values():
            user.plans.clear()

    def _plan(self, user_id: str, srv: str) -> Plan:
        """The plan of (user_id, srv), compiled on first use."""
        owner = self._users.get(user_id)
        plans = self._dcc_plans if owner is None else owner.plans
        plan = plans.get(srv)
        if plan is not None:
            return plan
        dcc = self._dcc
        checks = dcc.table.values_by_srv.get(srv, ())
        keys: list[KeyCounts] = []
        if owner is not None:
            checks += owner.table.values_by_srv.get(srv, ())
            key = owner.key(srv)  # made now, if not yet: the plan holds its keys
            if key is not None:
                keys.append(key)
            if srv != ALL_SRVS:
                key = owner.key(ALL_SRVS)
                if key is not None:
                    keys.append(key)
        key = dcc.keys.get(srv)
        if key is not None:
            keys.append(key)
        if checks or keys:
            plan = Plan(tuple(value_entry(check) for check in checks), tuple(keys))
        else:
            plan = EMPTY_PLAN
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
        `record_processed` once the request is passed on (or use `check_and_record`).

        When every count is known to pass (adt.counters), no window is read, so `now_s`
        does not move them on: a count taken later at an earlier time then answers for the
        latest time the windows saw. Recording every passed request at its `now_s`, as the
        router does, makes that the same as reading them.
        """
        plan = self._plans.get(user_id, self._dcc_plans).get(srv)
        if plan is None:
            plan = self._plan(user_id, srv)
        if plan is EMPTY_PLAN:
            return PASS
        return self._decide(plan, body_getter, now_s)

    def check_and_record(  # noqa: PLR0915 - the router's one call per request, inlined
        self, user_id: str, srv: str, body_getter: BodyGetter, now_s: float
    ) -> AdtDecision:
        """`check`, and when the request is not quarantined, `record_processed` with it: the
        router's one call per request (it passes on every request ADT does not hold)."""
        plan = self._plans.get(user_id, self._dcc_plans).get(srv)
        if plan is None:
            plan = self._plan(user_id, srv)
        keys = plan.keys
        # The body of `check` (and of _check_values), inlined: this runs once per request.
        breach: Breach | None = None
        shadow: list[Breach] | None = None
        if plan.values:
            why = ""
            try:
                body = body_getter()
            except ValueError as exc:
                # SEC G6 (b)(ii): a value that cannot be read cannot be shown to be in range.
                body, why = None, str(exc) or type(exc).__name__
            if body is None:
                breach, shadow = _unreadable(plan, why)
            else:
                for check, field, lo, hi in plan.values:
                    value = body.get(field)
                    if value is None:
                        continue  # absent: the rule does not apply
                    kind = type(value)
                    if (kind is float or kind is int) and lo <= value <= hi:
                        continue  # in range: what check.evaluate says, without the call
                    found = check.evaluate(body, now_s)
                    if found is None:
                        continue
                    if found.shadow:
                        shadow = [found] if shadow is None else [*shadow, found]
                    elif breach is None:
                        breach = found
        for key in keys:
            if key.room <= 0:
                break
        else:
            for key in plan.timed:
                if not key.from_s <= now_s < key.until_s:
                    break
            else:  # every count is known to pass without reading a window
                # Quarantined by a value, the request is not counted: count_breaches below
                # still moves on the windows that time has left (a count does too).
                if breach is None and keys:  # _record, inlined
                    tick = int(now_s * self._buckets)
                    for key in keys:
                        key.room -= 1
                        if key.lo <= tick < key.hi:
                            key.pending += 1
                        else:
                            log = key.log
                            if log is not None and len(log) < _LOG_LAST:
                                try:  # WindowSet.add_cold's usual case: one more logged
                                    log.append(tick)
                                except OverflowError:  # beyond 64 bits: counted at once
                                    key.add_cold(tick)
                            else:
                                key.add_cold(tick)
                        if not key.dirty:
                            key.mark_changed()
                if breach is None:
                    return PASS if shadow is None else AdtDecision(shadow_breaches=tuple(shadow))
        tick = int(now_s * self._buckets)
        decision = _decision(*count_breaches(plan, now_s, tick, breach, shadow))
        if decision.outcome == "pass":
            _record(keys, tick)
        return decision

    def _decide(self, plan: Plan, body_getter: BodyGetter, now_s: float) -> AdtDecision:
        breach: Breach | None = None
        shadow: list[Breach] | None = None
        if plan.values:
            breach, shadow = _check_values(plan, body_getter, now_s)
        for key in plan.keys:
            if key.room <= 0:
                break
        else:
            for key in plan.timed:
                if not key.from_s <= now_s < key.until_s:
                    break
            else:  # every count is known to pass without reading a window
                if breach is None:
                    return PASS if shadow is None else AdtDecision(shadow_breaches=tuple(shadow))
        tick = int(now_s * self._buckets)
        return _decision(*count_breaches(plan, now_s, tick, breach, shadow))

    def record_processed(self, user_id: str, srv: str, now_s: float) -> None:
        """Count one request of `srv` from `user_id`, processed at `now_s`, in every window."""
        plan = self._plans.get(user_id, self._dcc_plans).get(srv)
        if plan is None:
            plan = self._plan(user_id, srv)
        if plan.keys:
            _record(plan.keys, int(now_s * self._buckets))

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
        counts = _lane_counts(self._dcc, now_s)
        return AdtCountReport(
            router_id=router_id,
            at_s=now_s,
            counts=tuple(
                SrvWindowCount(srv=rule.srv, window_s=rule.window_s, count=count)
                for rule, count in zip(self._dcc.table.count_rules, counts, strict=True)
            ),
        )

    def set_peer_counts(self, counts: Mapping[tuple[str, int], int]) -> None:
        """Put the peers' summed counts in force (`adt.reports.merge_reports`)."""
        self._peer = dict(counts)
        self._apply_peers()

    def _apply_peers(self) -> None:
        peer = self._peer
        for key in self._dcc.keys.values():
            peers = [peer.get((rule.srv, rule.window_s), 0) for rule in key.rules]
            # A peer count that grew takes as much room; one that fell leaves the room a
            # lower bound still.
            grown = max(new - old for new, old in zip(peers, key.peers, strict=True))
            if grown > 0:
                key.room -= grown
            key.peers = peers

    # --- per-User state: snapshot, restore, forget, prune ---------------------------------

    def snapshot_user(self, user_id: str, now_s: float) -> UserCountersSnapshot | None:
        """The User's count windows at `now_s`, or None when it has no values of its own."""
        owner = self._users.get(user_id)
        if owner is None:
            return None
        found: list[tuple[int, WindowSnapshot]] = []
        for key in owner.live:  # the keys without counts would add nothing
            found += _key_windows(key, now_s)
        found.sort(key=lambda item: item[0])
        return UserCountersSnapshot(
            user_id=user_id,
            buckets_per_window=self._buckets,
            taken_at_s=now_s,
            windows=tuple(ws for _, ws in found),
        )

    def snapshot_changed(
        self, user_id: str, now_s: float
    ) -> tuple[tuple[str, UserCountersSnapshot], ...]:
        """(srv, snapshot of that key's windows) for each key of the User's (an SRV, or "*")
        counted under since its last snapshot here, then none until it is counted again.

        What the router writes after a batch: the cost is that of the keys the batch
        counted, not of every key the User has. A snapshot may hold no window (its counts
        have all left their windows): it still replaces the key's earlier one. Restoring
        the newest snapshot of each key (`restore_user` with their windows together) gives
        the counts `snapshot_user` would have given.
        """
        owner = self._users.get(user_id)
        if owner is None or not owner.changed:
            return ()
        found = []
        for key in owner.changed:
            key.dirty = False
            windows = tuple(ws for _, ws in _key_windows(key, now_s))
            found.append(
                (
                    key.rules[0].srv,
                    UserCountersSnapshot(
                        user_id=user_id,
                        buckets_per_window=self._buckets,
                        taken_at_s=now_s,
                        windows=windows,
                    ),
                )
            )
        owner.changed.clear()
        return tuple(found)

    def encode_changed(self, user_id: str, now_s: float) -> list[tuple[str, bytes]]:
        """`snapshot_changed`, encoded: (srv, `encode_snapshot` of that key's snapshot), the
        same bytes and the same windows afterwards, built straight from the windows
        (`adt.key_records`): what the router writes after each batch."""
        owner = self._users.get(user_id)
        if owner is None or not owner.changed:
            return []
        found = encode_keys(user_id, self._buckets, now_s, owner.changed)
        owner.changed.clear()
        return found

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
        owner = self._users.get(snapshot.user_id)
        if owner is None:
            return 0
        staged: list[tuple[KeyCounts, SlidingWindow, WindowSnapshot]] = []
        for ws in snapshot.windows:
            key = owner.key(ws.srv)
            window = None
            if key is not None:
                for rule, w in zip(key.rules, key.windows, strict=True):
                    if rule.window_s == ws.window_s:
                        window = w
            if key is None or window is None:
                continue
            try:  # on a scratch window first, so a corrupt snapshot changes nothing
                _restore_window(SlidingWindow(ws.window_s, self._buckets), ws)
            except ValueError as exc:
                raise SnapshotError(
                    f"the snapshot of User {snapshot.user_id}, window {ws.srv}/{ws.window_s} "
                    f"s, is corrupt: {exc}; start the User's counters empty"
                ) from exc
            staged.append((key, window, ws))
        for key in owner.keys.values():
            key.clear()
            key.room = 0  # the counts may have grown: evaluate at the next request
            key.dirty = False  # they are what the state topic holds
        if owner.changed is not None:
            owner.changed.clear()
        for key, window, ws in staged:
            _restore_window(window, ws)
            key.restored()
        return len(staged)

    def forget_user(self, user_id: str) -> None:
        """Drop the User's counts, keeping its values (on partition revocation)."""
        owner = self._users.get(user_id)
        if owner is not None:
            for key in list(owner.live):
                key.clear()
            for key in owner.keys.values():
                key.dirty = False  # the next owner restores them from the state topic
            if owner.changed is not None:
                owner.changed.clear()
            owner.drop_idle()  # every key is idle now: the User costs its table only

    def prune(self, now_s: float) -> int:
        """Free the memory of every window that is empty at `now_s`; return how many.

        Call every minute or so: an idle User's windows then cost no counter array, and
        its keys (their windows, and the plans holding them) are dropped once none holds
        counts or waits for a snapshot, to be made again on its next request. Visits the
        keys that hold counts, and looks at each User once.
        """
        freed = 0
        for owner in (*self._users.values(), self._dcc):
            if owner.live:
                for key in list(owner.live):
                    freed += key.release_if_idle(now_s)
            owner.drop_idle()
        return freed

    # --- views ----------------------------------------------------------------------------

    def usage(self, user_id: str, now_s: float) -> tuple[ThresholdUsage, ...]:
        """Each of the User's own thresholds: count against max, at `now_s`."""
        owner = self._users.get(user_id)
        if owner is None:
            return ()
        counts = _lane_counts(owner, now_s)
        return tuple(
            _usage(rule, now_s, count)
            for rule, count in zip(owner.table.count_rules, counts, strict=True)
        )

    def nearest_threshold(self, user_id: str, now_s: float) -> ThresholdUsage | None:
        """The User's threshold with the highest count / max, or None when it has none."""
        return max(self.usage(user_id, now_s), key=lambda u: u.ratio, default=None)

    def dcc_usage(self, now_s: float) -> tuple[ThresholdUsage, ...]:
        """Each DCC-wide threshold: local plus peers' count against max, at `now_s`."""
        lanes = self._dcc.lanes()
        counts = _lane_counts(self._dcc, now_s, lanes)
        return tuple(
            _usage(rule, now_s, count + (0 if key is None else key.peers[i]))
            for (rule, key, i), count in zip(lanes, counts, strict=True)
        )


def _key_windows(key: KeyCounts, now_s: float) -> list[tuple[int, WindowSnapshot]]:
    """(rank, snapshot) of each window of `key` that holds counts at `now_s`."""
    key.flush()
    found = []
    for rule, window, rank in zip(key.rules, key.windows, key.ranks, strict=True):
        head, buckets, counts = window.snapshot_compact(now_s)
        if buckets or counts:
            found.append(
                (
                    rank,
                    WindowSnapshot(
                        srv=rule.srv,
                        window_s=rule.window_s,
                        head=head,
                        buckets=buckets,
                        counts=counts,
                    ),
                )
            )
    key.respan()  # snapshot_compact() may have moved a window on
    return found


def _restore_window(window: SlidingWindow, ws: WindowSnapshot) -> None:
    """Put a snapshot's counts into `window`; ValueError if they do not fit it."""
    if ws.counts:
        if ws.buckets:
            raise ValueError("a window has both buckets and counts; it is written with one")
        window.restore_counts(ws.head, ws.counts)
    else:
        window.restore(ws.head, ws.buckets)


def _lane_counts(
    owner: _Owner,
    now_s: float,
    lanes: list[tuple[CountRule, KeyCounts | None, int]] | None = None,
) -> list[int]:
    """The local count of each of the owner's lanes (`_Owner.lanes`) at `now_s`, in the
    table's `count_rules` order: 0 for a key not made (nothing counted)."""
    by_key: dict[KeyCounts, list[int]] = {}
    out = []
    for _, key, i in owner.lanes() if lanes is None else lanes:
        if key is None:
            out.append(0)
            continue
        counts = by_key.get(key)
        if counts is None:
            counts = by_key[key] = key.counts(now_s)
        out.append(counts[i])
    return out
