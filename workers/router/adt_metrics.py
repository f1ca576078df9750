"""The router's anomaly-detection metrics: nearness to thresholds, read at scrape time.

Apart from `workers.router.adt` so that the changelog (`adt_state`) and the engine's
configuration (`adt`) do not import each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from workers.router.adt import AdtControl
from workers.router.adt_state import AdtStateStore

__all__ = ["AdtMetrics"]


class AdtMetrics(Collector):
    """How close Users and the DCC are to their thresholds, read from the engine at scrape
    time (nothing on the hot path), and what the counter changelog did.

    The per-User gauge covers the registered Users with ADT values of their own; a router
    knows the counts only of the Users whose partitions it owns and reports 0 for the others,
    so aggregate with `max by (user)` across routers.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        control: AdtControl,
        registered_users: Callable[[], frozenset[str]],
        state: AdtStateStore | None = None,
    ) -> None:
        self._control = control
        self._registered = registered_users
        self._state = state
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        engine = self._control.engine
        now_s = time.time()
        registered = self._registered()
        nearest = GaugeMetricFamily(
            "dccgate_adt_user_nearest_threshold_ratio",
            "Each registered User's count over the limit of its nearest ADT threshold "
            "(1 = the next request is quarantined), with that threshold's rule id.",
            labels=["user", "rule"],
        )
        count = GaugeMetricFamily(
            "dccgate_adt_user_nearest_threshold_requests",
            "Each registered User's count in the window of its nearest ADT threshold.",
            labels=["user", "rule"],
        )
        for user in sorted(set(engine.users()) & registered):
            usage = engine.nearest_threshold(user, now_s)
            if usage is not None:
                nearest.add_metric([user, usage.rule], usage.ratio)
                count.add_metric([user, usage.rule], usage.count)
        yield nearest
        yield count
        dcc = GaugeMetricFamily(
            "dccgate_adt_dcc_threshold_ratio",
            "Each DCC-wide ADT threshold: this router's count plus its peers' over the limit.",
            labels=["rule"],
        )
        for usage in engine.dcc_usage(now_s):
            dcc.add_metric([usage.rule], usage.ratio)
        yield dcc
        state = self._state
        if state is not None:
            for name, doc, value in (
                ("restored_users", "Users whose ADT counters were restored on assignment.",
                 state.restored_users),
                ("restore_errors", "ADT counter snapshots that could not be restored.",
                 state.restore_errors),
                ("releases_counted", "Released requests counted in their User's windows.",
                 state.releases_counted),
                ("snapshots", "ADT counter snapshots written to dcc.state.router.",
                 state.snapshots_written),
            ):  # fmt: skip
                yield CounterMetricFamily(f"dccgate_adt_state_{name}", doc, value=value)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
