"""workers.admin.quarantine_metrics: gauges read at scrape, bounded decision labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from adt import Breach, QuarantineBook
from workers.admin.quarantine_metrics import QuarantineMetrics

T0 = 1_700_000_000.0
USER = "90-B3-D5-1F-30-01-00-00"
BREACH = Breach(kind="user_adt", rule=f"user:{USER}:7.2:3600", observed=2, limit=1, reason="r")


def test_gauges_follow_the_book_and_the_clock() -> None:
    registry = CollectorRegistry()
    book = QuarantineBook(pending_max_s=3600)
    now = [T0]
    QuarantineMetrics(registry, book, lambda: now[0])

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    assert (
        value("dccgate_quarantine_pending"),
        value("dccgate_quarantine_oldest_pending_age_seconds"),
    ) == (0, 0)
    assert value("dccgate_quarantine_pending_max_seconds") == 3600
    book.quarantine("a", USER, "7.2", BREACH, T0)
    book.quarantine("b", USER, "7.2", BREACH, T0 + 10)
    now[0] = T0 + 25
    assert value("dccgate_quarantine_pending") == 2
    assert value("dccgate_quarantine_oldest_pending_age_seconds") == 25
    book.release("a", "alice", T0 + 30)
    now[0] = T0 + 40
    assert value("dccgate_quarantine_oldest_pending_age_seconds") == 30


def test_decisions_are_counted_with_every_label_pair_exported_from_the_start() -> None:
    registry = CollectorRegistry()
    metrics = QuarantineMetrics(registry, QuarantineBook(), lambda: T0)
    name = "dccgate_quarantine_decisions_total"
    assert registry.get_sample_value(name, {"decision": "expired", "by": "expiry"}) == 0
    metrics.decided("released", "user", 3)
    metrics.decided("deleted", "operator")
    assert registry.get_sample_value(name, {"decision": "released", "by": "user"}) == 3
    assert registry.get_sample_value(name, {"decision": "deleted", "by": "operator"}) == 1
