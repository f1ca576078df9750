"""GCRA rate limiting (Generic Cell Rate Algorithm), with its state kept in a `GcraStore`.

Pure: no I/O and no clock; `now_s` comes in as an argument. The algorithm (`Gcra`) does not
know where its state lives: it reads and writes one float per key, the key's *theoretical
arrival time* (TAT), through the `GcraStore` Protocol. `MemoryGcraStore` keeps them in a
dict with bounded memory. (Strategy apart from storage, as in alisaifee/limits.)

The algorithm, for a limit of `rate_per_s` with a burst of `burst` requests: the emission
interval is `i = 1 / rate_per_s`. A request at `now_s` with stored TAT `tat` (or `now_s` if
the key is unknown or its TAT is in the past) is allowed when `now_s >= tat - (burst - 1) * i`;
then the key's TAT becomes `tat + i`. A denied request changes nothing, and may retry after
`tat - (burst - 1) * i - now_s` seconds. Over any window of `w` seconds at most
`rate_per_s * w + burst` requests of one key are allowed, and a key whose TAT is in the past
is in the same state as a key never seen, so forgetting it loses nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol

__all__ = ["MAX_RETRY_AFTER_S", "Gcra", "GcraStore", "MemoryGcraStore"]

# The retry-after answered when nothing will ever be allowed (a rate of 0), and the most any
# answer says. A finite number, so it survives JSON, integer milliseconds and arithmetic that
# inf would poison; one hour is longer than any limit in force stays unchanged.
MAX_RETRY_AFTER_S = 3600.0

# The answers without a retry-after are shared constants: the hot path allocates no tuple.
_ALLOWED: tuple[bool, float] = (True, 0.0)
_DENY_ALL: tuple[bool, float] = (False, MAX_RETRY_AFTER_S)

# Evict this fraction of the keys at once when a store is full (see MemoryGcraStore).
_EVICT_FRACTION = 64


class GcraStore(Protocol):
    """Where `Gcra` keeps each key's theoretical arrival time (TAT), in seconds.

    Contract (tests/unit/throttling/test_gcra.py runs it against every implementation):
    `get` returns what the last `set` stored for the key, or None if the key is unknown or
    was dropped; `expire(now_s)` drops every key whose TAT is at or before `now_s` and returns
    how many it dropped. A store may also drop keys on its own to bound its memory (that
    gives the dropped key a fresh burst, so it should prefer keys not set for longest).
    """

    def get(self, key: str) -> float | None:
        """The key's TAT in seconds, or None if unknown."""
        ...

    def set(self, key: str, tat_s: float) -> None:
        """Store the key's TAT in seconds."""
        ...

    def expire(self, now_s: float) -> int:
        """Drop the keys whose TAT is at or before now_s; returns how many were dropped."""
        ...

    def __len__(self) -> int:
        """How many keys are held."""
        ...


class MemoryGcraStore:
    """A `GcraStore` in a dict, with bounded memory.

    max_keys: the most keys held, default 100_000 (about 60 bytes each, plus the key
    string; tests/bench/bench_throttling.py). When a new key arrives and the store is full,
    the keys set least recently are dropped, 1/64 of max_keys at once (at least one): one
    walk of the dict per batch instead of one per key, which would be quadratic (a dict
    keeps deleted slots at the front of its entry table until it resizes). A dropped key
    whose TAT was still in the future gets a fresh burst; size max_keys above the number of
    keys limited at once.

    Call `expire(now_s)` every few seconds: it drops idle keys (TAT in the past), which is
    exact, and costs one walk of the dict (about 40 ns a key).
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
        self._tats: dict[str, float] = {}

    def __len__(self) -> int:
        """How many keys are held."""
        return len(self._tats)

    def get(self, key: str) -> float | None:
        """The key's TAT in seconds, or None if unknown."""
        return self._tats.get(key)

    def set(self, key: str, tat_s: float) -> None:
        """Store the key's TAT, making it the most recently set key."""
        tats = self._tats
        # Pop and re-insert so that the dict's order is "least recently set first" and
        # eviction takes from the front.
        if tats.pop(key, None) is None and len(tats) >= self._max_keys:
            self._evict_oldest()
        tats[key] = tat_s

    def expire(self, now_s: float) -> int:
        """Drop the keys whose TAT is at or before now_s (exact: they hold no debt)."""
        tats = self._tats
        idle = [key for key, tat in tats.items() if tat <= now_s]
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

    __slots__ = ("_get", "_set", "_store")

    def __init__(self, store: GcraStore | None = None) -> None:
        store = MemoryGcraStore() if store is None else store
        self._store: GcraStore = store
        # Bound once: two attribute lookups fewer per decision. A MemoryGcraStore's `get`
        # is its dict's: calling that directly saves a Python call (about 80 ns).
        self._get: Callable[[str], float | None] = (
            store._tats.get if isinstance(store, MemoryGcraStore) else store.get
        )
        self._set = store.set

    @property
    def store(self) -> GcraStore:
        """The store holding the TATs (for `expire` and for sizing)."""
        return self._store

    def decide(self, key: str, now_s: float, rate_per_s: float, burst: float) -> tuple[bool, float]:
        """Decide one request of `key` at `now_s`; the state changes only if it is allowed.

        rate_per_s: the sustained limit, requests per second, >= 0; 0 denies every request
        (retry-after MAX_RETRY_AFTER_S). burst: how many requests may arrive at once, >= 1
        (1 means evenly spaced). Both must be finite: that is not checked, to keep the hot
        path short (an infinite limit is no limit; do not call). Returns (allowed,
        retry_after_s): retry_after_s is 0.0 when allowed, else how long until the same
        request would be allowed at the same limit, at most MAX_RETRY_AFTER_S.
        Raises ValueError for a negative or NaN rate, or a burst under 1.
        """
        # One test for the common case; it is also False for NaN, so bad values reach
        # _unusual below instead of being silently allowed.
        if rate_per_s > 0.0 and burst >= 1.0:
            interval_s = 1.0 / rate_per_s
            tat = self._get(key)
            if tat is None or tat < now_s:
                tat = now_s
            allow_at = tat - (burst - 1.0) * interval_s
            if now_s >= allow_at:
                self._set(key, tat + interval_s)
                return _ALLOWED
            wait_s = allow_at - now_s
            return (False, wait_s if wait_s < MAX_RETRY_AFTER_S else MAX_RETRY_AFTER_S)
        return _unusual(rate_per_s, burst)


def _unusual(rate_per_s: float, burst: float) -> tuple[bool, float]:
    if not burst >= 1.0:
        raise ValueError(
            f"burst must be at least 1 request, got {burst}; use 1 for evenly spaced requests"
        )
    if rate_per_s == 0.0:
        return _DENY_ALL
    raise ValueError(
        f"rate_per_s must be 0 or more requests per second, got {rate_per_s}; "
        "0 denies every request"
    )
