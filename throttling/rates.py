"""Recent rate per key: an exponentially decayed counter, with bounded memory.

Pure: no I/O and no clock; `now_s` comes in as an argument. `RateMeter.add(key, now_s, n)`
counts events; `rate(key, now_s)` is the key's recent rate in events per second.

What it computes. Each key holds a decayed count `S(t) = sum of n_i * exp(-(t - t_i) / tau)`
over its events (n_i events at time t_i), and its rate is `S(t) / tau`. For a steady rate
`x` the estimate tends to `x`; after a step from `x0` to `x1` it moves as
`x0 + (x1 - x0) * (1 - exp(-t / tau))` (63% of the way after one tau).

Why a decayed counter and not a sliding window of N sub-buckets:

- two floats per key (the count and the time of the last update) instead of N buckets and a
  cursor: a few hundred bytes less per key, with nothing to rotate;
- no steps when a sub-bucket falls out of the window: the estimate is smooth, so a
  threshold on it (SECMP0067's operating threshold) is crossed once per change of load
  rather than once per bucket boundary;
- it is linear: the sum of the Users' rates is the rate of their sum, so a router's total is
  the sum of its Users' meters, and a system's total the sum of the routers' reports;
- its lag has a closed form used by throttling/traffic.py: while the true rate steps from
  `x0` to `x1` across a threshold `T`, the events counted above `T` before the estimate
  reaches `T` are `tau * (x1 - T) * ln((x1 - x0) / (x1 - T))`, at most `tau * (x1 - x0) / e`;
- an `add` at the same `now_s` as the key's last one is a plain addition: a batch of
  requests decided with one timestamp costs no `exp`.

A window's advantage, an exact count over the last W seconds, is not needed here: the rate
feeds a control loop, not a quota.

Bounded memory: a key whose rate has decayed under `floor_per_s` is idle and `expire`
drops it (a single event is forgotten after `tau * ln(1 / (floor_per_s * tau))`, 4.6 s with
the defaults); and at most `max_keys` keys are held (see `RateMeter`).
"""

from __future__ import annotations

import itertools
import math

__all__ = ["RateMeter"]

_exp = math.exp

# Evict this fraction of the keys at once when the meter is full (see RateMeter).
_EVICT_FRACTION = 64


class RateMeter:
    """Recent event rate per key, events per second (exponentially decayed count).

    tau_s: the time constant in seconds, default 1.0: how far back "recent" reaches (an
    event's weight halves every 0.69 tau). floor_per_s: a key whose rate is under this is
    idle and dropped by `expire`, default 0.01. max_keys: the most keys held, default
    100_000 (about 95 bytes each, plus the key string; tests/bench/bench_throttling.py). When a
    new key arrives and the meter is full, idle keys are dropped first; if that is not
    enough, the keys updated least recently are dropped, 1/64 of max_keys at once (one walk
    of the dict per batch, not per key, which would be quadratic).

    Time should not go backwards (use a monotonic clock): an `add` or a `rate` at a time
    before the key's last update is taken as at that update, without decay.
    """

    __slots__ = ("_evict_count", "_floor_count", "_inv_tau", "_max_keys", "_state", "_tau_s")

    def __init__(
        self, *, tau_s: float = 1.0, floor_per_s: float = 0.01, max_keys: int = 100_000
    ) -> None:
        if not (tau_s > 0.0 and math.isfinite(tau_s)):
            raise ValueError(
                f"tau_s must be a finite number of seconds above 0, got {tau_s}; "
                "1.0 means about the last second"
            )
        if not (floor_per_s > 0.0 and math.isfinite(floor_per_s)):
            raise ValueError(
                f"floor_per_s must be a finite rate above 0, got {floor_per_s}; keys slower "
                "than this are forgotten"
            )
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._tau_s = tau_s
        self._inv_tau = 1.0 / tau_s
        # A key is idle when S(t) / tau < floor_per_s, i.e. when S(t) < floor_per_s * tau.
        self._floor_count = floor_per_s * tau_s
        self._max_keys = max_keys
        self._evict_count = max(1, max_keys // _EVICT_FRACTION)
        # key -> (decayed count S at time t, t); least recently updated first, because
        # `add` pops and re-inserts (which costs what a get and a set would).
        self._state: dict[str, tuple[float, float]] = {}

    @property
    def tau_s(self) -> float:
        """The time constant in seconds."""
        return self._tau_s

    def __len__(self) -> int:
        """How many keys are held."""
        return len(self._state)

    def add(self, key: str, now_s: float, n: float = 1) -> None:
        """Count n events (default 1) of `key` at now_s."""
        state = self._state
        old = state.pop(key, None)
        if old is None:
            if len(state) >= self._max_keys:
                self._make_room(now_s)
            state[key] = (n, now_s)
            return
        count, at_s = old
        if now_s > at_s:
            state[key] = (count * _exp((at_s - now_s) * self._inv_tau) + n, now_s)
        else:
            state[key] = (count + n, at_s)

    def rate(self, key: str, now_s: float) -> float:
        """The key's recent rate at now_s, events per second; 0.0 for an unknown key."""
        old = self._state.get(key)
        if old is None:
            return 0.0
        count, at_s = old
        if now_s > at_s:
            count *= _exp((at_s - now_s) * self._inv_tau)
        return count * self._inv_tau

    def rates(self, now_s: float) -> dict[str, float]:
        """Every held key's recent rate at now_s, events per second (a new dict)."""
        inv_tau = self._inv_tau
        return {
            key: (count * _exp((at_s - now_s) * inv_tau) if now_s > at_s else count) * inv_tau
            for key, (count, at_s) in self._state.items()
        }

    def total(self, now_s: float) -> float:
        """The sum of every held key's rate at now_s, events per second."""
        return math.fsum(self.rates(now_s).values())

    def expire(self, now_s: float) -> int:
        """Drop the keys whose rate at now_s is under floor_per_s; returns how many."""
        state = self._state
        floor = self._floor_count
        inv_tau = self._inv_tau
        idle = [
            key
            for key, (count, at_s) in state.items()
            if (count * _exp((at_s - now_s) * inv_tau) if now_s > at_s else count) < floor
        ]
        for key in idle:
            del state[key]
        return len(idle)

    def clear(self) -> None:
        """Forget every key."""
        self._state.clear()

    def _make_room(self, now_s: float) -> None:
        if self.expire(now_s):
            return
        state = self._state
        for key in list(itertools.islice(state, self._evict_count)):
            del state[key]
