"""Reading Users' monthly Service Request forecasts out of a configuration snapshot.

Forecasts live on `dcc.control` at `forecasts/<user_id>/<YYYY-MM>` (workers.config.model,
`Forecast`), one item per User and month, so each month's forecast has its own version
and audit trail and "the User's most recent forecast for that month" (SEC H3.24) is simply
the item in force.
"""

from __future__ import annotations

from collections.abc import Set

from workers.config.model import KINDS, Forecast
from workers.config.snapshot import ConfigSnapshot
from workers.duis.catalogue import load_catalogue

__all__ = ["FORECASTS", "forecast_of", "forecastable_srvs", "forecasts_of_month"]

FORECASTS = KINDS["forecasts"]
_PREFIX = FORECASTS.name + "/"


def forecast_of(snapshot: ConfigSnapshot, user_id: str, month: str) -> Forecast | None:
    """The forecast in force of `user_id` for `month` (YYYY-MM), if any."""
    item = snapshot.get(FORECASTS.key(user_id, month))
    found: Forecast | None = None if item is None else item.body
    return found


def forecasts_of_month(snapshot: ConfigSnapshot, month: str) -> dict[str, Forecast]:
    """Every User's forecast for `month` (YYYY-MM), by User ID."""
    suffix = "/" + month
    return {
        key[len(_PREFIX) : -len(suffix)]: item.body
        for key, item in snapshot.items.items()
        if key.startswith(_PREFIX) and key.endswith(suffix)
    }


def forecastable_srvs() -> Set[str]:
    """The SRVs a forecast may name and the actuals count by name: the DUIS catalogue's."""
    return load_catalogue().keys()
