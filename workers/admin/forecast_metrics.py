"""Live forecast metrics of the admin process (SEC H3.24; docs/forecasts.md):

- `dccgate_forecast_actual_requests{user}`: requests each registered User sent this (UTC)
  month so far, every first-decision outcome (workers/admin/actuals.py);
- `dccgate_forecast_requests{user}`: its forecast for this month, all SRVs (absent for a
  User with no forecast for the month);
- `dccgate_forecast_missing_requests_total{user}`: requests counted by this process whose
  month and SRV had no forecast when they were counted;
- `dccgate_actuals_ignored_total{reason}`: answers read but not counted (`later_answer`:
  Q4/Q5; `unregistered`; `unreadable`);
- `dccgate_actuals_state_restored_records`: count records restored at start.

Everything is read from the actuals book and the configuration when Prometheus scrapes:
nothing on the path that counts. The `user` label is only ever a registered User (STYLE).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from workers.admin.actuals import ActualsBook, total_sent
from workers.config.forecasts import forecasts_of_month
from workers.config.months import month_of_s
from workers.config.reader import ControlReader

__all__ = ["IGNORED_REASONS", "ForecastMetrics"]

IGNORED_REASONS = ("later_answer", "unregistered", "unreadable")


class ForecastMetrics(Collector):
    """Month-to-date actuals against forecasts, per registered User, at scrape time."""

    def __init__(
        self, book: ActualsBook, reader: ControlReader, clock: Callable[[], float]
    ) -> None:
        self._book = book
        self._reader = reader
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snapshot = self._reader.snapshot
        month = month_of_s(self._clock())
        users = sorted(snapshot.users)
        actual = GaugeMetricFamily(
            "dccgate_forecast_actual_requests",
            "Service Requests each registered User sent this UTC month so far (accepted, "
            "rejected, throttled or quarantined).",
            labels=["user"],
        )
        forecast = GaugeMetricFamily(
            "dccgate_forecast_requests",
            "Each registered User's forecast of its Service Requests for this UTC month, all "
            "SRVs (absent: no forecast).",
            labels=["user"],
        )
        forecasts = forecasts_of_month(snapshot, month)
        for user in users:
            actual.add_metric([user], float(total_sent(self._book.of(user, month))))
            found = forecasts.get(user)
            if found is not None:
                forecast.add_metric([user], float(sum(found.counts.values())))
        missing = CounterMetricFamily(
            "dccgate_forecast_missing_requests",
            "Service Requests counted with no forecast for their month and SRV, per "
            "registered User.",
            labels=["user"],
        )
        for user in users:
            missing.add_metric([user], float(self._book.unforecast.get(user, 0)))
        ignored = CounterMetricFamily(
            "dccgate_actuals_ignored",
            "Answers on dcc.user.responses read but not counted as actuals, by reason.",
            labels=["reason"],
        )
        for reason in IGNORED_REASONS:
            ignored.add_metric([reason], float(self._book.ignored.get(reason, 0)))
        restored = GaugeMetricFamily(
            "dccgate_actuals_state_restored_records",
            "Count records restored from dcc.state.actuals when this process started.",
            value=float(self._book.restored_records),
        )
        yield from (actual, forecast, missing, ignored, restored)

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(())
