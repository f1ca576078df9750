"""GCRA rate limiting (Generic Cell Rate Algorithm), with its state kept in a `GcraStore`.

Pure: no I/O and no clock; `now_s` comes in as an argument. The algorithm (`Gcra`) does not
know where its state lives: it reads and writes one integer per key, the key's *theoretical
arrival time* (TAT), through the `GcraStore` Protocol. `MemoryGcraStore` keeps them in a
dict with bounded memory. (Strategy apart from storage, as in alisaifee/limits.)

The algorithm, for a limit of `rate_per_s` with a burst of `burst` requests: the emission
interval is `i = 1 / rate_per_s`. A request at `now_s` with stored TAT `tat` (or `now_s` if
the key is unknown or its TAT is in the past) is allowed when `now_s >= tat - (burst - 1) * i`;
then the key's TAT becomes `tat + i`. A denied request changes nothing, and may retry after
`tat - (burst - 1) * i - now_s` seconds. Over any window of `w` seconds at most
`rate_per_s * w + burst` requests of one key are allowed, and a key whose TAT is in the past
is in the same state as a key never seen, so forgetting it loses nothing.

Exact time. TATs are integers, in ticks of 2**-52 s (`TICKS_PER_S`), not float seconds. A
float near the Unix time 1.8e9 resolves 2.4e-7 s, so a float TAT was rounded at every
admitted request (`tat + i`), and over a few hundred requests at a high rate the roundings
added up to a hundredth of a request: the window bound failed (193 admitted where
192.99 were allowed). In ticks:

- `now_s` converts exactly: `now_s * 2**52` is a whole float for any `now_s` of 1 s or more
  (Unix or monotonic seconds); a smaller `now_s` is rounded up to a tick;
- the interval is rounded up to a whole tick, `ceil(2**52 / rate_per_s)`, and the tolerance
  `(burst - 1) * i` down, so the limiter is never looser than its rate: the window bound holds
  exactly in the times given (from 1 s on), with no slack. A stream spaced exactly
  `1 / rate_per_s` apart loses at most a tick (2.2e-16 s) a request to it;
- TATs are added and compared as integers: nothing rounds, however long a key stays limited.

The interval and tolerance are converted once per limit (a Gcra keeps up to 1024), not per
request. What the integers (about 83 bits) cost, measured by tests/bench/bench_throttling.py
against float TATs (CPython 3.11): about 50 ns more for an allowed request (430 ns in all),
about 300 ns more for a denied one, whose retry-after goes back to float seconds, rounded so
that a retry at `now_s + retry_after_s` is allowed (a float TAT had that for free), and 16
bytes more a key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Final, Protocol

__all__ = ["MAX_RETRY_AFTER_S", "TICKS_PER_S", "Gcra", "GcraStore", "MemoryGcraStore", "to_ticks"]

# The retry-after answered when nothing will ever be allowed (a rate of 0), and the most any
# answer says. A finite number, so it survives JSON, integer milliseconds and arithmetic that
# inf would poison; one hour is longer than any limit in force stays unchanged.
MAX_RETRY_AFTER_S = 3600.0

TICKS_PER_S: Final = 1 << 52
"""Ticks per second of the GCRA's integer time (a tick is 2**-52 s, about 2.2e-16 s)."""

# A power of two, so `now_s * _TICKS` and `ticks / _TICKS` are exact float operations.
_TICKS: Final = float(TICKS_PER_S)
_MAX_WAIT_TICKS: Final = int(MAX_RETRY_AFTER_S) * TICKS_PER_S
# Waits shorter than this many ticks (2 s) convert to float seconds exactly.
_EXACT_WAIT_TICKS: Final = 1 << 53

# The answers without a retry-after are shared constants: the hot path allocates no tuple.
_ALLOWED: tuple[bool, float] = (True, 0.0)
_DENY_ALL: tuple[bool, float] = (False, MAX_RETRY_AFTER_S)

_ceil = math.ceil
_nextafter = math.nextafter
_INF = math.inf

# The most limits a Gcra keeps converted to ticks (see Gcra._limits).
_MAX_LIMITS: Final = 1024

# Evict this fraction of the keys at once when a store is full (see MemoryGcraStore).
_EVICT_FRACTION = 64


def to_ticks(now_s: float) -> int:
    """`now_s` (seconds) in the GCRA's ticks of 2**-52 s: exact for |now_s| >= 1 s, else
    rounded up to a tick. For a caller that calls a `GcraStore`'s `expire` itself."""
    return _ceil(now_s * _TICKS)


class GcraStore(Protocol):
    """Where `Gcra` keeps each key's theoretical arrival time (TAT), in integer ticks.

    A tick is 1 / TICKS_PER_S seconds; the store only holds and compares the integers.
    Contract (tests/unit/throttling/test_gcra.py runs it against every implementation):
    `get` returns what the last `set` stored for the key, or None if the key is unknown or
    was dropped; `expire(now_ticks)` drops every key whose TAT is at or before `now_ticks`
    and returns how many it dropped. A store may also drop keys on its own to bound its
    memory (that gives the dropped key a fresh burst, so it should prefer keys not set for
    longest).
    """

    def get(self, key: str) -> int | None:
        """The key's TAT in ticks, or None if unknown."""
        ...

    def set(self, key: str, tat_ticks: int) -> None:
        """Store the key's TAT in ticks."""
        ...

    def expire(self, now_ticks: int) -> int:
        """Drop the keys whose TAT is at or before now_ticks; returns how many were dropped."""
        ...

    def __len__(self) -> int:
        """How many keys are held."""
        ...


class MemoryGcraStore:
    """A `GcraStore` in a dict, with bounded memory.

    max_keys: the most keys held, default 100_000 (about 80 bytes each, plus the key
    string; tests/bench/bench_throttling.py). When a new key arrives and the store is full,
    the keys set least recently are dropped, 1/64 of max_keys at once (at least one): one
    walk of the dict per batch instead of one per key, which would be quadratic (a dict
    keeps deleted slots at the front of its entry table until it resizes). A dropped key
    whose TAT was still in the future gets a fresh burst; size max_keys above the number of
    keys limited at once.

    Call `Gcra.expire(now_s)` every few seconds: it drops idle keys (TAT in the past), which
    is exact, and costs one walk of the dict (about 40 ns a key).
    """

    __slots__ = ("_evict_count", "_max_keys", "_tats")

    def __init__(self, *, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError(
                f"max_keys must be at least 1, got {max_keys}; it bounds how many keys the "
                "rate limiter remembers"
            )
        self._max_keys = max_keys
        self._evict_count = max(1, max_keys // _EVICT_FRACTION)
        # key -> TAT, least recently set first (insertion order; `set` moves a key to the end).
        self._tats: dict[str, int] = {}

    def __len__(self) -> int:
        """How many keys are held."""
        return len(self._tats)

    def get(self, key: str) -> int | None:
        """The key's TAT in ticks, or None if unknown."""
        return self._tats.get(key)

    def set(self, key: str, tat_ticks: int) -> None:
        """Store the key's TAT, making it the most recently set key."""
        tats = self._tats
        # Pop and re-insert so that the dict's order is "least recently set first" and
        # eviction takes from the front.
        if tats.pop(key, None) is None and len(tats) >= self._max_keys:
            self._evict_oldest()
        tats[key] = tat_ticks

    def expire(self, now_ticks: int) -> int:
        """Drop the keys whose TAT is at or before now_ticks (exact: they hold no debt)."""
        tats = self._tats
        idle = [key for key, tat in tats.items() if tat <= now_ticks]
        for key in idle:
            del tats[key]
        return len(idle)

    def clear(self) -> None:
        """Forget every key."""
        self._tats.clear()

    def _evict_oldest(self) -> None:
        tats = self._tats
        for key in list(itertools.islice(tats, self._evict_count)):
            del tats[key]


class Gcra:
    """GCRA limiter: `decide(key, now_s, rate_per_s, burst)` per request, state in a store.

    store: where TATs live, default a new `MemoryGcraStore()`. The rate and burst come with
    each call, so one limiter serves keys with different limits, and a key's limit may change
    between calls (its TAT carries over; a lower rate is felt from the next request).
    """

    __slots__ = ("_get", "_limit_of", "_limits", "_set", "_store")

    def __init__(self, store: GcraStore | None = None) -> None:
        store = MemoryGcraStore() if store is None else store
        self._store: GcraStore = store
        # Bound once: two attribute lookups fewer per decision. A MemoryGcraStore's `get`
        # is its dict's: calling that directly saves a Python call (about 80 ns).
        self._get: Callable[[str], int | None] = (
            store._tats.get if isinstance(store, MemoryGcraStore) else store.get
        )
        self._set = store.set
        # rate_per_s -> (burst, interval, tolerance), both in ticks: converting a limit costs
        # more than deciding, and the limits in force are few. Cleared when full, never
        # replaced (`_limit_of` is its bound `get`).
        self._limits: dict[float, tuple[float, int, int]] = {}
        self._limit_of = self._limits.get

    @property
    def store(self) -> GcraStore:
        """The store holding the TATs (for sizing; call `expire` on the Gcra)."""
        return self._store

    def decide(self, key: str, now_s: float, rate_per_s: float, burst: float) -> tuple[bool, float]:
        """Decide one request of `key` at `now_s`; the state changes only if it is allowed.

        now_s: seconds, finite (Unix or monotonic; exact from 1 s on, see the module
        docstring). rate_per_s: the sustained limit, requests per second, >= 0 and finite;
        0 denies every request (retry-after MAX_RETRY_AFTER_S). burst: how many requests may
        arrive at once, >= 1 and finite (1 means evenly spaced). Returns (allowed,
        retry_after_s): retry_after_s is 0.0 when allowed, else how long until the same
        request would be allowed at the same limit (the float sum now_s + retry_after_s is
        allowed), at most MAX_RETRY_AFTER_S.
        Raises ValueError for a negative, infinite or NaN rate, or a burst under 1, infinite
        or NaN.
        """
        limit = self._limit_of(rate_per_s)
        # NaN is never a key and never equal: a NaN rate or burst reaches _limit, which raises.
        if limit is None or limit[0] != burst:
            limit = self._limit(rate_per_s, burst)
            if limit is None:
                return _DENY_ALL
        now = _ceil(now_s * _TICKS)
        tat = self._get(key)
        if tat is None or tat <= now:
            # Unknown or idle: the state of a new key, whose burst is whole.
            self._set(key, now + limit[1])
            return _ALLOWED
        allow_at = tat - limit[2]
        if now >= allow_at:
            self._set(key, tat + limit[1])
            return _ALLOWED
        # The retry-after: how long until allow_at, such that the float sum now_s +
        # retry_after_s is not rounded to before it (a retry then would be denied again).
        wait = allow_at - now
        if wait < _EXACT_WAIT_TICKS and now_s >= 1.0:
            wait_s = wait / _TICKS  # exact: a 53-bit integer over a power of two
            if wait_s <= now_s:
                # From 1 s on now_s is exactly `now` ticks, and at_s - now_s is exact
                # (Sterbenz): less than wait_s means the sum rounded down, to before
                # allow_at, and the next float is after it (about half the time).
                at_s = now_s + wait_s
                if at_s - now_s < wait_s:
                    return (False, _nextafter(at_s, _INF) - now_s)
                return (False, wait_s)
        elif wait >= _MAX_WAIT_TICKS:
            return _DENY_ALL  # also keeps a near-zero rate's huge TAT out of float range
        return (False, _retry_after_s(now_s, allow_at))

    def expire(self, now_s: float) -> int:
        """Drop the keys whose TAT is at or before now_s (they hold no debt: exact); returns
        how many. Call every few seconds to bound memory by the keys in use."""
        return self._store.expire(_ceil(now_s * _TICKS))

    def _limit(self, rate_per_s: float, burst: float) -> tuple[float, int, int] | None:
        """(burst, interval, tolerance in ticks) for the limit, cached; None for a rate of 0
        (deny everything). Raises ValueError for bad values."""
        if not 1.0 <= burst < math.inf:
            raise ValueError(
                f"burst must be a finite number of requests, at least 1, got {burst}; "
                "use 1 for evenly spaced requests"
            )
        if rate_per_s == 0.0:
            return None
        if not 0.0 < rate_per_s < math.inf:
            raise ValueError(
                f"rate_per_s must be a finite number of requests per second, 0 or more, got "
                f"{rate_per_s}; 0 denies every request"
            )
        interval = _interval_ticks(rate_per_s)
        # The tolerance (burst - 1) * interval, rounded down: exact for a whole burst, and
        # never looser than the real one for a fractional one.
        if burst.__class__ is int:
            tolerance = (int(burst) - 1) * interval
        else:
            extra, per = (burst - 1.0).as_integer_ratio()
            tolerance = interval * extra // per
        if len(self._limits) >= _MAX_LIMITS:
            self._limits.clear()
        limit = (burst, interval, tolerance)
        self._limits[rate_per_s] = limit
        return limit


def _retry_after_s(now_s: float, allow_at: int) -> float:
    """Seconds from now_s to the first float time at or after allow_at (ticks), at most
    MAX_RETRY_AFTER_S: the slow way, for a wait of 2 s or more or a now_s under 1 s."""
    at_s = allow_at / _TICKS
    if _ceil(at_s * _TICKS) < allow_at:
        at_s = _nextafter(at_s, _INF)
    wait_s = at_s - now_s
    # Inexact when at_s is over twice now_s: step up until the sum reaches at_s.
    while now_s + wait_s < at_s:
        wait_s = _nextafter(wait_s, _INF)
    return wait_s if wait_s < MAX_RETRY_AFTER_S else MAX_RETRY_AFTER_S


def _interval_ticks(rate_per_s: float) -> int:
    """The emission interval 1 / rate_per_s in whole ticks, rounded up: exact integer
    arithmetic on the float's own ratio, as it runs once per limit, not per request."""
    numerator, denominator = rate_per_s.as_integer_ratio()
    return -(-(denominator * TICKS_PER_S) // numerator)
