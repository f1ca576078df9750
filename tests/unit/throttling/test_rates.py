"""RateMeter: an exponentially decayed rate per key, with bounded memory."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from throttling.rates import RateMeter


def _steady(meter: RateMeter, key: str, rate: float, start_s: float, seconds: float) -> float:
    """Add evenly spaced events at `rate` for `seconds`; returns the time after the last."""
    interval = 1.0 / rate
    count = round(seconds * rate)
    for i in range(count):
        meter.add(key, start_s + i * interval)
    return start_s + count * interval


def test_unknown_key_rate_is_zero() -> None:
    meter = RateMeter()
    assert meter.rate("u", 5.0) == 0.0
    assert meter.rates(5.0) == {}
    assert meter.total(5.0) == 0.0


def test_steady_rate_converges() -> None:
    meter = RateMeter(tau_s=1.0)
    end = _steady(meter, "u", 200.0, 1000.0, 10.0)
    # Just after an event the estimate is above the mean by up to one event's weight / tau.
    assert meter.rate("u", end) == pytest.approx(200.0, rel=0.01)


def test_step_response_follows_one_minus_exp() -> None:
    meter = RateMeter(tau_s=2.0)
    end = _steady(meter, "u", 1000.0, 0.0, 3.0)
    expected = 1000.0 * (1.0 - math.exp(-3.0 / 2.0))
    assert meter.rate("u", end) == pytest.approx(expected, rel=0.01)


def test_decays_after_the_last_event() -> None:
    meter = RateMeter(tau_s=1.0)
    meter.add("u", 10.0, 50)
    assert meter.rate("u", 10.0) == pytest.approx(50.0)
    assert meter.rate("u", 11.0) == pytest.approx(50.0 / math.e)


def test_same_timestamp_adds_up() -> None:
    meter = RateMeter(tau_s=0.5)
    for _ in range(10):
        meter.add("u", 3.0)
    meter.add("u", 3.0, 5)
    assert meter.rate("u", 3.0) == pytest.approx(15 / 0.5)


def test_time_going_back_is_taken_as_no_time() -> None:
    meter = RateMeter(tau_s=1.0)
    meter.add("u", 10.0, 4)
    meter.add("u", 9.0, 1)
    assert meter.rate("u", 9.5) == pytest.approx(5.0)
    assert meter.rate("u", 11.0) == pytest.approx(5.0 / math.e)


def test_rates_and_total() -> None:
    meter = RateMeter(tau_s=1.0)
    meter.add("a", 0.0, 3)
    meter.add("b", 0.0, 1)
    assert meter.rates(0.0) == {"a": 3.0, "b": 1.0}
    assert meter.total(0.0) == pytest.approx(4.0)


def test_expire_forgets_idle_keys_only() -> None:
    meter = RateMeter(tau_s=1.0, floor_per_s=0.01)
    meter.add("idle", 0.0)
    end = _steady(meter, "busy", 10.0, 0.0, 5.0)
    # One event falls under 0.01/s after tau * ln(1 / (0.01 * tau)) = 4.6 s.
    assert meter.expire(4.5) == 0
    assert meter.expire(end) == 1
    assert list(meter.rates(end)) == ["busy"]


def test_full_meter_drops_idle_keys_first() -> None:
    meter = RateMeter(tau_s=1.0, max_keys=3)
    meter.add("old", 0.0)
    meter.add("a", 99.0)
    meter.add("b", 99.0)
    meter.add("c", 100.0)
    assert set(meter.rates(100.0)) == {"a", "b", "c"}


def test_full_meter_then_drops_least_recently_updated() -> None:
    meter = RateMeter(tau_s=1.0, max_keys=3)
    meter.add("a", 10.0)
    meter.add("b", 10.0)
    meter.add("c", 10.0)
    meter.add("a", 10.0)  # a is now the most recently updated
    meter.add("d", 10.0)
    assert set(meter.rates(10.0)) == {"a", "c", "d"}
    assert len(meter) == 3


def test_clear() -> None:
    meter = RateMeter()
    meter.add("a", 0.0)
    meter.clear()
    assert len(meter) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tau_s": 0.0}, "tau_s"),
        ({"tau_s": math.inf}, "tau_s"),
        ({"floor_per_s": 0.0}, "floor_per_s"),
        ({"floor_per_s": math.nan}, "floor_per_s"),
        ({"max_keys": 0}, "max_keys"),
    ],
)
def test_bad_settings_raise_naming_the_setting(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RateMeter(**kwargs)  # type: ignore[arg-type]


# -- properties ----------------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0.0, max_value=0.5),
        st.integers(1, 20),
    ),
    min_size=1,
    max_size=100,
)


@settings(max_examples=200, deadline=None)
@given(batch=events, tau_s=st.floats(0.1, 10.0), after_s=st.floats(0.0, 20.0))
def test_linear_the_sum_of_meters_is_the_meter_of_the_sum(
    batch: list[tuple[str, float, int]], tau_s: float, after_s: float
) -> None:
    per_key = RateMeter(tau_s=tau_s)
    together = RateMeter(tau_s=tau_s)
    now = 1000.0
    for key, gap, n in batch:
        now += gap
        per_key.add(key, now, n)
        together.add("all", now, n)
    at = now + after_s
    assert per_key.total(at) == pytest.approx(together.rate("all", at), rel=1e-9, abs=1e-12)
    assert all(rate >= 0.0 for rate in per_key.rates(at).values())


@settings(max_examples=100, deadline=None)
@given(batch=events, max_keys=st.integers(1, 4))
def test_memory_is_bounded(batch: list[tuple[str, float, int]], max_keys: int) -> None:
    meter = RateMeter(max_keys=max_keys)
    now = 0.0
    for i, (key, gap, n) in enumerate(batch):
        now += gap
        meter.add(f"{key}{i % 7}", now, n)
        assert len(meter) <= max_keys


@settings(max_examples=50, deadline=None)
@given(
    x0=st.floats(0.0, 500.0),
    rise=st.floats(10.0, 5000.0),
    where=st.floats(0.05, 0.95),
    tau_s=st.floats(0.2, 2.0),
)
def test_lag_above_a_threshold_is_at_most_tau_rise_over_e(
    x0: float, rise: float, where: float, tau_s: float
) -> None:
    # The bound throttling/traffic.py builds on: a true rate stepping from x0 to x1 across a
    # threshold T has at most tau * (x1 - x0) / e events counted above T before the
    # meter reads T.
    x1 = x0 + rise
    threshold = x0 + where * rise
    meter = RateMeter(tau_s=tau_s)
    meter.add("u", 0.0, x0 * tau_s)  # the steady state at x0
    dt = tau_s / 2000.0
    t = 0.0
    while meter.rate("u", t) < threshold:
        t += dt
        meter.add("u", t, x1 * dt)
    above = (x1 - threshold) * t
    exact = tau_s * (x1 - threshold) * math.log((x1 - x0) / (x1 - threshold))
    assert above == pytest.approx(exact, rel=0.01, abs=2 * x1 * dt)
    assert above <= tau_s * rise / math.e + 2 * x1 * dt
