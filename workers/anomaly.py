"""Anomaly detection (SEC G6, Appendix AA) in the router: values from `dcc.control`.

The decisions are `adt.AdtEngine`'s (pure). This module keeps the engine's tables in step
with the configuration: each User's ADT values and the DCC-wide ones, recompiled only for
the items whose version changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adt import AdtEngine, AdtValues
from workers.control.state import ConfigSnapshot

if TYPE_CHECKING:
    from workers.adt_state import AdtStateStore

__all__ = ["AdtControl", "AdtMetrics"]

log = logging.getLogger(__name__)

_USERS = "adt.users/"


class AdtControl:
    """The router's ADT engine and the configuration versions it was built from.

    `configured` is False while no ADT values exist at all: the router then skips the
    check entirely.
    """

    def __init__(self, engine: AdtEngine | None = None) -> None:
        self.engine = engine or AdtEngine()
        self.configured = False
        self._versions: dict[str, int] = {}

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Take a new configuration (a control-reader listener)."""
        seen: set[str] = set()
        for key, item in snapshot.items.items():
            if not (key.startswith(_USERS) or key == "adt.dcc"):
                continue
            seen.add(key)
            if self._versions.get(key) == item.version:
                continue
            if key == "adt.dcc":
                self.engine.set_dcc_values(item.body)
            else:
                self.engine.set_user_values(key[len(_USERS) :], item.body)
            self._versions[key] = item.version
        for key in set(self._versions) - seen:
            if key == "adt.dcc":
                self.engine.set_dcc_values(AdtValues())
            else:
                self.engine.set_user_values(key[len(_USERS) :], None)
            del self._versions[key]
        was, self.configured = self.configured, bool(self._versions)
        if was != self.configured:
            log.info("anomaly detection %s", "on" if self.configured else "off (no ADT values)")


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
