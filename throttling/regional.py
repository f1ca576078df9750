"""Regional capacity for forwarded alerts: a token bucket and two queues per CSP region.

Pure: no I/O and no clock. Alerts that survive storm protection (throttling.storm) still
cross a region's Communications Service Provider link, whose capacity is finite: after a
power event a whole region's devices alert at once. Per region (`north`, `central`,
`south`), `RegionalGate` forwards at most `rate_per_s` alerts a second with bursts of
`burst`; above that, alerts wait in two FIFO queues:

- **priority**: alerts on the SECMP0062 exclusion list (never throttled by storm
  protection, so the caller marks them) and a configurable set of high-priority codes;
- **normal**: everything else.

`poll(now_s)` releases what the buckets allow, the priority queue first: a normal alert is
never released while a priority alert of its region waits. `take` lets an alert pass at
once, without queueing, while its region has a token free and nothing of its rank waits:
priority only matters once alerts wait. Nothing is dropped. Each queue holds at most its
configured length; when it is full, `offer` refuses the alert (returns False) and keeps
nothing, so the caller must hold that alert, stop consuming (pause its Kafka partitions),
keep calling `poll`, and offer the same alert again: backpressure into Kafka, where waiting
costs no memory.

Bounds, for a region with rate r and queue lengths Qp (priority) and Qn (normal):

- released in any interval of t seconds <= r * t + burst;
- a priority alert waits at most about Qp / r seconds;
- a normal alert waits at most about (Qn + Qp) / (r - p) seconds while priority alerts
  arrive at p < r a second. Strict priority has no bound when p >= r: the excluded alerts
  alone then exceed the region's capacity. Watch `oldest_delay_s`.

Alerts with no region, or a region not configured, go to `RegionalPolicy.unknown_region`
when it names a configured region, and otherwise to an unlimited lane: released by the
next `poll` without a rate limit (the DCC cannot know a CSP link it has no capacity for;
a deployment that must cap them names a region).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Generic, NamedTuple, TypeVar

import msgspec

from throttling.storm import normalize_alert_code

__all__ = ["REGIONS", "RegionCapacity", "RegionalGate", "RegionalPolicy", "ReleasedAlert"]

T = TypeVar("T")

REGIONS: Final = ("north", "central", "south")
"""The CSP regions of the wire contract (broker.schemas.Region)."""

# The name `ReleasedAlert.region` gets for alerts released by the unlimited lane.
_UNLIMITED: Final = "unlimited"


class RegionCapacity(msgspec.Struct, frozen=True, kw_only=True):
    """Capacity of one region's link for forwarded alerts.

    rate_per_s: alerts a second (> 0). burst: alerts at once after a quiet spell (>= 1).
    max_queued: the most normal alerts waiting, default 100_000. max_priority_queued: the
    most priority alerts waiting, default 100_000.
    """

    rate_per_s: float
    burst: int
    max_queued: int = 100_000
    max_priority_queued: int = 100_000

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise ValueError(f"RegionCapacity.rate_per_s must be above 0, got {self.rate_per_s}")
        if self.burst < 1:
            raise ValueError(f"RegionCapacity.burst must be at least 1, got {self.burst}")
        if self.max_queued < 1 or self.max_priority_queued < 1:
            raise ValueError(
                "RegionCapacity.max_queued and max_priority_queued must be at least 1, got "
                f"{self.max_queued} and {self.max_priority_queued}"
            )


class RegionalPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Capacity per region, where alerts of no known region go, and the priority codes.

    regions: region name -> capacity. unknown_region: a name in regions that carries alerts
    with no region or an unconfigured one; None (default) sends them to the unlimited lane.
    high_priority_codes: alert codes released before normal ones, besides the excluded
    codes (the caller combines both, see `RegionalGate.is_high_priority`).
    """

    regions: Mapping[str, RegionCapacity] = msgspec.field(default_factory=dict)
    unknown_region: str | None = None
    high_priority_codes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if _UNLIMITED in self.regions:
            raise ValueError(
                f"RegionalPolicy.regions may not contain {_UNLIMITED!r}: that name is the "
                "lane of alerts with no configured region; rename the region"
            )
        if self.unknown_region is not None and self.unknown_region not in self.regions:
            raise ValueError(
                f"RegionalPolicy.unknown_region {self.unknown_region!r} is not one of the "
                f"configured regions {sorted(self.regions)}; name one of them or leave it "
                "unset for an unlimited lane"
            )


class ReleasedAlert(NamedTuple, Generic[T]):
    """An alert released by `RegionalGate.poll`.

    delay_s: seconds it waited since `offer`. region: the lane that released it (a
    configured region, or "unlimited").
    """

    item: T
    delay_s: float
    region: str


class _Lane(Generic[T]):
    """One region's bucket and queues; mutable, only RegionalGate touches it."""

    __slots__ = (
        "burst",
        "last_s",
        "max_normal",
        "max_priority",
        "name",
        "normal",
        "priority",
        "rate_per_s",
        "tokens",
    )

    def __init__(self, name: str, capacity: RegionCapacity | None) -> None:
        self.name = name
        self.priority: deque[tuple[float, T]] = deque()
        self.normal: deque[tuple[float, T]] = deque()
        self.last_s: float | None = None
        self.tokens = 0.0
        self.rate_per_s = 0.0
        self.burst = 0
        self.max_normal = 0
        self.max_priority = 0
        self.configure(capacity)

    def configure(self, capacity: RegionCapacity | None) -> None:
        # None: the unlimited lane; its queues only hold what arrives between two polls.
        if capacity is None:
            self.rate_per_s = float("inf")
            self.burst = 0
            self.max_normal = self.max_priority = 1 << 62
            return
        self.rate_per_s = capacity.rate_per_s
        self.burst = capacity.burst
        self.tokens = min(self.tokens, capacity.burst)
        self.max_normal = capacity.max_queued
        self.max_priority = capacity.max_priority_queued

    def refill(self, now_s: float) -> None:
        if self.last_s is None:
            # A lane starts full: the link was idle before the first alert.
            self.tokens = float(self.burst)
            self.last_s = now_s
        elif now_s > self.last_s:
            self.tokens = min(
                float(self.burst), self.tokens + (now_s - self.last_s) * self.rate_per_s
            )
            self.last_s = now_s

    def token_at(self, now_s: float) -> float:
        """The first time a whole token is in the bucket (now_s if one is); after refill.

        `last_s + missing / rate_per_s` rounds to the float grid (2.4e-7 s near the Unix
        time 1.8e9), as often to just before the token is whole as after: a poll there
        released nothing, and asked again, the gate answered the same time, for ever on a
        simulated clock. So step to the next float until the refill's own arithmetic gives
        the token (a step or two)."""
        missing = 1.0 - self.tokens
        last_s = self.last_s
        if missing <= 0.0 or last_s is None:
            return now_s
        at_s = max(now_s, last_s + missing / self.rate_per_s)
        while self.tokens + (at_s - last_s) * self.rate_per_s < 1.0:
            at_s = math.nextafter(at_s, math.inf)
        return at_s


class RegionalGate(Generic[T]):
    """Per-region rate limit on forwarded alerts, with priority and bounded queues.

    policy: see RegionalPolicy. T: the caller's alert type. Call `offer` for each alert and
    `poll` after each batch and whenever `next_release_s` says (see the module docstring
    for the contract). now_s: seconds on a monotonic clock; a step back is treated as no
    time passing.
    """

    __slots__ = ("_fallback", "_high_priority", "_lanes", "_policy", "_refused", "_unlimited")

    def __init__(self, policy: RegionalPolicy) -> None:
        self._lanes: dict[str, _Lane[T]] = {}
        self._unlimited: _Lane[T] = _Lane(_UNLIMITED, None)
        self._fallback = self._unlimited
        self._policy = policy
        self._high_priority: frozenset[str] = frozenset()
        self._refused = 0
        self.set_policy(policy)

    @property
    def policy(self) -> RegionalPolicy:
        """The policy in force."""
        return self._policy

    def set_policy(self, policy: RegionalPolicy) -> None:
        """Replace the capacities at once; nothing queued is lost.

        A region still configured keeps its queues and its tokens (capped at the new
        burst). A region no longer configured hands its queued alerts, with their waiting
        time, to the lane unknown regions now go to.
        """
        self._policy = policy
        self._high_priority = frozenset(normalize_alert_code(c) for c in policy.high_priority_codes)
        old = self._lanes
        lanes: dict[str, _Lane[T]] = {}
        for name, capacity in policy.regions.items():
            lane = old.pop(name, None) or _Lane(name, capacity)
            lane.configure(capacity)
            lanes[name] = lane
        self._lanes = lanes
        self._fallback = (
            lanes[policy.unknown_region] if policy.unknown_region is not None else self._unlimited
        )
        for lane in old.values():
            self._fallback.priority.extend(lane.priority)
            self._fallback.normal.extend(lane.normal)

    def is_high_priority(self, alert_code: str) -> bool:
        """Whether alert_code is in the policy's high-priority set (excluded codes are the
        caller's to add: `priority = guard.is_excluded(c) or gate.is_high_priority(c)`)."""
        return normalize_alert_code(alert_code) in self._high_priority

    def offer(self, region: str | None, item: T, priority: bool, now_s: float) -> bool:
        """Queue item for region; False if that queue is full and the item was NOT queued.

        On False the caller keeps the item, stops consuming, polls, and offers it again.
        """
        lane = self._lanes.get(region) if region is not None else None
        if lane is None:
            lane = self._fallback
        if priority:
            if len(lane.priority) >= lane.max_priority:
                self._refused += 1
                return False
            lane.priority.append((now_s, item))
        else:
            if len(lane.normal) >= lane.max_normal:
                self._refused += 1
                return False
            lane.normal.append((now_s, item))
        return True

    def take(self, region: str | None, priority: bool, now_s: float) -> str | None:
        """Let one alert of `region` pass at once, without queueing it, if it would not
        overtake an alert of its rank or above that waits and a token is free (taken).
        Returns the lane's name ("unlimited" for the unlimited lane), or None: then `offer`
        it. The fast path while a region is under its capacity; the rate bound holds."""
        lane = self._lanes.get(region) if region is not None else None
        if lane is None:
            lane = self._fallback
        if lane.priority or (lane.normal and not priority):
            return None
        if lane is not self._unlimited:
            last_s = lane.last_s
            if last_s is None or now_s > last_s:
                # `refill` does nothing otherwise; a batch's alerts share one now_s, so the
                # call is skipped for all but the first (a call per alert on the hot path).
                lane.refill(now_s)
            if lane.tokens < 1.0:
                return None
            lane.tokens -= 1.0
        return lane.name

    def poll(self, now_s: float) -> list[ReleasedAlert[T]]:
        """Release what each region's capacity allows by now_s: priority alerts first, each
        queue in arrival order. Returns the released alerts with their waiting time."""
        out: list[ReleasedAlert[T]] = []
        for lane in self._lanes.values():
            if lane.priority or lane.normal:
                lane.refill(now_s)
                budget = int(lane.tokens)
                if budget:
                    released = _take(lane.priority, budget, lane.name, now_s, out)
                    released += _take(lane.normal, budget - released, lane.name, now_s, out)
                    lane.tokens -= released
            else:
                # Keep the bucket filling while idle, so an idle lane is full when used.
                lane.refill(now_s)
        unlimited = self._unlimited
        if unlimited.priority or unlimited.normal:
            _take(unlimited.priority, len(unlimited.priority), _UNLIMITED, now_s, out)
            _take(unlimited.normal, len(unlimited.normal), _UNLIMITED, now_s, out)
        return out

    def next_release_s(self, now_s: float) -> float | None:
        """When `poll` can next release something (now_s if it can now), or None if nothing
        waits. The caller's timer for the next poll: a poll at that time releases at least
        one alert (at the same capacity)."""
        if self._unlimited.priority or self._unlimited.normal:
            return now_s
        soonest: float | None = None
        for lane in self._lanes.values():
            if lane.priority or lane.normal:
                lane.refill(now_s)
                at = lane.token_at(now_s)
                if soonest is None or at < soonest:
                    soonest = at
        return soonest

    def depth(self, region: str | None) -> int:
        """Alerts waiting in region's queues (the lane unknown regions go to, for None or
        an unconfigured name)."""
        lane = self._lane(region)
        return len(lane.priority) + len(lane.normal)

    def oldest_delay_s(self, region: str | None, now_s: float) -> float:
        """How long the longest-waiting alert of region has waited; 0.0 if none waits."""
        lane = self._lane(region)
        oldest = [q[0][0] for q in (lane.priority, lane.normal) if q]
        return max(0.0, now_s - min(oldest)) if oldest else 0.0

    def discard(self, keep: Callable[[T], bool]) -> int:
        """Remove every queued item for which keep(item) is False (they are another
        owner's now, e.g. after a Kafka rebalance); return how many went. Costs a pass over
        every queue: for rare events, not per alert."""
        gone = 0
        for lane in (*self._lanes.values(), self._unlimited):
            for name in ("priority", "normal"):
                queue: deque[tuple[float, T]] = getattr(lane, name)
                kept = deque(entry for entry in queue if keep(entry[1]))
                gone += len(queue) - len(kept)
                setattr(lane, name, kept)
        return gone

    def regions(self) -> Iterable[str]:
        """The configured region names, in policy order."""
        return tuple(self._lanes)

    @property
    def refused(self) -> int:
        """How many offers were refused because a queue was full, since the gate was built."""
        return self._refused

    def _lane(self, region: str | None) -> _Lane[T]:
        if region == _UNLIMITED:
            return self._unlimited
        lane = self._lanes.get(region) if region is not None else None
        return lane if lane is not None else self._fallback


def _take(
    queue: deque[tuple[float, T]],
    n: int,
    region: str,
    now_s: float,
    out: list[ReleasedAlert[T]],
) -> int:
    n = min(n, len(queue))
    popleft = queue.popleft
    for _ in range(n):
        offered_s, item = popleft()
        out.append(ReleasedAlert(item, max(0.0, now_s - offered_s), region))
    return n
