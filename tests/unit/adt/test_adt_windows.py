"""adt.windows: the bucketed sliding window against an exact reference, at bucket granularity."""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adt.windows import LOG_MAX, MAX_BUCKET_COUNT, SlidingWindow, WindowSet, bucket_index

T0 = 1_700_000_000.0


def exact_bucket(t: float, window_s: int, buckets: int) -> int:
    return math.floor(Fraction(t) * buckets / window_s)


def reference_count(events: list[float], now: float, window_s: int, buckets: int) -> int:
    """Every event at or after the start of bucket k - buckets, where k is now's bucket."""
    k = exact_bucket(now, window_s, buckets)
    return sum(1 for e in events if k - buckets <= exact_bucket(e, window_s, buckets) <= k)


# Times in eighths of a second: dyadic, so t * buckets is exact in a float and the bucket
# boundaries are the reference's, with no rounding.
ticks = st.integers(min_value=0, max_value=8 * 400)
windows = st.sampled_from([1, 2, 7, 10, 60, 90, 300])
bucket_counts = st.sampled_from([1, 2, 5, 6, 60])


@settings(max_examples=300, deadline=None)
@given(
    window_s=windows,
    buckets=bucket_counts,
    steps=st.lists(st.tuples(ticks, st.booleans()), max_size=120),
)
def test_counts_match_the_reference_on_any_timeline(
    window_s: int, buckets: int, steps: list[tuple[int, bool]]
) -> None:
    window = SlidingWindow(window_s, buckets)
    events: list[float] = []
    now_tick = 0
    for step, is_event in steps:
        now_tick += step // 8  # non-decreasing time, sometimes several windows at once
        now = T0 + now_tick / 8
        if is_event:
            window.add(now)
            events.append(now)
        assert window.count(now) == reference_count(events, now, window_s, buckets)


@settings(max_examples=200, deadline=None)
@given(
    window_s=windows,
    offsets=st.lists(st.integers(min_value=-8 * 30, max_value=8 * 30), min_size=1, max_size=60),
)
def test_late_events_count_in_their_own_bucket_while_it_is_in_the_window(
    window_s: int, offsets: list[int]
) -> None:
    buckets = 6
    window = SlidingWindow(window_s, buckets)
    latest = T0
    events: list[float] = []
    for offset in offsets:
        t = T0 + 8 * 60 + offset / 8
        window.add(t)
        latest = max(latest, t)
        # An event older than the window at the latest time seen is not counted: it could
        # not be in any later count either.
        k_latest = exact_bucket(latest, window_s, buckets)
        if exact_bucket(t, window_s, buckets) >= k_latest - buckets:
            events.append(t)
        assert window.count(latest) == reference_count(events, latest, window_s, buckets)


def test_no_event_of_the_last_window_s_is_missed_and_granularity_is_window_over_buckets() -> None:
    window = SlidingWindow(3600, 60)
    assert window.granularity_s == 60.0
    window.add(T0)
    # Counted for at least window_s...
    assert window.count(T0 + 3599.999) == 1
    # ...and at most window_s + granularity.
    assert window.count(T0 + 3600 + 60) == 0


def test_a_count_at_an_earlier_time_answers_the_latest_count() -> None:
    window = SlidingWindow(60, 60)
    window.add(T0)
    window.add(T0 + 30)
    assert window.count(T0 + 30) == 2
    assert window.count(T0 + 1) == 2  # over-counts, never under-counts


def test_an_event_older_than_the_window_is_ignored() -> None:
    window = SlidingWindow(60, 60)
    window.add(T0 + 1000)
    window.add(T0)
    assert window.count(T0 + 1000) == 1


def test_array_is_allocated_on_first_event_and_released_when_idle() -> None:
    window = SlidingWindow(60, 60)
    assert not window.allocated
    assert window.count(T0) == 0
    assert not window.allocated
    window.add(T0)
    assert window.allocated
    assert not window.release_if_idle(T0 + 30)
    assert window.release_if_idle(T0 + 61)
    assert not window.allocated
    window.add(T0 + 62)
    assert window.count(T0 + 62) == 1


def test_clear_forgets_everything() -> None:
    window = SlidingWindow(60)
    window.add(T0, 5)
    window.clear()
    assert window.count(T0) == 0


@settings(max_examples=200, deadline=None)
@given(
    window_s=windows,
    buckets=bucket_counts,
    event_ticks=st.lists(ticks, max_size=80),
    later=ticks,
)
def test_snapshot_restore_round_trips(
    window_s: int, buckets: int, event_ticks: list[int], later: int
) -> None:
    window = SlidingWindow(window_s, buckets)
    for tick in sorted(event_ticks):
        window.add(T0 + tick / 8)
    now = T0 + (max(event_ticks, default=0)) / 8
    head, pairs = window.snapshot(now)
    copy = SlidingWindow(window_s, buckets)
    copy.restore(head, pairs)
    assert copy.count(now) == window.count(now)
    for probe in (now, now + later / 8, now + window_s, now + 2 * window_s):
        assert copy.count(probe) == window.count(probe)
    assert copy.snapshot(now + later / 8) == window.snapshot(now + later / 8)


@settings(max_examples=300, deadline=None)
@given(
    window_s=windows,
    buckets=bucket_counts,
    event_ticks=st.lists(ticks, max_size=80),
    recent=st.lists(st.integers(min_value=0, max_value=40), max_size=40),
    later=st.integers(min_value=0, max_value=80),
)
def test_snapshots_list_exactly_the_non_empty_buckets_oldest_first(
    window_s: int, buckets: int, event_ticks: list[int], recent: list[int], later: int
) -> None:
    # Old events and a burst in the newest few buckets (where `_pairs` looks first), the
    # ring's newest slot anywhere; both snapshot forms against counts from the events.
    last = max(event_ticks, default=0)
    events = sorted([T0 + t / 8 for t in event_ticks] + [T0 + (last + r) / 8 for r in recent])
    window = SlidingWindow(window_s, buckets)
    for t in events:
        window.add(t)
    now = T0 + (last + 40 + later) / 8
    head = exact_bucket(now, window_s, buckets)
    per_bucket: dict[int, int] = {}
    for t in events:
        k = exact_bucket(t, window_s, buckets)
        if head - buckets <= k <= head:
            per_bucket[k] = per_bucket.get(k, 0) + 1
    expected = tuple(sorted(per_bucket.items()))
    assert window.snapshot(now) == (head, expected)
    got_head, pairs, counts = window.snapshot_compact(now, max_pairs=3)
    assert got_head == head
    if len(expected) <= 3:
        assert (pairs, counts) == (expected, b"")
    else:
        top = max(per_bucket.values())
        width = 1 if top < 256 else 2 if top < 65_536 else 4
        assert pairs == ()
        assert counts == b"".join(
            per_bucket.get(k, 0).to_bytes(width, "little") for k in range(head - buckets, head + 1)
        )


def test_snapshot_holds_only_non_empty_buckets() -> None:
    window = SlidingWindow(60, 60)
    window.add(T0)
    window.add(T0)
    window.add(T0 + 10)
    head, pairs = window.snapshot(T0 + 10)
    k = bucket_index(T0, 60, 60)
    assert head == k + 10
    assert pairs == ((k, 2), (k + 10, 1))


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (((100, 1),), "outside the window"),
        (((39, 1),), "outside the window"),
        (((50, -1),), "outside 0.."),
        (((50, MAX_BUCKET_COUNT + 1),), "outside 0.."),
        (((50, 1), (50, 2)), "appears twice"),
        (((50,),), r"not a \(bucket index, count\) pair"),
    ],
)
def test_restore_refuses_what_a_snapshot_cannot_hold(
    pairs: tuple[tuple[int, ...], ...], message: str
) -> None:
    window = SlidingWindow(60, 10)
    with pytest.raises(ValueError, match=message):
        window.restore(50, pairs)  # type: ignore[arg-type]


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s and buckets must be >= 1"):
        SlidingWindow(0)


def test_memory_per_window_is_small() -> None:
    """A used window (60 buckets) costs well under a kilobyte; the figure is in the bench."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = []
        for i in range(1000):
            window = SlidingWindow(3600, 60)
            window.add(T0 + i)
            kept.append(window)
        per_window = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_window < 1024


# --- several windows of one key, counted together (WindowSet) -----------------------------


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(
        st.sampled_from([1, 2, 7, 10, 60, 90, 300]), min_size=1, max_size=4, unique=True
    ),
    buckets=bucket_counts,
    steps=st.lists(
        st.tuples(st.integers(min_value=-8 * 20, max_value=8 * 40), st.booleans()), max_size=120
    ),
)
def test_a_window_set_counts_as_its_windows_one_by_one(
    lengths: list[int], buckets: int, steps: list[tuple[int, bool]]
) -> None:
    alone = [SlidingWindow(w, buckets) for w in lengths]
    together = WindowSet(tuple(SlidingWindow(w, buckets) for w in lengths), {})
    now = T0
    for step, read in steps:
        now += step / 8  # time may step back, by more than a window too
        tick = int(now * buckets)
        for w in alone:
            w.add(now)
        together.add(tick)  # held back, or counted in every window at once
        if read:
            assert together.counts(now) == [w.count(now) for w in alone]
    together.flush()
    for mine, theirs in zip(together.windows, alone, strict=True):
        assert mine.snapshot(now) == theirs.snapshot(now)


def test_a_window_set_lists_itself_while_it_holds_counts() -> None:
    registry: dict[WindowSet, None] = {}
    keys = WindowSet((SlidingWindow(60), SlidingWindow(3600)), registry)
    assert not keys.live
    keys.add(int(T0 * 60))
    assert registry == {keys: None}  # listed while the request is only logged
    assert keys.log is not None
    keys.flush()  # the logged request counted: the span is the newest bucket of both
    assert keys.log is None
    keys.add(int(T0 * 60))  # held back: the same bucket of both windows
    assert keys.pending == 1
    assert keys.release_if_idle(T0 + 61) == 1  # the minute window empties first
    assert keys.counts(T0 + 61) == [0, 2]
    assert keys.release_if_idle(T0 + 3700) == 1
    assert registry == {}
    keys.add(int(T0 * 60))
    keys.clear()
    assert registry == {}
    assert keys.counts(T0) == [0, 0]


@settings(max_examples=200, deadline=None)
@given(
    window_s=windows,
    buckets=bucket_counts,
    event_ticks=st.lists(ticks, max_size=80),
    later=ticks,
)
def test_a_compact_snapshot_restores_the_same_window(
    window_s: int, buckets: int, event_ticks: list[int], later: int
) -> None:
    window = SlidingWindow(window_s, buckets)
    for tick in sorted(event_ticks):
        window.add(T0 + tick / 8)
    now = T0 + (max(event_ticks, default=0)) / 8
    head, pairs, counts = window.snapshot_compact(now, max_pairs=4)
    copy = SlidingWindow(window_s, buckets)
    if counts:
        assert not pairs
        assert len(counts) in (buckets + 1, 2 * (buckets + 1), 4 * (buckets + 1))
        copy.restore_counts(head, counts)
    else:
        assert (head, pairs) == window.snapshot(now)
        copy.restore(head, pairs)
    for probe in (now, now + later / 8, now + window_s, now + 2 * window_s):
        assert copy.count(probe) == window.count(probe)
    assert copy.snapshot(now + later / 8) == window.snapshot(now + later / 8)


def test_compact_counts_are_oldest_first_little_endian_in_the_narrowest_width() -> None:
    window = SlidingWindow(60, 4)  # buckets of 15 s, 5 slots
    for i in range(9):
        window.add(T0 + 15 * (i % 3))
    head, pairs, counts = window.snapshot_compact(T0 + 30, max_pairs=2)
    assert (head, pairs) == (bucket_index(T0 + 30, 60, 4), ())
    assert counts == bytes([0, 0, 3, 3, 3])  # a byte a count: every count fits
    newest = 3
    for n, width in ((300, 2), (70_000, 4)):
        window.add(T0 + 30, n)
        newest += n
        _, _, counts = window.snapshot_compact(T0 + 30, max_pairs=2)
        assert len(counts) == 5 * width
        assert int.from_bytes(counts[4 * width :], "little") == newest
        copy = SlidingWindow(60, 4)
        copy.restore_counts(head, counts)
        assert copy.snapshot(T0 + 30) == window.snapshot(T0 + 30)
    with pytest.raises(ValueError, match="not 5 counts of 1, 2 or 4 bytes"):
        SlidingWindow(60, 4).restore_counts(head, counts[:-1])
    # The width follows the largest bucket, not the total: 300 counts of which none above
    # 255 still take a byte each.
    spread = SlidingWindow(60, 4)
    for i in range(5):
        spread.add(T0 + 15 * i, 60)
    _, pairs, counts = spread.snapshot_compact(T0 + 60, max_pairs=2)
    assert pairs == ()
    assert counts == bytes([60] * 5)


# --- counting several requests at once (add_ticks), and a window set's log ---------------


def _state(window: SlidingWindow) -> tuple[object, ...] | None:
    """What a window holds: None without an array (its head then means nothing)."""
    counts = window._counts
    return None if counts is None else (list(counts), window._head, window._total)


@settings(max_examples=300, deadline=None)
@given(
    window_s=windows,
    buckets=bucket_counts,
    before=st.lists(st.integers(-8 * 50, 8 * 50), max_size=6),
    batch=st.lists(st.integers(-8 * 400, 8 * 400), min_size=1, max_size=24),
)
def test_add_ticks_counts_as_add_tick_one_by_one(
    window_s: int, buckets: int, before: list[int], batch: list[int]
) -> None:
    """Any earlier state (no array, or counts), then requests forward, back, or older than
    the window: the same counts, head and total, bucket by bucket."""
    one_by_one = SlidingWindow(window_s, buckets)
    together = SlidingWindow(window_s, buckets)
    base = int(T0 * buckets)
    for t in before:
        one_by_one.add_tick(base + t * buckets // 8)
        together.add_tick(base + t * buckets // 8)
    ticks = [base + t * buckets // 8 for t in batch]
    for t in ticks:
        one_by_one.add_tick(t)
    together.add_ticks(ticks, min(ticks), max(ticks))
    assert _state(together) == _state(one_by_one)
    later = T0 + (max(batch) + 8 * window_s) / 8
    for probe in (T0 + max(batch) / 8, later):
        assert together.count(probe) == one_by_one.count(probe)


window_set_op = st.one_of(
    st.tuples(st.just("add"), st.integers(min_value=-8 * 20, max_value=8 * 40)),
    st.tuples(
        st.sampled_from(["counts", "flush", "release", "clear", "snapshot"]), st.integers(0, 8)
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(
        st.sampled_from([1, 2, 7, 10, 60, 90, 300]), min_size=1, max_size=4, unique=True
    ),
    buckets=bucket_counts,
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(min_value=-8 * 20, max_value=8 * 40)),
            window_set_op,
        ),
        max_size=150,
    ),
)
def test_a_window_set_with_its_log_counts_as_its_windows_one_by_one(
    lengths: list[int], buckets: int, ops: list[tuple[str, int]]
) -> None:
    """Requests logged (more than LOG_MAX between reads too), read, pruned, cleared and
    snapshotted in any order: always what each window counting each request says."""
    alone = [SlidingWindow(w, buckets) for w in lengths]
    registry: dict[WindowSet, None] = {}
    together = WindowSet(tuple(SlidingWindow(w, buckets) for w in lengths), registry)
    now = T0
    for op, arg in ops:
        if op == "add":
            now += arg / 8  # time may step back, by more than a window too
            for w in alone:
                w.add(now)
            together.add(int(now * buckets))
        elif op == "counts":
            probe = now + arg
            assert together.counts(probe) == [w.count(probe) for w in alone]
        elif op == "flush":
            together.flush()
            assert together.log is None
            assert [_state(w) for w in together.windows] == [_state(w) for w in alone]
        elif op == "release":
            probe = now + arg * 10
            assert together.release_if_idle(probe) == sum(w.release_if_idle(probe) for w in alone)
        elif op == "clear":
            together.clear()
            for w in alone:
                w.clear()
        else:
            together.flush()
            assert [w.snapshot(now) for w in together.windows] == [w.snapshot(now) for w in alone]
            together.respan()
        # Listed exactly while it holds counts or logged requests.
        assert together.live == (together in registry)
        assert together.live == (together.allocated or together.log is not None)
        assert together.log is None or 0 < len(together.log) < LOG_MAX
    together.flush()
    assert [_state(w) for w in together.windows] == [_state(w) for w in alone]


def test_a_window_set_logs_cold_requests_and_counts_them_at_the_log_s_end() -> None:
    keys = WindowSet((SlidingWindow(60), SlidingWindow(3600)), {})
    start = int(T0 * 60)
    for i in range(LOG_MAX - 1):  # one every 2 s: each in a bucket of its own (minute window)
        keys.add(start + 120 * i)
        assert keys.log is not None
        assert len(keys.log) == i + 1
        assert (keys.lo, keys.hi) == (0, 0)  # nothing held back while requests are logged
    assert all(w._counts is None for w in keys.windows)
    keys.add(start + 120 * (LOG_MAX - 1))  # the log is full: counted now
    assert keys.log is None
    assert keys.counts(T0 + 2 * (LOG_MAX - 1)) == [LOG_MAX, LOG_MAX]
    head = keys.windows[0]._head
    assert (keys.lo, keys.hi) == (head * 60, head * 60 + 60)


def test_a_tick_beyond_64_bits_is_counted_at_once() -> None:
    far = 2**70
    keys = WindowSet((SlidingWindow(60), SlidingWindow(3600)), {})
    keys.add(int(T0 * 60))
    keys.add(far)  # the log cannot take it: the log, then it, are counted
    assert keys.log is None
    alone = [SlidingWindow(60), SlidingWindow(3600)]
    for w in alone:
        w.add_tick(int(T0 * 60))
        w.add_tick(far)
    assert [_state(w) for w in keys.windows] == [_state(w) for w in alone]
    keys.add(far)  # in the span now: held back
    assert keys.pending == 1
