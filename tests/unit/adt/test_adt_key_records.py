"""adt.key_records (`AdtEngine.encode_changed`) against the straightforward way
(`snapshot_changed`, then `encode_snapshot`), and `SlidingWindow.snapshot_compact`'s choice
of form and width against a count of the buckets one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adt import AdtEngine, AdtValues, Threshold, decode_snapshot, encode_snapshot
from adt.snapshot import (
    KeyRecord,
    UserCountersSnapshot,
    WindowRecord,
    WindowSnapshot,
    encode_record,
)
from adt.windows import MAX_BUCKET_COUNT, SlidingWindow

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"
T0 = 1_700_000_000.0
_SRVS = ("7.2", "11.1", "*")


def _values(windows: list[int], limit: int) -> AdtValues:
    return AdtValues(
        thresholds=tuple(Threshold(srv=s, window_s=w, max=limit) for s in _SRVS for w in windows)
    )


def _reference(engine: AdtEngine, user: str, now: float) -> list[tuple[str, bytes]]:
    return [(srv, encode_snapshot(s)) for srv, s in engine.snapshot_changed(user, now)]


# A history: (time step in 1/64 s, User, SRV, snapshot after it). Steps of 0 keep requests
# in the newest buckets (held back), long ones leave windows behind, a few step back.
_step = st.tuples(
    st.one_of(
        st.integers(0, 4), st.integers(0, 64 * 90), st.integers(-64 * 3, 0), st.just(64 * 4000)
    ),
    st.sampled_from([A, B]),
    st.sampled_from(["7.2", "11.1", "4.1.1"]),  # 4.1.1: no threshold of its own, only "*"
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    windows=st.lists(st.sampled_from([1, 7, 60, 600, 3600]), min_size=1, max_size=4, unique=True),
    buckets=st.sampled_from([1, 2, 5, 60]),
    steps=st.lists(_step, min_size=1, max_size=200),
)
def test_the_records_are_those_of_snapshot_changed_byte_for_byte(
    windows: list[int], buckets: int, steps: list[tuple[int, str, str, bool]]
) -> None:
    values = _values(sorted(windows), 10**9)
    fast = AdtEngine(buckets_per_window=buckets)
    slow = AdtEngine(buckets_per_window=buckets)
    for engine in (fast, slow):
        engine.set_user_values(A, values)
        engine.set_user_values(B, values)
    now = T0
    for sixty_fourths, user, srv, snapshot in steps:
        now += sixty_fourths / 64
        assert fast.check_and_record(user, srv, dict, now) == slow.check_and_record(
            user, srv, dict, now
        )
        if snapshot:
            for u in (A, B):
                got = fast.encode_changed(u, now)
                assert got == _reference(slow, u, now)
    for u in (A, B):  # what is left to write, then nothing
        assert fast.encode_changed(u, now) == _reference(slow, u, now)
        assert fast.encode_changed(u, now) == _reference(slow, u, now) == []
    # The windows are left as the straightforward way leaves them: the same counts now
    # and later.
    for later in (now, now + 30, now + 4000):
        for u in (A, B):
            assert fast.snapshot_user(u, later) == slow.snapshot_user(u, later)
            assert [x.count for x in fast.usage(u, later)] == [
                x.count for x in slow.usage(u, later)
            ]


def test_a_busy_key_is_written_from_its_held_back_requests_and_keeps_counting() -> None:
    """Requests in the newest bucket of every window are held back (`pending`): the record
    reads them without adding them to the windows, and the next ones still count."""
    fast = AdtEngine()
    slow = AdtEngine()
    values = _values([60, 3600, 86_400], 10**9)
    for engine in (fast, slow):
        engine.set_user_values(A, values)
        for i in range(50):
            engine.check_and_record(A, "7.2", dict, T0 + i / 1000)
    key = fast._users[A].keys["7.2"]
    assert key.pending > 0  # the path under test: requests held back, not in the windows
    got = fast.encode_changed(A, T0 + 0.2)
    assert key.pending > 0  # read, not added
    assert got == _reference(slow, A, T0 + 0.2)
    assert sorted(srv for srv, _ in got) == ["*", "7.2"]
    record = decode_snapshot(dict(got)["7.2"])
    assert [(w.window_s, w.buckets) for w in record.windows] == [
        (window_s, ((w.head, 50),))
        for window_s, w in zip((60, 3600, 86_400), record.windows, strict=True)
    ]
    for engine in (fast, slow):
        for i in range(5):
            engine.check_and_record(A, "7.2", dict, T0 + 0.3 + i / 1000)
    assert fast.encode_changed(A, T0 + 0.5) == _reference(slow, A, T0 + 0.5)
    assert fast.snapshot_user(A, T0 + 0.5) == slow.snapshot_user(A, T0 + 0.5)


def test_a_key_whose_counts_left_every_window_writes_an_empty_record() -> None:
    engine = AdtEngine()
    engine.set_user_values(A, _values([60], 10**9))
    engine.check_and_record(A, "7.2", dict, T0)
    engine.encode_changed(A, T0)
    engine.record_released(A, "7.2", T0 - 120)  # too old for the window: counts nothing
    got = dict(engine.encode_changed(A, T0 + 500))
    for srv in ("7.2", "*"):
        record = decode_snapshot(got[srv])
        assert record.windows == ()
        assert record.user_id == A


def test_a_user_without_values_or_changes_writes_nothing() -> None:
    engine = AdtEngine()
    assert engine.encode_changed(A, T0) == []
    engine.set_user_values(A, _values([60], 10))
    assert engine.encode_changed(A, T0) == []


_count = st.one_of(
    st.integers(1, 3), st.integers(1, 300), st.integers(1, 70_000), st.integers(1, MAX_BUCKET_COUNT)
)


@settings(max_examples=500, deadline=None)
@given(
    buckets=st.sampled_from([1, 4, 8, 9, 10, 60]),
    head=st.integers(0, 10_000),
    filled=st.data(),
)
def test_the_compact_form_and_width_are_those_of_a_bucket_by_bucket_count(
    buckets: int, head: int, filled: st.DataObject
) -> None:
    size = buckets + 1
    window = SlidingWindow(buckets, buckets)  # buckets of 1 s: bucket k is [k, k + 1)
    indexes = filled.draw(
        st.lists(st.integers(head - size + 1, head), unique=True, max_size=size), label="buckets"
    )
    pairs = tuple(sorted((j, filled.draw(_count, label=f"count {j}")) for j in indexes))
    window.restore(head, pairs)
    got_head, got_pairs, got_counts = window.snapshot_compact(head + 0.5)
    assert got_head == head
    total = sum(n for _, n in pairs)
    if total <= 8 or len(pairs) <= 8:
        assert (got_pairs, got_counts) == (pairs, b"")
        return
    by_bucket = dict(pairs)
    ordered = [by_bucket.get(j, 0) for j in range(head - size + 1, head + 1)]
    top = max(ordered)
    width = 1 if top < 256 else 2 if top < 65_536 else 4
    assert got_pairs == ()
    assert got_counts == b"".join(n.to_bytes(width, "little") for n in ordered)


def test_runs_of_zero_bytes_across_buckets_do_not_pass_for_empty_buckets() -> None:
    """Buckets of 256 (00 01 00 00) and 65,536 (00 00 01 00) side by side hold a run of four
    zero bytes that is no empty bucket: 9 non-empty buckets are still written whole."""
    window = SlidingWindow(10, 10)
    head = 100
    pairs = tuple((head - 10 + i, 256 if i % 2 else 65_536) for i in range(9))
    window.restore(head, pairs)
    _, got_pairs, got_counts = window.snapshot_compact(head + 0.5)
    assert got_pairs == ()
    assert len(got_counts) == 11 * 4  # 65,536 needs 4 bytes


def test_record_structs_encode_as_the_snapshot_structs() -> None:
    """`WindowRecord`/`KeyRecord` are write-only twins of the snapshot Structs: every field,
    in order, defaults too, and odd strings and floats, give the same bytes."""
    for user, srv, taken in ((A, "7.2", T0 + 0.125), ('a"\\\u00e9\n', "\u2028", 1e22)):
        windows = [
            WindowRecord(srv, 60, 5, ((4, 1), (5, 2))),
            WindowRecord(srv, 3600, 7, (), b"\x00\xff\x10"),
            WindowRecord(srv, 1, -3),
        ]
        snapshot = UserCountersSnapshot(
            user_id=user,
            buckets_per_window=60,
            taken_at_s=taken,
            windows=tuple(
                WindowSnapshot(
                    srv=w.srv, window_s=w.window_s, head=w.head, buckets=w.buckets, counts=w.counts
                )
                for w in windows
            ),
        )

        assert encode_record(KeyRecord(user, 60, taken, windows)) == encode_snapshot(snapshot)
