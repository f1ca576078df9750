"""SECMP0067 Service Request traffic management: allocations under an operating threshold.

Pure: no I/O and no clock; time comes in as `now_s`. One `TrafficManager` per router
process decides the requests of the Users its partitions own; what is global (the system
load) comes in as a `SystemView`, merged by `merge_reports` from the `LoadReport` each
router publishes on `dcc.load`.

The policy, as implemented (rates in requests per second):

    C    TrafficPolicy.capacity_per_s, the maximum system capacity.
    T    TrafficPolicy.operating_threshold_per_s, the operating threshold, 0 <= T <= C.
    s    TrafficPolicy.reserved_share, 0 <= s < 1, the share of C kept for reserved SRVs.
    A_u  User u's allocation rate (Allocation.rate_per_s), B_u its burst: from the
         allocation table, or TrafficPolicy.default_allocation for a User without one.
    R    the system admitted rate: SystemView.admitted_per_s, the sum of the routers'
         reports, with this router's own (up to a report interval old) replaced by its
         current meter.
    Q    the system admitted rate of reserved SRVs: SystemView.reserved_per_s, likewise.
    r_u  User u's recent admitted rate: the larger of SystemView.user_rates[u] (0 when
         absent) and this router's own meter of u at the view's time (fresher for the Users
         this router owns).

1. Traffic management becomes active at R >= T; while inactive every request is admitted
   (no limit). Once active it stays active until R has stayed under T * (1 - m) for H
   seconds (m = TrafficPolicy.exit_margin_ratio, default 0.05; H = exit_hold_s, default
   1.0 s; m = H = 0 is the strict rule: off at the first R < T).
2. While active: A User with r_u <= A_u is "under" and is never throttled. A User
   with r_u > A_u is "over" and is limited to L_u = k * A_u, where
       U = sum of r_u over the under Users,  S = sum of A_u over the over Users,
       spare = max(0, T - U - S),  k = 1 + spare / S  (k = 1 when S = 0),
   so L_u = max(A_u, A_u + spare * A_u / S): what the under Users leave unused below T (and
   any unallocated headroom) is shared among the over Users in proportion to their
   allocations, and while spare > 0 the planned total U + sum(L_u) is exactly T.
3. Capacity. If k * S > C * (1 - s) - U, k is cut to max(0, C * (1 - s) - U) / S
   (`LimitPlan.capped`; the rule is "traffic.capacity"), so U + sum(L_u) <= C * (1 - s),
   and with at most s * C of reserved traffic on top (rule 5) the planned admitted total
   stays <= C. That can fail only if U alone is above C * (1 - s): the Users within their
   allocations use more than the capacity (`LimitPlan.oversubscribed`; every over User is
   then stopped, k = 0, but rule 2 wins over C, because never throttling a User within its
   allocation is what SECMP0067 promises). Keep sum(A_u) <= C * (1 - s) to rule that out.
4. A request of an over User goes through a GCRA (throttling/gcra.py) with rate L_u and
   burst B_u, one per User on this router, used only while active. It is throttled if the
   GCRA denies it; retry_after_ms is the GCRA's answer, at most max_retry_after_s.
5. Reserved SRVs (TrafficPolicy.reserved_srvs, exact SRV strings such as "8.1.1") are
   throttled last: a reserved-SRV request that rule 4 would throttle is admitted anyway
   while Q < s * C (as of the view). It does not use the User's GCRA allowance.
6. Shadow mode (TrafficPolicy.shadow for everyone, Allocation.shadow for one User):
   everything above is computed the same, including the GCRA state (which advances only
   for requests that enforcement would admit, so it simulates enforcement), and a request
   that would be throttled gets would_throttle=True but allowed=True.

The limits are recomputed by `update_view` from the latest view (and by `set_policy` and
`set_allocations`); between calls every decision uses the last plan.

Worst-case overshoot of the global view. Every router decides on a view that is late by
up to D = I + d + V, where I is the report interval (each router publishes
`local_report` every I seconds), d the delivery delay of `dcc.load`, and V the interval
between `update_view` calls; and the rates are smoothed by the meter (throttling/rates.py,
time constant tau). Suppose the true system admitted rate steps from R0 < T to R1 > T (at
most P * r_max above R0 when each of P routers has a User jumping from idle to r_max).
Until every router has applied limits, the requests admitted above T * t number at most

    E = (R1 - R0) * (D + tau / e) + sum over the over Users of B_u
      <= P * r_max * (I + d + V + 0.37 * tau) + sum(B_u)

where tau / e bounds the meter's lag (the events counted above T before a decayed counter
reaches T, throttling/rates.py) and each over User may spend its burst once. With I = 0.25 s,
d + V = 0.15 s and tau = 1 s, E is about P * r_max * 0.77 s. A User is classified on its
own router's meter at each `update_view`, so once active, a User of this router that goes
over its allocation is limited within V + tau * A_u / r_u. tests/unit/throttling/
test_traffic.py simulates this and checks E.

Why the hysteresis (issue 19). R is an admitted rate and the over Users are limited so that
the total is T: once active, the measured R hovers around T, and with the strict rule 1 every
dip under T (requests arriving in batches make the meter a sawtooth; a late report) released
everyone until the next `update_view`, letting the over Users through unlimited for about V
each time: simulated, A of the noisy-neighbour scenario got 10 to 14% above its fair share
with 50 ms batches. With the exit margin and hold time an overload is one episode, held at T
(within 0.5% simulated; tests/unit/throttling/test_traffic_precision.py), and it ends
about H + tau * ln((T - U) / (T * (1 - m) - U)) after the overload does. A User limited to
L_u whose requests arrive in batches every b seconds, each decided at one time, gets about
min(L_u, B_u / b): give it a burst B_u of at least L_u * b to hold it at its share rather
than under it (and the freed capacity then ends the episode and starts another).

What the I/O side does (workers/): call `decide` per request and `record_admitted` for
every request it admitted (allowed=True, shadow included; a throttled request is not
processed and does not count); publish `local_report(now_s)` to `dcc.load` every I seconds
(0.25 s suggested; it also expires idle Users); keep the latest report of each peer,
its own included, and every V seconds (0.1 s suggested) call
`update_view(merge_reports(latest, now_s, max_age_s))` with max_age_s about 3 * I. Use one
clock for every `now_s` and `at_s`: Unix seconds (time.time()), because `at_s` crosses hosts;
`max_age_s` absorbs small skew, or replace `at_s` with the receive time on receipt.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Annotated, NamedTuple

import msgspec
from msgspec import Meta, Struct

from throttling.gcra import Gcra, GcraStore, MemoryGcraStore
from throttling.rates import RateMeter

__all__ = [
    "ADMITTED",
    "ADMITTED_RESERVED",
    "RULE_CAPACITY",
    "RULE_RESERVED",
    "Allocation",
    "LimitPlan",
    "LoadReport",
    "SystemView",
    "TrafficDecision",
    "TrafficManager",
    "TrafficPolicy",
    "merge_reports",
    "plan_limits",
    "reason",
]

_NonNegFloat = Annotated[float, Meta(ge=0)]
_ceil = math.ceil
_replace = msgspec.structs.replace

RULE_CAPACITY = "traffic.capacity"
RULE_RESERVED = "traffic.reserved"
_RULE_ALLOCATION = "traffic.allocation."
# The reserved-SRV meter keeps one key.
_RESERVED_KEY = "reserved"
# The durations of finished episodes kept until `take_episode_durations` (the metrics
# drain them at each scrape; at least one hold time apart, 1,024 is hours of flapping).
_MAX_EPISODES_KEPT = 1024


def _check_rate(where: str, name: str, value: float) -> None:
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(
            f"{where}.{name} must be a finite number of requests per second, 0 or more; "
            f"got {value!r}"
        )


class Allocation(Struct, frozen=True, kw_only=True):
    """A User's SECMP0067 allocation.

    rate_per_s: requests per second the User may always send while traffic management is
    active (>= 0; with 0, any traffic puts the User over its allocation, and its share of the
    spare capacity is 0 too, so it is stopped while active). burst: how many requests the
    User may send at once when it is limited (>= 1). shadow: compute and report this User's
    throttling but admit its requests (default False).
    """

    rate_per_s: float
    burst: int
    shadow: bool = False

    def __post_init__(self) -> None:
        _check_rate("Allocation", "rate_per_s", self.rate_per_s)
        if self.burst < 1:
            raise ValueError(
                f"Allocation.burst must be at least 1 request, got {self.burst}; "
                "use 1 for evenly spaced requests"
            )


class TrafficPolicy(Struct, frozen=True, kw_only=True):
    """System-wide SECMP0067 settings (see the module docstring for the rules).

    capacity_per_s: C, the maximum system capacity, requests per second (> 0).
    operating_threshold_per_s: T, traffic management is active at or above it (0 <= T <= C;
    0 keeps it always active).
    default_allocation: the allocation of a User missing from the allocation table.
    reserved_srvs: SRVs throttled last, e.g. frozenset({"8.1.1"}); default none.
    reserved_share: the share of C they may use beyond their User's limit, 0 <= s < 1,
    default 0.0. shadow: compute and report throttling but admit everything, default False.
    max_retry_after_s: the longest retry-after answered, seconds (> 0), default 60.0;
    a limit near 0 would otherwise say hours, while the load changes within seconds.
    exit_margin_ratio: m, hysteresis of rule 1: once active, traffic management stays active
    until R is below T * (1 - m), 0 <= m < 1, default 0.05. exit_hold_s: H, and R must stay
    below T * (1 - m) for this many seconds before it switches off, 0 <= H (finite), default
    1.0. m = 0 and H = 0 give the strict rule 1 (off at the first R < T).
    """

    capacity_per_s: float
    operating_threshold_per_s: float
    default_allocation: Allocation
    reserved_srvs: frozenset[str] = frozenset()
    reserved_share: float = 0.0
    shadow: bool = False
    max_retry_after_s: float = 60.0
    exit_margin_ratio: float = 0.05
    exit_hold_s: float = 1.0

    def __post_init__(self) -> None:
        where = "TrafficPolicy"
        if not 0.0 <= self.exit_margin_ratio < 1.0:
            raise ValueError(
                f"{where}.exit_margin_ratio must be at least 0 and below 1 (a share of "
                f"operating_threshold_per_s), got {self.exit_margin_ratio!r}; 0.05 switches "
                "traffic management off below 95% of the threshold"
            )
        if not (self.exit_hold_s >= 0.0 and math.isfinite(self.exit_hold_s)):
            raise ValueError(
                f"{where}.exit_hold_s must be a finite number of seconds, 0 or more, got "
                f"{self.exit_hold_s!r}; 1.0 is about the meter's time constant"
            )
        _check_rate(where, "capacity_per_s", self.capacity_per_s)
        if self.capacity_per_s == 0.0:
            raise ValueError(f"{where}.capacity_per_s must be above 0 requests per second")
        _check_rate(where, "operating_threshold_per_s", self.operating_threshold_per_s)
        if self.operating_threshold_per_s > self.capacity_per_s:
            raise ValueError(
                f"{where}.operating_threshold_per_s ({self.operating_threshold_per_s}) must "
                f"not exceed capacity_per_s ({self.capacity_per_s}); the threshold is where "
                "traffic management starts, below the capacity"
            )
        if not 0.0 <= self.reserved_share < 1.0:
            raise ValueError(
                f"{where}.reserved_share must be at least 0 and below 1 (a share of "
                f"capacity_per_s), got {self.reserved_share!r}"
            )
        if not (self.max_retry_after_s > 0.0 and math.isfinite(self.max_retry_after_s)):
            raise ValueError(
                f"{where}.max_retry_after_s must be a finite number of seconds above 0, "
                f"got {self.max_retry_after_s!r}"
            )
        for srv in self.reserved_srvs:
            if not srv or srv != srv.strip():
                raise ValueError(
                    f"{where}.reserved_srvs holds {srv!r}; write each SRV as sent in "
                    "requests, e.g. 8.1.1"
                )


class LoadReport(Struct, frozen=True, kw_only=True):
    """What one router publishes on `dcc.load` (JSON, key: peer_id) every report interval.

    peer_id: the publishing router (unique per process). at_s: when it was measured, Unix
    seconds. admitted_per_s: its recent admitted rate, all Users and SRVs, requests per
    second. reserved_per_s: the part of it for reserved SRVs. user_rates: User ID -> that
    User's recent admitted rate on this router (Users idle for a few seconds are left out).
    Example: {"peer_id": "router-1", "at_s": 1795000000.25, "admitted_per_s": 310.5,
    "reserved_per_s": 2.0, "user_rates": {"90-B3-D5-1F-30-01-00-00": 300.5, ...}}.
    Rates are smoothed over about a second (throttling/rates.py). Decoding rejects a
    negative rate; new fields will get defaults.
    """

    peer_id: str
    at_s: float
    admitted_per_s: _NonNegFloat
    reserved_per_s: _NonNegFloat = 0.0
    user_rates: dict[str, _NonNegFloat] = msgspec.field(default_factory=dict)


class SystemView(Struct, frozen=True, kw_only=True):
    """The system load as known at `at_s` (Unix seconds): the input of `update_view`.

    admitted_per_s: R, the system admitted rate. reserved_per_s: Q, its reserved-SRV part.
    user_rates: r_u per User ID, summed over routers. peer_admitted_per_s and
    peer_reserved_per_s: each peer's part of R and Q, by peer ID (a TrafficManager replaces
    its own, which is up to a report interval old, with its current meter). peers: how many
    reports were summed; stale_peers: how many were left out as too old (`merge_reports`).
    """

    at_s: float
    admitted_per_s: float
    reserved_per_s: float = 0.0
    user_rates: dict[str, float] = msgspec.field(default_factory=dict)
    peer_admitted_per_s: dict[str, float] = msgspec.field(default_factory=dict)
    peer_reserved_per_s: dict[str, float] = msgspec.field(default_factory=dict)
    peers: int = 0
    stale_peers: int = 0


class LimitPlan(Struct, frozen=True, kw_only=True):
    """The limits SECMP0067 sets for a view (rules 1 to 3 of the module docstring).

    active: R >= T. under_rate_per_s: U. over_allocation_per_s: S. spare_per_s: spare.
    factor: k (inf while inactive). capped: k was cut to stay within the capacity.
    oversubscribed: U alone is above C * (1 - s). reserved_open: Q < s * C, so reserved
    SRVs may pass a User's limit. limits_per_s: L_u of every over User (empty while
    inactive). The sums are computed whether active or not, for dashboards.
    """

    at_s: float
    active: bool
    system_rate_per_s: float
    reserved_rate_per_s: float
    under_rate_per_s: float
    over_allocation_per_s: float
    spare_per_s: float
    factor: float
    capped: bool
    oversubscribed: bool
    reserved_open: bool
    limits_per_s: dict[str, float]


def plan_limits(
    policy: TrafficPolicy,
    allocations: Mapping[str, Allocation],
    view: SystemView,
    *,
    active: bool | None = None,
) -> LimitPlan:
    """Compute the SECMP0067 limits for `view` (rules 1 to 3 of the module docstring).

    allocations: User ID -> Allocation; Users missing get policy.default_allocation. The
    Users considered are those in view.user_rates. active: whether traffic management is
    active, as the TrafficManager's hysteresis decided; default (None) R >= T.
    """
    default = policy.default_allocation
    under = 0.0
    over_allocation = 0.0
    over: list[tuple[str, float]] = []
    for user, rate in view.user_rates.items():
        allocated = allocations.get(user, default).rate_per_s
        if rate <= allocated:
            under += rate
        else:
            over_allocation += allocated
            over.append((user, allocated))
    threshold = policy.operating_threshold_per_s
    capacity = policy.capacity_per_s
    # SECMP0067: what the Users within their allocations leave unused under T is shared by
    # the Users over theirs, in proportion to allocation: L_u = max(A_u, A_u + share).
    spare = max(0.0, threshold - under - over_allocation)
    over_total = over_allocation + spare
    # Rules 3 and 5: the over Users get what C leaves after the under Users and the
    # reserved share, so the admitted total stays <= C.
    budget = capacity * (1.0 - policy.reserved_share) - under
    capped = over_allocation > 0.0 and over_total > budget
    if capped:
        over_total = max(0.0, budget)
    # L_u = over_total * (A_u / S) = k * A_u; in this order a tiny S cannot overflow.
    if over_allocation > 0.0:
        factor = over_total / over_allocation
        limits = {user: over_total * (allocated / over_allocation) for user, allocated in over}
    else:
        factor = 1.0
        limits = dict.fromkeys((user for user, _ in over), 0.0)
    if active is None:
        active = view.admitted_per_s >= threshold
    return LimitPlan(
        at_s=view.at_s,
        active=active,
        system_rate_per_s=view.admitted_per_s,
        reserved_rate_per_s=view.reserved_per_s,
        under_rate_per_s=under,
        over_allocation_per_s=over_allocation,
        spare_per_s=spare,
        factor=factor if active else math.inf,
        capped=capped,
        oversubscribed=budget < 0.0,
        reserved_open=view.reserved_per_s < policy.reserved_share * capacity,
        limits_per_s=limits if active else {},
    )


# The plan before the first view: inactive, no limits.
_INACTIVE_PLAN = LimitPlan(
    at_s=0.0,
    active=False,
    system_rate_per_s=0.0,
    reserved_rate_per_s=0.0,
    under_rate_per_s=0.0,
    over_allocation_per_s=0.0,
    spare_per_s=0.0,
    factor=math.inf,
    capped=False,
    oversubscribed=False,
    reserved_open=False,
    limits_per_s={},
)


class TrafficDecision(Struct, frozen=True, kw_only=True, gc=False):
    """The answer of `TrafficManager.decide` for one request.

    allowed: pass the request on (always True in shadow mode). would_throttle: enforcement
    would throttle it (then allowed is False, or True in shadow mode). retry_after_ms: when
    throttled, when to retry. rule: "traffic.allocation.<User ID>" when limited to its share
    under T, "traffic.capacity" when that share was cut to stay within C,
    "traffic.reserved" when a reserved SRV passed its User's limit, else None.
    The numbers, for `reason` and metrics, are filled only when would_throttle: the User's
    allocation, its recent rate r_u and limit L_u, the system rate R, threshold T, capacity
    C, the reserved-SRV rate Q and its limit s * C (requests per second).

    Not a wire schema: an answer inside the router process.
    """

    allowed: bool
    would_throttle: bool
    retry_after_ms: int = 0
    rule: str | None = None
    user_id: str = ""
    srv: str = ""
    reserved_srv: bool = False
    allocation_per_s: float = 0.0
    burst: int = 0
    user_rate_per_s: float = 0.0
    limit_per_s: float = math.inf
    system_rate_per_s: float = 0.0
    threshold_per_s: float = 0.0
    capacity_per_s: float = 0.0
    reserved_rate_per_s: float = 0.0
    reserved_limit_per_s: float = 0.0


# Shared answers: an admitted request costs no allocation.
ADMITTED = TrafficDecision(allowed=True, would_throttle=False)
ADMITTED_RESERVED = TrafficDecision(allowed=True, would_throttle=False, rule=RULE_RESERVED)


def reason(decision: TrafficDecision) -> str:
    """A sentence for the User and the operator: allocation, the User's rate, system load."""
    d = decision
    if not d.would_throttle:
        return "not throttled by traffic management"
    head = (
        "would be throttled (shadow mode, admitted)" if d.allowed else "throttled"
    ) + " by traffic management (SECMP0067)"
    text = (
        f"{head}: User {d.user_id} is sending {d.user_rate_per_s:.1f} requests/s, above its "
        f"allocation of {d.allocation_per_s:.1f}/s, while the system load of "
        f"{d.system_rate_per_s:.1f} requests/s is at or above the operating threshold of "
        f"{d.threshold_per_s:.1f}/s (capacity {d.capacity_per_s:.1f}/s); "
    )
    if d.rule == RULE_CAPACITY:
        text += (
            f"its limit is cut to {d.limit_per_s:.1f} requests/s (burst {d.burst}) to keep "
            f"the system within its capacity"
        )
    else:
        text += (
            f"it is limited to {d.limit_per_s:.1f} requests/s (burst {d.burst}), its "
            f"allocation plus its share of the unused capacity under the threshold"
        )
    if d.reserved_srv:
        text += (
            f"; SRV {d.srv} is reserved, but reserved SRVs already use "
            f"{d.reserved_rate_per_s:.1f} of their {d.reserved_limit_per_s:.1f} requests/s"
        )
    return f"{text}; retry after {d.retry_after_ms} ms"


class _Limited(NamedTuple):
    """What decide needs for an over User, built by update_view."""

    limit_per_s: float
    burst: int
    # The answer when throttled, but for retry_after_ms, srv and reserved_srv.
    throttled: TrafficDecision


class TrafficManager:
    """SECMP0067 decisions for the Users of one router process (module docstring: rules).

    policy: the TrafficPolicy. allocations: User ID -> Allocation (copied). peer_id: this
    router's ID in its LoadReports. meter_tau_s: the rate meter's time constant, default
    1.0 s. max_users: the most Users whose rate and GCRA state are held, default 100_000.
    gcra_store: where the per-User GCRA state lives, default a MemoryGcraStore.

    Until the first `update_view` traffic management is inactive.
    """

    __slots__ = (
        "_activations",
        "_active",
        "_active_since_s",
        "_active_total_s",
        "_allocations",
        "_below_since_s",
        "_episodes",
        "_gcra",
        "_gcra_decide",
        "_last_at_s",
        "_limited",
        "_max_retry_after_ms",
        "_meter",
        "_meter_add",
        "_peer_id",
        "_plan",
        "_policy",
        "_reserved_meter",
        "_reserved_open",
        "_reserved_srvs",
        "_view",
    )

    def __init__(
        self,
        policy: TrafficPolicy,
        allocations: Mapping[str, Allocation] | None = None,
        *,
        peer_id: str,
        meter_tau_s: float = 1.0,
        max_users: int = 100_000,
        gcra_store: GcraStore | None = None,
    ) -> None:
        self._take_policy(policy)
        self._allocations: dict[str, Allocation] = dict(allocations or {})
        self._peer_id = peer_id
        self._meter = RateMeter(tau_s=meter_tau_s, max_keys=max_users)
        self._meter_add = self._meter.add
        self._reserved_meter = RateMeter(tau_s=meter_tau_s, max_keys=1)
        store = MemoryGcraStore(max_keys=max_users) if gcra_store is None else gcra_store
        self._gcra = Gcra(store)
        self._gcra_decide = self._gcra.decide
        self._view: SystemView | None = None
        self._plan = _INACTIVE_PLAN
        self._active = False
        self._reserved_open = False
        self._limited: dict[str, _Limited] = {}
        self._active_since_s = 0.0
        self._active_total_s = 0.0
        self._activations = 0
        self._last_at_s = -math.inf
        self._below_since_s: float | None = None
        self._episodes: deque[float] = deque(maxlen=_MAX_EPISODES_KEPT)

    # -- the hot path ------------------------------------------------------------------

    def decide(self, user_id: str, srv: str, now_s: float) -> TrafficDecision:
        """Decide one request of `user_id` for `srv` at now_s (Unix seconds)."""
        if not self._active:
            return ADMITTED  # SECMP0067: inactive below the operating threshold
        limited = self._limited.get(user_id)
        if limited is None:
            return ADMITTED  # SECMP0067: a User within its allocation is never throttled
        limit_per_s, burst, throttled = limited
        allowed, retry_after_s = self._gcra_decide(user_id, now_s, limit_per_s, burst)
        if allowed:
            return ADMITTED
        reserved_srv = srv in self._reserved_srvs
        if reserved_srv and self._reserved_open:
            return ADMITTED_RESERVED  # reserved SRVs are throttled last, within s * C
        # A denied request's wait is above 0, so the ceiling is at least 1 ms.
        retry_after_ms = _ceil(retry_after_s * 1000.0)
        cap_ms = self._max_retry_after_ms
        # One C-level copy of the User's prepared answer: the hot path of a User flooding
        # the hub, where building the decision from keywords cost five times as much.
        return _replace(
            throttled,
            retry_after_ms=retry_after_ms if retry_after_ms < cap_ms else cap_ms,
            srv=srv,
            reserved_srv=reserved_srv,
        )

    def record_admitted(self, user_id: str, srv: str, now_s: float) -> None:
        """Count one admitted request (call for each request decide admitted, not others)."""
        self._meter_add(user_id, now_s)
        if srv in self._reserved_srvs:
            self._reserved_meter.add(_RESERVED_KEY, now_s)

    # -- inputs ------------------------------------------------------------------------

    def update_view(self, view: SystemView) -> LimitPlan:
        """Take the latest system view and recompute the limits; returns the new plan.

        Cheap (one pass over the Users in the view and this router's meter): call it every
        0.1 s or so, and when reports arrive.
        """
        self._view = view
        return self._replan()

    def set_policy(self, policy: TrafficPolicy) -> None:
        """Replace the policy as a whole; the limits are recomputed from the last view."""
        self._take_policy(policy)
        self._replan()

    def _take_policy(self, policy: TrafficPolicy) -> None:
        self._policy = policy
        self._reserved_srvs = policy.reserved_srvs
        self._max_retry_after_ms = _ceil(policy.max_retry_after_s * 1000.0)

    def set_allocations(self, allocations: Mapping[str, Allocation]) -> None:
        """Replace the whole allocation table (copied); limits are recomputed."""
        self._allocations = dict(allocations)
        self._replan()

    def _replan(self) -> LimitPlan:
        view = self._view
        if view is None:
            return self._plan
        at_s = view.at_s
        peer_id = self._peer_id
        # The view comes from reports up to I + d old; this router's own meter is current.
        # R and Q: this router's part of the view is replaced by its meter, so a release
        # of its own Users is seen within one update, not one report interval.
        own = self._meter.rates(at_s)
        admitted = view.admitted_per_s - view.peer_admitted_per_s.get(peer_id, 0.0)
        reserved = view.reserved_per_s - view.peer_reserved_per_s.get(peer_id, 0.0)
        admitted = max(0.0, admitted + math.fsum(own.values()))
        reserved = max(0.0, reserved + self._reserved_meter.rate(_RESERVED_KEY, at_s))
        # r_u: the view's rate, or this router's meter when higher (a User moving here in
        # a rebalance is still in the view under its old router).
        rates = dict(view.user_rates)
        for user, rate in own.items():
            if rate > rates.get(user, 0.0):
                rates[user] = rate
        policy = self._policy
        fresh = msgspec.structs.replace(
            view, admitted_per_s=admitted, reserved_per_s=reserved, user_rates=rates
        )
        plan = plan_limits(
            policy, self._allocations, fresh, active=self._stays_active(admitted, view.at_s)
        )
        default = policy.default_allocation
        allocations = self._allocations
        shadow = policy.shadow
        rule = RULE_CAPACITY if plan.capped else None
        threshold = policy.operating_threshold_per_s
        capacity = policy.capacity_per_s
        reserved_limit = policy.reserved_share * capacity
        limited: dict[str, _Limited] = {}
        for user, limit in plan.limits_per_s.items():
            allocation = allocations.get(user, default)
            throttled = TrafficDecision(
                allowed=shadow or allocation.shadow,
                would_throttle=True,
                rule=rule or _RULE_ALLOCATION + user,
                user_id=user,
                allocation_per_s=allocation.rate_per_s,
                burst=allocation.burst,
                user_rate_per_s=rates[user],
                limit_per_s=limit,
                system_rate_per_s=plan.system_rate_per_s,
                threshold_per_s=threshold,
                capacity_per_s=capacity,
                reserved_rate_per_s=plan.reserved_rate_per_s,
                reserved_limit_per_s=reserved_limit,
            )
            limited[user] = _Limited(limit, allocation.burst, throttled)
        self._account(plan.active, at_s)
        self._plan = plan
        self._limited = limited
        self._reserved_open = plan.reserved_open
        return plan

    def _stays_active(self, admitted_per_s: float, at_s: float) -> bool:
        """Rule 1 with hysteresis: on at R >= T; once on, off only after R has stayed
        under T * (1 - m) for H seconds."""
        policy = self._policy
        threshold = policy.operating_threshold_per_s
        if admitted_per_s >= threshold:
            self._below_since_s = None
            return True  # SECMP0067: active at or above the operating threshold
        if not self._active:
            return False
        # Once active, the over Users are held so that R is about T: a strict R < T test
        # released them at every dip of the measured R (a batch boundary, a late report),
        # and each release let them through unlimited for a view interval (issue 19).
        if admitted_per_s >= threshold * (1.0 - policy.exit_margin_ratio):
            self._below_since_s = None
            return True
        at_s = max(at_s, self._last_at_s)
        if self._below_since_s is None:
            self._below_since_s = at_s
        return at_s - self._below_since_s < policy.exit_hold_s

    def _account(self, active: bool, at_s: float) -> None:
        # Time never goes back in the accounting, even if a view arrives out of order.
        at_s = max(at_s, self._last_at_s)
        self._last_at_s = at_s
        if active and not self._active:
            self._active_since_s = at_s
            self._activations += 1
        elif self._active and not active:
            duration_s = at_s - self._active_since_s
            self._active_total_s += duration_s
            self._episodes.append(duration_s)
            self._below_since_s = None
        self._active = active

    # -- outputs -----------------------------------------------------------------------

    def local_report(self, now_s: float) -> LoadReport:
        """What this router publishes on `dcc.load` now; also forgets idle Users."""
        self._meter.expire(now_s)
        self._reserved_meter.expire(now_s)
        self._gcra.expire(now_s)
        user_rates = self._meter.rates(now_s)
        return LoadReport(
            peer_id=self._peer_id,
            at_s=now_s,
            admitted_per_s=math.fsum(user_rates.values()),
            reserved_per_s=self._reserved_meter.rate(_RESERVED_KEY, now_s),
            user_rates=user_rates,
        )

    @property
    def active(self) -> bool:
        """Whether traffic management is active (R >= T in the last view)."""
        return self._active

    @property
    def activations_total(self) -> int:
        """How many times traffic management has become active."""
        return self._activations

    def active_seconds_total(self, now_s: float) -> float:
        """Seconds traffic management has been active in all, up to now_s."""
        total = self._active_total_s
        if self._active:
            total += max(0.0, now_s - self._active_since_s)
        return total

    def episode_age_s(self, now_s: float) -> float:
        """Seconds the current episode (activation) has lasted at now_s; 0.0 while inactive."""
        return max(0.0, now_s - self._active_since_s) if self._active else 0.0

    def take_episode_durations(self) -> list[float]:
        """The durations in seconds of the episodes that ended since the last call (the
        oldest first; at most the last 1,024), from activation to switching off, hold
        time included."""
        episodes = self._episodes
        taken: list[float] = []
        while episodes:
            taken.append(episodes.popleft())
        return taken

    @property
    def plan(self) -> LimitPlan:
        """The limits in force (an inactive plan before the first view)."""
        return self._plan

    @property
    def policy(self) -> TrafficPolicy:
        """The policy in force."""
        return self._policy

    @property
    def view(self) -> SystemView | None:
        """The last system view taken by `update_view` (None before the first)."""
        return self._view

    def allocation(self, user_id: str) -> Allocation:
        """The allocation of `user_id` (the default allocation if it has none)."""
        return self._allocations.get(user_id, self._policy.default_allocation)

    def user_rate(self, user_id: str, now_s: float) -> float:
        """The User's recent admitted rate on this router, requests per second."""
        return self._meter.rate(user_id, now_s)


def merge_reports(reports: Mapping[str, LoadReport], now_s: float, max_age_s: float) -> SystemView:
    """Sum the latest report of each peer into a SystemView at now_s.

    reports: peer ID -> that peer's latest LoadReport (this router's own included).
    max_age_s: a report measured more than this many seconds before now_s is left out (its
    peer stopped or lost its connection), counted in `stale_peers`; about 3 report
    intervals. A report from the future (clock skew) is used.
    """
    if not (max_age_s > 0.0 and math.isfinite(max_age_s)):
        raise ValueError(
            f"max_age_s must be a finite number of seconds above 0, got {max_age_s!r}; "
            "about 3 report intervals"
        )
    fresh: dict[str, LoadReport] = {}
    stale = 0
    for report in reports.values():
        if now_s - report.at_s > max_age_s:
            stale += 1
            continue
        # One report per peer, the latest, even if the mapping holds two under other keys.
        known = fresh.get(report.peer_id)
        if known is None or report.at_s >= known.at_s:
            fresh[report.peer_id] = report
    peer_admitted: dict[str, float] = {}
    peer_reserved: dict[str, float] = {}
    user_rates: dict[str, float] = {}
    for peer_id, report in fresh.items():
        peer_admitted[peer_id] = report.admitted_per_s
        peer_reserved[peer_id] = report.reserved_per_s
        for user, rate in report.user_rates.items():
            # A User moves between routers on a rebalance: both report it for a while.
            user_rates[user] = user_rates.get(user, 0.0) + rate
    return SystemView(
        at_s=now_s,
        admitted_per_s=math.fsum(peer_admitted.values()),
        reserved_per_s=math.fsum(peer_reserved.values()),
        user_rates=user_rates,
        peer_admitted_per_s=peer_admitted,
        peer_reserved_per_s=peer_reserved,
        peers=len(peer_admitted),
        stale_peers=stale,
    )
