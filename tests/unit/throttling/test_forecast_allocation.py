"""Allocations derived from forecasts (SECMP0067 from SEC H3.24 forecasts)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttling.forecast_allocation import ForecastAllocationError, allocation_from_forecast


def test_the_documented_example() -> None:
    # docs/forecasts.md: 10,000,000 a month, 0.4% in the peak hour, 50% headroom.
    a = allocation_from_forecast(10_000_000, peak_hour_share=0.004, headroom_ratio=1.5, burst_s=1.0)
    assert a.rate_per_s == pytest.approx(16.6667, rel=1e-4)
    assert a.burst == 17
    assert a.shadow is False


def test_no_forecast_traffic_gets_the_smallest_burst() -> None:
    a = allocation_from_forecast(0, peak_hour_share=0.004, headroom_ratio=1.5, burst_s=1.0)
    assert (a.rate_per_s, a.burst) == (0.0, 1)


@pytest.mark.parametrize(
    ("count", "share", "headroom", "burst_s", "names"),
    [
        (-1, 0.004, 1.5, 1.0, "month_count"),
        (1, 0.0, 1.5, 1.0, "peak_hour_share"),
        (1, 1.5, 1.5, 1.0, "peak_hour_share"),
        (1, 0.004, 0.9, 1.0, "headroom_ratio"),
        (1, 0.004, 1.5, 0.0, "burst_s"),
    ],
)
def test_bad_parameters_are_named(
    count: int, share: float, headroom: float, burst_s: float, names: str
) -> None:
    with pytest.raises(ForecastAllocationError, match=names):
        allocation_from_forecast(
            count, peak_hour_share=share, headroom_ratio=headroom, burst_s=burst_s
        )


@given(
    st.integers(0, 10_000_000_000),
    st.floats(1e-6, 1.0),
    st.floats(1.0, 100.0),
    st.floats(0.01, 3600.0),
)
def test_the_rate_is_the_formula_and_the_burst_covers_it(
    count: int, share: float, headroom: float, burst_s: float
) -> None:
    a = allocation_from_forecast(
        count, peak_hour_share=share, headroom_ratio=headroom, burst_s=burst_s
    )
    assert a.rate_per_s == pytest.approx(count * share / 3600 * headroom)
    assert a.burst >= 1
    assert a.burst >= a.rate_per_s * burst_s - 1e-6
    assert a.burst == max(1, math.ceil(a.rate_per_s * burst_s))
    more = allocation_from_forecast(
        count + 1000, peak_hour_share=share, headroom_ratio=headroom, burst_s=burst_s
    )
    assert more.rate_per_s >= a.rate_per_s  # a larger forecast never lowers the allocation
