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

Integer time: `tick = int(now_s * buckets)` is computed once per request and serves every
window (bucket index `tick // window_s`), so a window's newest bucket is the tick span
`lo <= tick < hi`. A `WindowSet` counts the several windows of one key (a (User, SRV)
with its minute, hour and day) together: while time stays in the newest bucket of all of
them, it holds requests back as one number and adds them to the windows later, so a busy
key costs one addition per request; a request outside that span goes into a short log of
ticks, counted a few at once (`SlidingWindow.add_ticks`) before anyone reads the windows,
so a key that sees a request every few seconds does not move its windows on for each one.
Moving a window on
by several buckets clears them with slice operations, not one bucket at a time.
"""

from __future__ import annotations

from array import array
from itertools import compress
from typing import Any

__all__ = [
    "DEFAULT_BUCKETS",
    "LOG_MAX",
    "MAX_BUCKET_COUNT",
    "NO_SPAN",
    "SlidingWindow",
    "WindowSet",
    "bucket_index",
    "head_span",
]

DEFAULT_BUCKETS = 60
MAX_BUCKET_COUNT = 2**32 - 1
"""A bucket holds an unsigned 32-bit count."""

NO_SPAN = (0, 0)
"""A tick span no time falls in: events cannot be held back (some window has no array)."""

_TYPECODE = "I"
_zeros: dict[int, array[int]] = {}
_BIG_ENDIAN = array(_TYPECODE, [1]).tobytes()[0] == 0  # snapshots hold little-endian counts
_TYPECODE_OF_WIDTH = {1.0: "B", 2.0: "H", 4.0: _TYPECODE}
_RECENT = 4  # buckets `_pairs` looks at one by one before it scans them all
_EMPTY_BUCKET = bytes(array(_TYPECODE).itemsize)  # an empty bucket's bytes


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
        "_head",
        "_hi",
        "_lo",
        "_size",
        "_slot",
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
        # _set_head(0), inlined: a User's windows are made on its keys' first requests.
        self._head = self._slot = self._lo = 0
        self._hi = window_s

    def _set_head(self, k: int) -> None:
        self._head = k  # index of the newest bucket
        self._slot = k % self._size  # its slot in self._counts
        # The ticks (int(now_s * buckets)) of bucket k: lo <= tick < hi. For x = now_s *
        # buckets >= 0 and an integer E, int(x) >= E exactly when x >= E (and Python compares
        # a float with an int exactly), so `x >= hi` is the same test as bucket_index(now_s)
        # > k without the int conversion and the division.
        self._lo = k * self._window_s
        self._hi = self._lo + self._window_s

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
        if x >= self._hi:
            self._advance(counts, int(x) // self._window_s)
        return self._total

    def add(self, now_s: float, n: int = 1) -> None:
        """Count `n` events at `now_s`."""
        x = now_s * self._buckets
        counts = self._counts
        if counts is not None and self._lo <= x < self._hi:
            # In the newest bucket: the common case (check() has just advanced the window).
            counts[self._slot] += n
            self._total += n
            return
        self.add_tick(int(x), n)

    def add_tick(self, tick: int, n: int = 1) -> None:
        """Count `n` events at `tick` = int(now_s * buckets) (the same as `add(now_s, n)`)."""
        k = tick // self._window_s
        counts = self._counts
        if counts is None:
            counts = self._counts = array(_TYPECODE, _zero_array(self._size))
            self._set_head(k)
            slot = self._slot
        elif k > self._head:
            self._advance(counts, k)
            slot = self._slot
        elif k == self._head:
            slot = self._slot
        else:
            if k <= self._head - self._size:
                return  # older than the window: it would already have expired
            slot = k % self._size
        counts[slot] += n
        self._total += n

    def add_ticks(self, ticks: array[int] | list[int], first: int, last: int) -> None:
        """Count one event at each of `ticks` (ints, int(now_s * buckets)), in that order:
        the same as `add_tick(t)` for each, with less work per event. first, last: the
        smallest and the largest of `ticks` (at least one).

        Why it is the same: one after another, the newest bucket ends at H, the newest of
        the old head and every event's bucket, and an event in bucket k stays counted
        exactly when k > H - (buckets + 1) (one in an older bucket was ignored on arrival, or
        left the window as time moved on to H). So: move on to H once, then add the events
        still in the window, each to its slot.
        """
        window_s = self._window_s
        n = len(ticks)
        counts = self._counts
        if counts is not None and self._lo <= first and last < self._hi:
            counts[self._slot] += n  # every event in the newest bucket: the usual case
            self._total += n
            return
        top = last // window_s
        if counts is None:
            counts = self._counts = array(_TYPECODE, _zero_array(self._size))
            self._set_head(top)
        elif top > self._head:
            self._advance(counts, top)
        size = self._size
        floor = self._head - size  # buckets at or below it are out of the window
        if first // window_s > floor:  # every event is in the window: no test per event
            for t in ticks:
                counts[t // window_s % size] += 1
            self._total += n
            return
        added = 0
        for t in ticks:
            k = t // window_s
            if k > floor:
                counts[k % size] += 1
                added += 1
        self._total += added

    def _advance(self, counts: array[int], k: int) -> None:
        """Make bucket k (> head) the newest: the buckets between leave the window."""
        total = self._total
        if total:  # else every bucket is 0 already: nothing to clear
            size = self._size
            d = k - self._head
            if d >= size:
                counts[:] = _zero_array(size)
                total = 0
            elif d == 1:  # the usual step: one bucket on
                slot = k % size
                total -= counts[slot]
                counts[slot] = 0
            else:  # d buckets on: their slots, one or two runs of the ring, cleared in C
                a = (self._head + 1) % size
                e = a + d
                if e <= size:
                    gone = sum(counts[a:e])
                    if gone:
                        counts[a:e] = _zero_array(d)
                else:
                    e -= size
                    gone = sum(counts[a:]) + sum(counts[:e])
                    if gone:
                        counts[a:] = _zero_array(size - a)
                        counts[:e] = _zero_array(e)
                total -= gone
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
        counts = self._counts
        if counts is None or self.count(now_s) == 0:
            return (bucket_index(now_s, self._window_s, self._buckets), ())
        head = self._head
        return head, self._pairs(counts, head)

    def _pairs(self, counts: array[int], head: int) -> tuple[tuple[int, int], ...]:
        size = self._size
        newest = self._slot
        # Usually the counts sit in the newest few buckets: walk back from the newest until
        # the buckets seen hold the whole total (at most _RECENT of them), newest first.
        total = self._total
        found: list[tuple[int, int]] = []
        for back in range(min(_RECENT, size)):
            c = counts[newest - back]  # a negative index wraps round the ring
            if c:
                found.append((head - back, c))
                total -= c
                if not total:
                    found.reverse()
                    return tuple(found)
        # compress finds the occupied slots in C (small, cached ints); slot s holds bucket
        # head - (newest - s) % size, and sorting orders them oldest first.
        return tuple(
            sorted([(head - (newest - s) % size, counts[s]) for s in compress(range(size), counts)])
        )

    def snapshot_compact(
        self, now_s: float, max_pairs: int = 8
    ) -> tuple[int, tuple[tuple[int, int], ...], bytes]:
        """`snapshot` for a record: (head, pairs, b"") while at most `max_pairs` buckets
        hold counts, else (head, (), every bucket's count from head - buckets to head,
        oldest first): a few copies in C instead of Python work per bucket. The counts are
        unsigned little-endian integers of 1, 2 or 4 bytes, the narrowest that holds the
        largest (the length tells which). Restore them with `restore_counts`."""
        counts = self._counts
        if counts is None or self.count(now_s) == 0:
            return bucket_index(now_s, self._window_s, self._buckets), (), b""
        head = self._head
        total = self._total
        if total <= max_pairs:
            return head, self._pairs(counts, head), b""
        size = self._size
        raw = counts.tobytes()
        # The buckets are counted and measured in the bytes, in C (counts.count(0) or
        # max(counts) make an int of every bucket: a few µs a window). An empty bucket is 4
        # zero bytes, and a run of n zero bytes holds floor(n / 4) matches of _EMPTY_BUCKET
        # (counted from the left, without overlap), at least as many as the empty buckets in
        # it: so size minus the matches is at most the non-empty buckets. Above max_pairs,
        # the window is written whole; else the pairs are listed, and their number decides.
        if size - raw.count(_EMPTY_BUCKET) <= max_pairs:
            pairs = self._pairs(counts, head)
            if len(pairs) <= max_pairs:
                return head, pairs, b""
        oldest = (head + 1) % size
        if _BIG_ENDIAN:
            ordered = counts[oldest:] + counts[:oldest]
            ordered.byteswap()
            raw = ordered.tobytes()
        else:  # the ring's bytes, oldest bucket first
            cut = oldest * len(_EMPTY_BUCKET)
            raw = raw[cut:] + raw[:cut]
        # Narrower counts are the low bytes of each little-endian 4-byte one: sliced in C.
        # No bucket holds more than the total, so a small total needs no further look; else
        # every count is below 256 when each one's three upper bytes are zero, and below
        # 65,536 when its two upper bytes are: the zero bytes at those places are counted.
        low = raw[::4]
        if total < 256:
            return head, (), low
        upper = raw.count(0) - low.count(0)  # zero bytes at places 1, 2 and 3
        if upper == 3 * size:
            return head, (), low
        if upper - raw[1::4].count(0) == 2 * size:  # zero bytes at places 2 and 3
            return head, (), array("H", raw)[::2].tobytes()  # bytes 0 and 1 of each
        return head, (), raw

    def restore_counts(self, head: int, data: bytes) -> None:
        """Replace the counts with the bytes of `snapshot_compact`; ValueError if they are
        not `buckets + 1` counts of 1, 2 or 4 bytes."""
        size = self._size
        typecode = _TYPECODE_OF_WIDTH.get(len(data) / size) if data else None
        if typecode is None:
            raise ValueError(
                f"the counts are {len(data)} bytes, not {size} counts of 1, 2 or 4 bytes"
            )
        ordered = array(typecode)
        ordered.frombytes(data)
        if _BIG_ENDIAN:
            ordered.byteswap()
        if typecode != _TYPECODE:
            ordered = array(_TYPECODE, ordered)
        oldest = (head + 1) % size
        # ordered[i] is bucket head - size + 1 + i, whose slot is (oldest + i) % size.
        counts = ordered[size - oldest :] + ordered[: size - oldest]
        total = sum(counts)
        self._counts = counts if total else None
        self._set_head(head)
        self._total = total

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


LOG_MAX = 16
"""Requests a `WindowSet` logs while they fall outside its span before it counts them."""
_LOG_TYPECODE = "q"


class WindowSet:
    """The windows of one key (e.g. a (User, SRV) over a minute, an hour and a day), counted
    together, with requests held back while their time is in every window's newest bucket,
    and logged for a while when it is not.

    windows: at least one, with the same buckets per window. `pending` requests are held
    back; their ticks all fell in `lo <= tick < hi`, the newest bucket of every window
    (NO_SPAN while a window has no array, or requests are logged). `log`: None, or the
    ticks of requests that fell outside the span, in arrival order (at most LOG_MAX), to
    be counted after the pending ones (an array of 64-bit ints: no object per request for
    the garbage collector to visit). A key that sees a request every few seconds leaves
    the newest bucket of its shortest window every time: moving its windows on for each
    request costs some 2 us in Python, while counting a few logged requests at once
    (`SlidingWindow.add_ticks`) costs a fraction of that per request, as the longer windows
    usually take them all in their newest bucket with one addition. Both are added to the
    windows (`flush`) before anything reads or moves one: every reader goes through
    `flush`, `counts`, `release_if_idle` or `clear`.
    registry: where the set is listed (`live` True) while one of its windows has an array
    or requests are logged, so that whoever snapshots or prunes visits only the sets
    holding counts.
    """

    __slots__ = ("hi", "live", "lo", "log", "pending", "registry", "windows")

    def __init__(self, windows: tuple[SlidingWindow, ...], registry: dict[Any, None]) -> None:
        self.windows = windows
        self.pending = 0
        self.log: array[int] | None = None
        self.lo, self.hi = head_span(windows)
        self.registry = registry
        self.live = False
        for w in windows:  # `allocated`, without a generator: keys are made on first use
            if w._counts is not None:
                self.live = True
                registry[self] = None
                break

    def add(self, tick: int) -> None:
        """Count one request at `tick` = int(now_s * buckets)."""
        if self.lo <= tick < self.hi:
            self.pending += 1
        else:
            self.add_cold(tick)

    def add_cold(self, tick: int) -> None:
        """Count one request at `tick`, outside the span: logged, and the log counted once
        it holds LOG_MAX requests (the span is then computed again)."""
        log = self.log
        try:
            if log is None:
                self.log = array(_LOG_TYPECODE, (tick,))
                self.lo = self.hi = 0  # NO_SPAN: while requests are logged, every one is
                if not self.live:
                    self.live = True
                    self.registry[self] = None
                return
            log.append(tick)
        except OverflowError:  # a tick beyond 64 bits (a clock far off): counted at once
            self.flush()
            for w in self.windows:
                w.add_tick(tick)
            self.respan()
            if not self.live:
                self.live = True
                self.registry[self] = None
            return
        if len(log) >= LOG_MAX:
            self.flush()

    def flush(self) -> None:
        """Add the held-back and the logged requests to the windows (before reading or
        changing them), in the order they came."""
        pending = self.pending
        if pending:
            self.pending = 0
            for w in self.windows:
                counts = w._counts
                if counts is None:
                    raise RuntimeError("requests held back for a window without counts (a bug)")
                counts[w._slot] += pending
                w._total += pending
        log = self.log
        if log is not None:
            self.log = None
            first = min(log)
            last = max(log)
            for w in self.windows:
                w.add_ticks(log, first, last)
            self.lo, self.hi = head_span(self.windows)

    def counts(self, now_s: float) -> list[int]:
        """Each window's count at `now_s` (the held-back and logged requests added first)."""
        if self.log is not None:
            self.flush()
        pending = self.pending
        counts = []
        moved = False
        for w in self.windows:
            c = w._counts
            if c is None:
                counts.append(0)
                continue
            if pending:
                c[w._slot] += pending
                w._total += pending
            x = now_s * w._buckets
            if x >= w._hi:
                w._advance(c, int(x) // w._window_s)
                moved = True
            counts.append(w._total)
        self.pending = 0
        if moved:
            self.respan()
        return counts

    def respan(self) -> None:
        """Compute the span again, after windows were read or changed from outside (after
        `flush`: NO_SPAN while requests are logged)."""
        self.lo, self.hi = NO_SPAN if self.log is not None else head_span(self.windows)

    def clear(self) -> None:
        """Forget every count, the held-back and logged requests too."""
        self.pending = 0
        self.log = None
        for w in self.windows:
            w.clear()
        self.lo, self.hi = NO_SPAN
        self._unlist()

    def restored(self) -> None:
        """Take note of windows restored from outside (`SlidingWindow.restore`)."""
        self.respan()
        if self.allocated and not self.live:
            self.live = True
            self.registry[self] = None

    def release_if_idle(self, now_s: float) -> int:
        """Free the arrays of the windows empty at `now_s`; return how many."""
        self.flush()
        freed = 0
        for w in self.windows:
            freed += w.release_if_idle(now_s)
        self.respan()
        if not self.allocated:
            self._unlist()
        return freed

    def _unlist(self) -> None:
        if self.live:
            self.live = False
            self.registry.pop(self, None)

    @property
    def allocated(self) -> bool:
        """True while a window has its array (holds counts, or did until pruned)."""
        return any(w._counts is not None for w in self.windows)


def head_span(windows: tuple[SlidingWindow, ...]) -> tuple[int, int]:
    """The ticks (lo, hi), lo <= tick < hi, that fall in the newest bucket of every one of
    `windows` (at least one); NO_SPAN when a window has no array (no newest bucket)."""
    first = windows[0]
    lo = first._lo
    hi = first._hi
    for w in windows:
        if w._counts is None:
            return NO_SPAN
        if w._lo > lo:  # noqa: PLR1730 - a compare costs less than a call to max()
            lo = w._lo
        if w._hi < hi:  # noqa: PLR1730
            hi = w._hi
    return (lo, hi)
