"""GCRA limiter and the GcraStore contract (run against every store implementation)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from throttling.gcra import (
    MAX_RETRY_AFTER_S,
    TICKS_PER_S,
    Gcra,
    GcraStore,
    MemoryGcraStore,
    to_ticks,
)

StoreFactory = Callable[[], GcraStore]

# Unix seconds in 2027: where a float resolves 2.4e-7 s, and float TATs used to drift.
NEAR_2027_S = 1_800_000_000.0

# Every GcraStore implementation joins this list; the contract tests run against each.
STORE_FACTORIES: list[StoreFactory] = [MemoryGcraStore]


@pytest.fixture(params=STORE_FACTORIES, ids=lambda f: getattr(f, "__name__", repr(f)))
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Factory for an empty store of each implementation."""
    factory: StoreFactory = request.param
    return factory


# -- the GcraStore contract ------------------------------------------------------------------


def test_store_get_unknown_key_is_none(make_store: StoreFactory) -> None:
    assert make_store().get("u") is None


def test_store_get_returns_last_set(make_store: StoreFactory) -> None:
    store = make_store()
    store.set("u", 5 * TICKS_PER_S)
    store.set("u", 7 * TICKS_PER_S + 1)
    store.set("v", 1)
    assert store.get("u") == 7 * TICKS_PER_S + 1
    assert store.get("v") == 1
    assert len(store) == 2


def test_store_expire_drops_keys_at_or_before_now(make_store: StoreFactory) -> None:
    store = make_store()
    now = to_ticks(NEAR_2027_S)
    store.set("past", now - 1)
    store.set("now", now)
    store.set("future", now + 1)
    assert store.expire(now) == 2
    assert store.get("past") is None
    assert store.get("now") is None
    assert store.get("future") == now + 1
    assert len(store) == 1


def test_store_expire_on_empty_store(make_store: StoreFactory) -> None:
    assert make_store().expire(to_ticks(1e9)) == 0


# -- MemoryGcraStore bounds ----------------------------------------------------------------


def test_memory_store_full_drops_least_recently_set() -> None:
    store = MemoryGcraStore(max_keys=3)
    store.set("a", 1)
    store.set("b", 1)
    store.set("c", 1)
    store.set("a", 2)  # a is now the most recently set
    store.set("d", 1)
    assert store.get("b") is None
    assert [store.get(k) for k in ("a", "c", "d")] == [2, 1, 1]
    assert len(store) == 3


def test_memory_store_evicts_a_batch_when_large() -> None:
    store = MemoryGcraStore(max_keys=640)
    for i in range(640):
        store.set(f"k{i}", 1)
    store.set("new", 1)
    # 1/64 of the keys at once: one walk per ten new keys, not per key.
    assert len(store) == 631
    assert store.get("k9") is None
    assert store.get("k10") == 1


def test_memory_store_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryGcraStore(max_keys=0)


def test_memory_store_clear() -> None:
    store = MemoryGcraStore()
    store.set("a", 1)
    store.clear()
    assert len(store) == 0


# -- Gcra: examples ------------------------------------------------------------------------


def test_burst_then_evenly_spaced(make_store: StoreFactory) -> None:
    gcra = Gcra(make_store())
    # 10/s with a burst of 3: three at once, the fourth waits one interval.
    assert [gcra.decide("u", 100.0, 10.0, 3)[0] for _ in range(3)] == [True] * 3
    allowed, retry_after_s = gcra.decide("u", 100.0, 10.0, 3)
    assert not allowed
    assert retry_after_s == pytest.approx(0.1)
    assert gcra.decide("u", 100.0 + retry_after_s, 10.0, 3) == (True, 0.0)
    assert not gcra.decide("u", 100.1, 10.0, 3)[0]
    assert gcra.decide("u", 100.2, 10.0, 3)[0]


def test_keys_are_independent() -> None:
    gcra = Gcra()
    assert gcra.decide("a", 0.0, 1.0, 1)[0]
    assert not gcra.decide("a", 0.0, 1.0, 1)[0]
    assert gcra.decide("b", 0.0, 1.0, 1)[0]


def test_denied_request_changes_nothing() -> None:
    store = MemoryGcraStore()
    gcra = Gcra(store)
    gcra.decide("u", 0.0, 1.0, 1)
    tat = store.get("u")
    for _ in range(5):
        assert not gcra.decide("u", 0.5, 1.0, 1)[0]
    assert store.get("u") == tat


def test_idle_key_gets_a_fresh_burst_and_expires() -> None:
    store = MemoryGcraStore()
    gcra = Gcra(store)
    for _ in range(4):
        gcra.decide("u", 0.0, 2.0, 4)
    assert gcra.expire(1.0) == 0  # TAT 2.0 still ahead: the key owes 1 s
    assert gcra.expire(2.0) == 1
    assert [gcra.decide("u", 2.0, 2.0, 4)[0] for _ in range(5)] == [True] * 4 + [False]


@pytest.mark.parametrize(
    ("rate", "burst", "window_s"), [(1311.0, 2, 0.18), (1066.6, 5, 0.33), (286.9, 5, 0.84)]
)
def test_window_bound_is_exact_near_unix_time(rate: float, burst: int, window_s: float) -> None:
    # Regression (issue #12): with float TATs, `tat + interval` rounded to 2.4e-7 s at every
    # admitted request, and these streams got one request more than the bound (238 where
    # 237.98 were allowed, and so on).
    gcra = Gcra()
    times = [NEAR_2027_S + i * (window_s / 400) for i in range(401)]
    admitted = sum(gcra.decide("u", t, rate, burst)[0] for t in times)
    assert admitted <= rate * (times[-1] - times[0]) + burst


def test_limits_may_alternate_between_calls() -> None:
    # Each limit is converted to ticks once and kept: alternating limits must not mix up.
    gcra = Gcra()
    for i in range(10):
        assert gcra.decide("slow", NEAR_2027_S + i, 1.0, 1)[0]
        assert gcra.decide("fast", NEAR_2027_S + i, 4.0, 4)[0]
    # "fast" used 0.25 s of its 0.75 s tolerance: three more now; "slow" has none.
    fast = [gcra.decide("fast", NEAR_2027_S + 9.0, 4.0, 4)[0] for _ in range(4)]
    assert fast == [True, True, True, False]
    assert gcra.decide("slow", NEAR_2027_S + 9.5, 1.0, 1) == (False, 0.5)


def test_rate_zero_denies_with_large_finite_retry() -> None:
    allowed, retry_after_s = Gcra().decide("u", 0.0, 0.0, 5)
    assert not allowed
    assert retry_after_s == MAX_RETRY_AFTER_S
    assert math.isfinite(retry_after_s)


def test_retry_after_is_capped() -> None:
    gcra = Gcra()
    assert gcra.decide("u", 0.0, 1e-9, 1)[0]
    assert gcra.decide("u", 0.0, 1e-9, 1) == (False, MAX_RETRY_AFTER_S)


def test_lower_rate_applies_from_next_request() -> None:
    gcra = Gcra()
    assert gcra.decide("u", 0.0, 100.0, 1)[0]
    assert gcra.decide("u", 0.01, 1.0, 1)[0]  # TAT was 0.01: allowed, TAT now 1.01
    allowed, retry_after_s = gcra.decide("u", 0.02, 1.0, 1)
    assert not allowed
    assert retry_after_s == pytest.approx(0.99)


@pytest.mark.parametrize(
    ("rate", "burst", "field"),
    [
        (-1.0, 1, "rate_per_s"),
        (math.nan, 1, "rate_per_s"),
        (1.0, 0, "burst"),
        (1.0, 0.5, "burst"),
        (1.0, math.nan, "burst"),
        (1.0, math.inf, "burst"),
        (math.inf, 1, "rate_per_s"),
        (0.0, 0, "burst"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(rate: float, burst: float, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Gcra().decide("u", 0.0, rate, burst)


def test_default_store_is_memory() -> None:
    assert isinstance(Gcra().store, MemoryGcraStore)


# -- Gcra: properties ----------------------------------------------------------------------

rates = st.floats(min_value=0.01, max_value=10_000.0)
bursts = st.integers(min_value=1, max_value=50)
gaps = st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=150)


def _arrivals(start_s: float, gap_list: list[float]) -> list[float]:
    times = []
    now = start_s
    for gap in gap_list:
        now += gap
        times.append(now)
    return times


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, gap_list=gaps, start_s=st.floats(0.0, 2e9))
@example(rate=8000.0, burst=2, gap_list=[0.0001145] * 150, start_s=NEAR_2027_S)  # 122 > 121.93
def test_over_any_window_admitted_at_most_rate_times_window_plus_burst(
    rate: float, burst: int, gap_list: list[float], start_s: float
) -> None:
    gcra = Gcra()
    admitted = [t for t in _arrivals(start_s, gap_list) if gcra.decide("u", t, rate, burst)[0]]
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            window_s = admitted[j] - first
            # The bound is exact in the times given: slack for rounding rate * window_s only
            # (it was once 1e-9 * rate * first, which hid a drift of float TATs near 1.8e9).
            slack = 1e-9 * (1.0 + rate * window_s)
            assert j - i + 1 <= rate * window_s + burst + slack


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, extra=gaps, start_s=st.floats(0.0, 1e6))
def test_conforming_stream_is_never_denied(
    rate: float, burst: int, extra: list[float], start_s: float
) -> None:
    gcra = Gcra()
    # Gaps of at least 1/rate (plus rounding room): such a stream conforms to any burst.
    interval = (1.0 / rate) * (1.0 + 1e-9) + 1e-9 * start_s
    times = _arrivals(start_s, [interval + e for e in extra])
    assert all(gcra.decide("u", t, rate, burst)[0] for t in times)


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, n=st.integers(1, 100), start_s=st.floats(0.0, 1e6))
def test_retry_after_is_when_the_request_would_pass(
    rate: float, burst: int, n: int, start_s: float
) -> None:
    gcra = Gcra()
    for _ in range(n + burst):
        gcra.decide("u", start_s, rate, burst)
    allowed, retry_after_s = gcra.decide("u", start_s, rate, burst)
    assert not allowed
    assert 0.0 < retry_after_s <= MAX_RETRY_AFTER_S
    if retry_after_s < MAX_RETRY_AFTER_S and retry_after_s > 1e-6 * (1.0 + start_s) / rate:
        assert not gcra.decide("u", start_s + retry_after_s * 0.999, rate, burst)[0]
    later = start_s + retry_after_s * (1.0 + 1e-9) + 1e-9 * start_s
    assert gcra.decide("u", later, rate, burst)[0]


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, n=st.integers(1, 100), start_s=st.floats(1.0, 2e9))
def test_a_retry_at_now_plus_retry_after_is_allowed(
    rate: float, burst: int, n: int, start_s: float
) -> None:
    # Exactly, in floats: the sum is never rounded to just before the request is allowed.
    gcra = Gcra()
    for _ in range(n + burst):
        gcra.decide("u", start_s, rate, burst)
    allowed, retry_after_s = gcra.decide("u", start_s, rate, burst)
    assume(not allowed and retry_after_s < MAX_RETRY_AFTER_S)
    assert gcra.decide("u", start_s + retry_after_s, rate, burst)[0]
