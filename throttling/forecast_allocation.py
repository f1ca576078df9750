"""SECMP0067 allocations derived from a User's monthly Service Request forecast.

SECMP0067 leaves open how allocations are set; its problem statement has the DCC working
with Users "to meet forecasted demand" (DOMAIN.md sections 6 and 8). A deployment may let a
User's forecast stand in for an explicit allocation:

    rate_per_s = month_count x peak_hour_share / 3600 x headroom_ratio
    burst      = max(1, ceil(rate_per_s x burst_s))

`peak_hour_share` is the fraction of a month's requests expected in its busiest hour (an even
spread over a 30-day month is 1/720, about 0.0014); `headroom_ratio` lets a User exceed its
expected peak a little before it counts as over its allocation. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math

from throttling.traffic import Allocation

__all__ = ["ForecastAllocationError", "allocation_from_forecast"]

_HOUR_S = 3600.0


class ForecastAllocationError(ValueError):
    """A parameter of the derivation is out of range."""


def allocation_from_forecast(
    month_count: int,
    *,
    peak_hour_share: float,
    headroom_ratio: float,
    burst_s: float,
) -> Allocation:
    """The allocation for a User that forecast `month_count` Service Requests this month.

    month_count: requests forecast for the month, all SRVs (>= 0).
    peak_hour_share: fraction of the month's requests in its busiest hour (0 < share <= 1).
    headroom_ratio: multiplier over the expected peak rate (>= 1).
    burst_s: seconds of the derived rate the User may send at once (> 0); burst >= 1.
    """
    if month_count < 0:
        raise ForecastAllocationError(f"month_count must be >= 0, got {month_count}")
    if not 0 < peak_hour_share <= 1:
        raise ForecastAllocationError(
            f"peak_hour_share must be > 0 and <= 1, got {peak_hour_share}"
        )
    if not 1 <= headroom_ratio <= 100:
        raise ForecastAllocationError(f"headroom_ratio must be 1 to 100, got {headroom_ratio}")
    if not 0 < burst_s <= 3600:
        raise ForecastAllocationError(f"burst_s must be > 0 and <= 3600, got {burst_s}")
    rate_per_s = month_count * peak_hour_share / _HOUR_S * headroom_ratio
    burst = max(1, math.ceil(rate_per_s * burst_s))
    return Allocation(rate_per_s=rate_per_s, burst=burst)
