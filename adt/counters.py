"""What `AdtEngine` decides a request with: the count windows of one key, and the plan of
one (owner, SRV).

A key is what a threshold counts: (User, SRV), (User, "*") or a DCC-wide SRV. `KeyCounts`
holds the key's windows (at most MAX_WINDOWS_PER_SRV, shortest first) and two numbers that
let most requests skip them:

- `room`: a lower bound of min(limit - count - peer count) over the key's rules (at most
  255, a small int that costs no allocation to count down). Counts only grow by the
  requests counted here (time only takes events out of a window), so after an exact
  evaluation leaves room r, the next r - 1 requests counted pass every rule of the key
  without reading a window: `check` compares one number. The exact evaluation runs again
  when the room is used up, when the peers' counts grow, or when an exception window starts
  or ends (`from_s <= now_s < until_s` is where the limits it used hold).
- `pending`: requests counted while their time falls in the newest bucket of every window
  of the key (`lo <= tick < hi`), held back as one number and added to the windows when
  time leaves that span or someone reads them. A busy key costs one addition per request.

Counts, snapshots and decisions are exactly those of counting every request in every window
at once (`adt.windows.SlidingWindow`): the shortcuts only skip work whose result is known.

A `Plan` is compiled per (owner, SRV) once per configuration: the value checks of the SRV
(DCC-wide first, then the User's), with the bounds of a numeric rule unpacked so an
in-range number passes without a call, and the keys in decision order (User per SRV, User
all SRVs, DCC-wide).
"""

from __future__ import annotations

import math
from operator import sub

from adt.config import MAX_WINDOWS_PER_SRV
from adt.decision import Breach
from adt.exception_windows import LimitTimeline
from adt.table import CountRule
from adt.values import ValueCheck
from adt.windows import SlidingWindow, WindowSet

__all__ = ["EMPTY_PLAN", "KeyCounts", "Plan", "ValueEntry", "count_breaches", "value_entry"]

_FLOAT_MAX = float.fromhex("0x1.fffffffffffffp+1023")  # sys.float_info.max
_FAR = 2**62  # more room than any count can use: a key always has a rule, so never kept
# Room is kept at most this: CPython caches the ints up to 256, so `room -= 1` then costs no
# allocation; a key far from every limit is evaluated once per 255 requests instead.
_ROOM_CAP = 255
# (0,) * n for each number of rules a key may have (adt.config: MAX_WINDOWS_PER_SRV).
_NO_PEERS = [(0,) * n for n in range(MAX_WINDOWS_PER_SRV + 1)]

ValueEntry = tuple[ValueCheck, str, float, float]
"""(check, field, lo, hi): a number lo <= v <= hi passes `check` (see `value_entry`)."""


def value_entry(check: ValueCheck) -> ValueEntry:
    """`check` with the range a body value (an int or a float) passes without a call.

    Inside [min, max], with absent bounds taken as the largest finite floats, a number is
    finite and within a float's range, so `check.evaluate` would pass it too; anything else
    (NaN, an infinity, a bool, a string, a date rule's value) goes to `evaluate`.
    """
    if check.max_days_ahead is not None:
        return (check, check.field, math.inf, -math.inf)  # no number passes: always evaluate
    lo = -_FLOAT_MAX if check.min is None else check.min
    hi = _FLOAT_MAX if check.max is None else check.max
    return (check, check.field, lo, hi)


class KeyCounts(WindowSet):
    """The windows of one key with its rules (one per window, shortest first), the peers'
    counts of each (DCC-wide only) and the room described in the module docstring.

    owner_live: the owner's map of the keys that hold counts (`WindowSet.registry`).
    ranks: each rule's position in its table's `count_rules` (snapshots keep that order).
    changed: where the key is listed (`dirty` True) once a request is counted under it,
    until its owner takes a snapshot of it; None for a key nobody snapshots (DCC-wide),
    which is then dirty for good and never listed.
    """

    __slots__ = (
        "changed",
        "dirty",
        "from_s",
        "maxes",
        "peers",
        "plain",
        "ranks",
        "room",
        "rules",
        "timed",
        "timelines",
        "until_s",
    )

    def __init__(
        self,
        rules: tuple[CountRule, ...],
        windows: tuple[SlidingWindow, ...],
        ranks: tuple[int, ...],
        owner_live: dict[KeyCounts, None],
        changed: dict[KeyCounts, None] | None,
    ) -> None:
        super().__init__(windows, owner_live)  # windows kept from earlier values may count
        self.changed = changed
        self.dirty = changed is None
        self.rules = rules
        self.ranks = ranks
        # The peers' counts (DCC-wide keys: `AdtEngine.set_peer_counts` puts a list of its
        # own); zeros shared by every key with as many rules, so making a key allocates
        # fewer objects for the garbage collector to track.
        n = len(rules)
        self.peers: list[int] | tuple[int, ...] = _NO_PEERS[n] if n < len(_NO_PEERS) else (0,) * n
        # One pass over the rules: a User's keys are made on their first request.
        maxes = []
        timed = shadow = False
        for rule in rules:
            maxes.append(rule.max)
            if rule.raised:
                timed = True
            if rule.shadow:
                shadow = True
        self.timed = timed
        self.maxes = tuple(maxes)
        self.plain = not (timed or shadow)
        self.timelines: list[LimitTimeline | None] | None = None  # made on first use
        # Without counts, a rule leaves room for its max (an exception only raises it); with
        # counts kept from earlier values, nothing is known yet: the first check evaluates.
        self.room = 0 if self.live else min(_ROOM_CAP, *maxes)
        self.from_s = -math.inf
        self.until_s = math.inf

    def mark_changed(self) -> None:
        """List the key among its owner's changed keys (when not listed yet)."""
        if not self.dirty and self.changed is not None:
            self.dirty = True
            self.changed[self] = None

    def limit(self, i: int, now_s: float) -> tuple[int, str | None, float, float]:
        """Rule i's limit at `now_s`, the exception that raised it, and the span it holds."""
        rule = self.rules[i]
        if not rule.raised:
            return rule.max, None, -math.inf, math.inf
        timelines = self.timelines
        if timelines is None:
            timelines = self.timelines = [None] * len(self.rules)
        timeline = timelines[i]
        if timeline is None:  # built on first use: most rules never need it
            timeline = timelines[i] = LimitTimeline(rule.max, rule.raised)
        return timeline.at(now_s)


class Plan:
    """Everything a request of one (owner, SRV) is decided with: value checks, then keys
    in decision order; `timed` are the keys with exception windows."""

    __slots__ = ("keys", "timed", "values")

    def __init__(self, values: tuple[ValueEntry, ...], keys: tuple[KeyCounts, ...]) -> None:
        self.values = values
        self.keys = keys
        self.timed = tuple(key for key in keys if key.timed)


EMPTY_PLAN = Plan((), ())


def count_breaches(
    plan: Plan, now_s: float, tick: int, breach: Breach | None, shadow: list[Breach] | None
) -> tuple[Breach | None, list[Breach] | None]:
    """The exact count decision: every window of the plan read at `now_s`.

    breach, shadow: what the value checks found. Returns them with the counts' breaches
    added: the first enforcing breach is kept, every shadow breach is listed. A count
    breaches when this request would be number limit + 1 or more in the window. tick:
    int(now_s * buckets_per_window). Reads every key, and sets its `room` and the span its
    limits hold for, but a key that cannot breach (room left, limits in force) and whose
    windows would not move on at `now_s` (tick in its span, or before).
    """
    for key in plan.keys:
        if key.room > 0 and tick < key.hi and (not key.timed or key.from_s <= now_s < key.until_s):
            # Every rule of the key passes and reading would move no window: nothing to do
            # (a window moved on here would count differently should time step back).
            continue
        counts = key.counts(now_s)
        if breach is not None and key.plain:
            # A breach decides already and this key has no shadow rule and no exception to
            # report: only its room is left to know, min(max - count - peer), summed in C.
            left = min(map(sub, map(sub, key.maxes, counts), key.peers))
            key.room = left if left < _ROOM_CAP else _ROOM_CAP
            continue
        room = _FAR
        if key.timed:
            from_s = -math.inf
            until_s = math.inf
        i = 0
        for rule, local, peer in zip(key.rules, counts, key.peers, strict=True):
            count = local + peer
            if rule.raised:
                limit, by, start_s, end_s = key.limit(i, now_s)
                from_s = max(from_s, start_s)
                until_s = min(until_s, end_s)
            else:
                limit, by = rule.max, None
            i += 1
            left = limit - count
            if left < room:  # noqa: PLR1730 - a compare costs less than a call to min()
                room = left
            if left > 0:
                continue
            if not rule.shadow and breach is not None:
                continue  # only the first enforcing breach is reported: skip building this one
            found = rule.breach(count + 1, limit, by)
            if found.shadow:
                shadow = [found] if shadow is None else [*shadow, found]
            else:
                breach = found
        key.room = room if room < _ROOM_CAP else _ROOM_CAP
        if key.timed:
            key.from_s = from_s
            key.until_s = until_s
    return breach, shadow
