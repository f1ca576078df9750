"""Bucketed sliding-window counter: bounded memory per key, exact at bucket granularity.

A window of `window_s` seconds is cut into `buckets` buckets (default 60) of
`g = window_s / buckets` seconds each. Bucket `k` holds the events with
`k * g <= t < (k + 1) * g`, i.e. `k = floor(t * buckets / window_s)`. The count at time
`now` is the sum of the current bucket and the `buckets` before it: every event at or after
the start of bucket `k - buckets`. So the counted span is at least `window_s` and at most
`window_s + g`: no event of the last `window_s` seconds is ever missed (a threshold is never
passed in any true sliding window), and an event may be counted for up to `g` seconds
longer than `window_s` (the price of bounded memory). With 60 buckets: a minute window has
1 s granularity, an hour 1 min, a day 24 min, 31 days 12.4 h.

Memory: `buckets + 1` unsigned 32-bit counters in one array (324 bytes with 60 buckets),
allocated on the first event and freed by `release_if_idle` once the window has emptied,
plus about 100 bytes for the object; measured by tests/bench/bench_adt.py at 356 bytes per
counting window on top of the empty one (tracemalloc). A bucket holds up to 2**32 - 1
events: with a 31-day window a bucket is 12.4 h, far above any SRV's rate.

Time may step back a little (records from several partitions): a count at an earlier time
answers the count at the latest time seen (a slight over-count, never an under-count), and
an event at an earlier time goes into its own bucket while that bucket is still in the
window (ignored once it has left the window, where it could no longer be counted).
"""

from __future__ import annotations

from array import array

__all__ = ["DEFAULT_BUCKETS", "MAX_BUCKET_COUNT", "SlidingWindow", "bucket_index"]

DEFAULT_BUCKETS = 60
MAX_BUCKET_COUNT = 2**32 - 1
"""A bucket holds an unsigned 32-bit count."""

_TYPECODE = "I"
_zeros: dict[int, array[int]] = {}


def _zero_array(size: int) -> array[int]:
    zeros = _zeros.get(size)
    if zeros is None:
        zeros = _zeros[size] = array(_TYPECODE, bytes(array(_TYPECODE).itemsize * size))
    return zeros


def bucket_index(now_s: float, window_s: int, buckets: int) -> int:
    """The bucket that time `now_s` falls in: floor(now_s * buckets / window_s).

    Computed as int(now_s * buckets) // window_s, which equals it exactly whenever the
    float product is exact (and is integer arithmetic after one float multiply).
    """
    return int(now_s * buckets) // window_s


class SlidingWindow:
    """Event count over the last `window_s` seconds, at `window_s / buckets` granularity.

    window_s: window length, seconds (>= 1). buckets: buckets per window, default 60.
    """

    __slots__ = (
        "_buckets",
        "_counts",
        "_edge",
        "_head",
        "_size",
        "_slot",
        "_start",
        "_total",
        "_window_s",
    )

    def __init__(self, window_s: int, buckets: int = DEFAULT_BUCKETS) -> None:
        if window_s < 1 or buckets < 1:
            raise ValueError(
                f"window_s and buckets must be >= 1, got window_s={window_s} buckets={buckets}"
            )
        self._window_s = window_s
        self._buckets = buckets
        self._size = buckets + 1
        # None until the first event: a configured but unused key costs no array.
        self._counts: array[int] | None = None
        self._total = 0  # sum of self._counts, kept so a count is O(1)
        self._set_head(0)

    def _set_head(self, k: int) -> None:
        self._head = k  # index of the newest bucket
        self._slot = k % self._size  # its slot in self._counts
        # Where bucket k + 1 starts, in units of now_s * buckets. For x = now_s * buckets >= 0
        # and an integer E, int(x) >= E exactly when x >= E, so `x >= edge` is the same test
        # as bucket_index(now_s) > k, without the int conversion and the division: the hot
        # path is then one multiply and one compare. Exact as a float below 2**53.
        self._start = float(k * self._window_s)  # where bucket k starts
        self._edge = float((k + 1) * self._window_s)

    @property
    def window_s(self) -> int:
        """Window length, seconds."""
        return self._window_s

    @property
    def buckets(self) -> int:
        """Buckets per window."""
        return self._buckets

    @property
    def granularity_s(self) -> float:
        """Bucket width, seconds: window_s / buckets."""
        return self._window_s / self._buckets

    @property
    def allocated(self) -> bool:
        """True while the counter array exists (after an event, until released when idle)."""
        return self._counts is not None

    def count(self, now_s: float) -> int:
        """Events counted in the window ending at `now_s` (see the module docstring)."""
        counts = self._counts
        if counts is None:
            return 0
        x = now_s * self._buckets
        if x >= self._edge:
            self._advance(counts, int(x) // self._window_s)
        return self._total

    def add(self, now_s: float, n: int = 1) -> None:
        """Count `n` events at `now_s`."""
        x = now_s * self._buckets
        counts = self._counts
        if counts is not None and self._start <= x < self._edge:
            # In the newest bucket: the common case (check() has just advanced the window).
            counts[self._slot] += n
            self._total += n
            return
        if counts is None:
            counts = self._counts = array(_TYPECODE, _zero_array(self._size))
            self._set_head(int(x) // self._window_s)
            slot = self._slot
        elif x >= self._edge:
            self._advance(counts, int(x) // self._window_s)
            slot = self._slot
        else:
            k = int(x) // self._window_s
            if k <= self._head - self._size:
                return  # older than the window: it would already have expired
            slot = k % self._size
        counts[slot] += n
        self._total += n

    def _advance(self, counts: array[int], k: int) -> None:
        size = self._size
        head = self._head
        if k - head >= size:
            counts[:] = _zero_array(size)
            self._total = 0
        elif k == head + 1:  # the usual step: one bucket on
            slot = k % size
            self._total -= counts[slot]
            counts[slot] = 0
        else:
            total = self._total
            for j in range(head + 1, k + 1):
                slot = j % size
                total -= counts[slot]
                counts[slot] = 0
            self._total = total
        self._set_head(k)

    def release_if_idle(self, now_s: float) -> bool:
        """Free the array when the window holds no event at `now_s`; True if freed."""
        if self._counts is not None and self.count(now_s) == 0:
            self._counts = None
            return True
        return False

    def clear(self) -> None:
        """Forget every event."""
        self._counts = None
        self._total = 0

    def snapshot(self, now_s: float) -> tuple[int, tuple[tuple[int, int], ...]]:
        """(newest bucket index, the non-empty buckets as (bucket index, count)) at `now_s`."""
        if self._counts is None or self.count(now_s) == 0:
            return (bucket_index(now_s, self._window_s, self._buckets), ())
        counts = self._counts
        size = self._size
        head = self._head
        return (
            head,
            tuple(
                (j, counts[j % size]) for j in range(head - size + 1, head + 1) if counts[j % size]
            ),
        )

    def restore(self, head: int, buckets: tuple[tuple[int, int], ...] | list[list[int]]) -> None:
        """Replace the counts with a `snapshot()` result; raise ValueError if it is not one.

        Buckets outside the window ending at bucket `head` are refused, as are counts
        outside 0..2**32-1, so a corrupt snapshot cannot plant an unbounded count.
        """
        size = self._size
        counts = array(_TYPECODE, _zero_array(size))
        total = 0
        for pair in buckets:
            if len(pair) != 2:
                raise ValueError(f"bucket {pair!r} is not a (bucket index, count) pair")
            j, n = pair
            if not head - size < j <= head:
                raise ValueError(
                    f"bucket {j} is outside the window ending at bucket {head} "
                    f"({self._buckets} buckets of {self.granularity_s:g} s)"
                )
            if not 0 <= n <= MAX_BUCKET_COUNT:
                raise ValueError(f"bucket {j} count {n} is outside 0..{MAX_BUCKET_COUNT}")
            if counts[j % size]:
                raise ValueError(f"bucket {j} appears twice")
            counts[j % size] = n
            total += n
        self._counts = counts if total else None
        self._set_head(head)
        self._total = total
