"""Prometheus metrics of the quarantine service (SEC G6 (c)), in the admin process.

- `dccgate_quarantine_pending`: requests waiting for the User's decision;
- `dccgate_quarantine_oldest_pending_age_seconds`: how long the oldest of them has waited
  (0 when none is pending); a pending request expires, answered `deleted`, at
  `DCCGATE_QUARANTINE_PENDING_MAX_S`;
- `dccgate_quarantine_pending_max_seconds`: that configured maximum, so an alert can fire
  at a share of it;
- `dccgate_quarantine_decisions_total{decision,by}`: decisions this process took, by
  outcome (`released`, `deleted`, `expired`) and by whom (`user`, `operator`, `expiry`).

The two gauges are read from the quarantine book when Prometheus scrapes, so they are exact
after every change and age between changes without a timer. Every admin process follows the
whole quarantine log, so each reports the same gauges: aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from adt import QuarantineBook

__all__ = ["DecidedBy", "Decision", "QuarantineMetrics"]

Decision = Literal["released", "deleted", "expired"]
DecidedBy = Literal["user", "operator", "expiry"]
_LABELS: tuple[tuple[Decision, DecidedBy], ...] = (
    ("released", "user"),
    ("released", "operator"),
    ("deleted", "user"),
    ("deleted", "operator"),
    ("expired", "expiry"),
)


class QuarantineMetrics:
    """The quarantine's gauges and decision counter on `registry`.

    book: the quarantine book the gauges read at scrape time.
    clock: epoch seconds now (injected so tests need not wait), default `time.time`.
    """

    def __init__(
        self, registry: CollectorRegistry, book: QuarantineBook, clock: Callable[[], float]
    ) -> None:
        self.pending = Gauge(
            "dccgate_quarantine_pending",
            "Quarantined Service Requests waiting for a release or delete decision.",
            registry=registry,
        )
        self.pending.set_function(lambda: float(book.pending_count))
        self.oldest_age = Gauge(
            "dccgate_quarantine_oldest_pending_age_seconds",
            "Time since the oldest pending quarantined request was quarantined (0 if none).",
            registry=registry,
        )

        def oldest_age_s() -> float:
            oldest = book.oldest_pending_at_s()
            return 0.0 if oldest is None else max(0.0, clock() - oldest)

        self.oldest_age.set_function(oldest_age_s)
        self.pending_max = Gauge(
            "dccgate_quarantine_pending_max_seconds",
            "How long a quarantined request may wait for a decision before it expires.",
            registry=registry,
        )
        self.pending_max.set(book.pending_max_s)
        self.decisions = Counter(
            "dccgate_quarantine_decisions",
            "Quarantine decisions taken, by decision (released, deleted, expired) and by "
            "whom (user, operator, expiry).",
            ["decision", "by"],
            registry=registry,
        )
        # Every bounded label pair exported from the start, so rate() sees the first one.
        self._children = {pair: self.decisions.labels(*pair) for pair in _LABELS}

    def decided(self, decision: Decision, by: DecidedBy, count: int = 1) -> None:
        """Count `count` decisions of one kind."""
        if count:
            self._children[(decision, by)].inc(count)
