"""Prometheus metrics of the DUIS ingress."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from workers.ingress.codes import REFUSALS

__all__ = ["OUTCOMES", "IngressMetrics"]

OUTCOMES = (
    "refused",
    "accepted",
    "rejected",
    "throttled",
    "quarantined",
    "released",
    "deleted",
    "pending",
)
_SERVICES = ("serviceD", "serviceS", "serviceT")
_OTHER = "other"


class IngressMetrics:
    """Requests by web service and outcome, refusals by check, key-separation refusals per
    User (registered Users by name, others as `other`), and the time to answer."""

    def __init__(self, registry: CollectorRegistry, registered: Callable[[str], bool]) -> None:
        self._registered = registered
        requests = Counter(
            "dccgate_duis_requests",
            "DUIS requests answered by the ingress, by web service and outcome",
            ["service", "outcome"],
            registry=registry,
        )
        self._requests = {(s, o): requests.labels(s, o) for s in _SERVICES for o in OUTCOMES}
        refusals = Counter(
            "dccgate_duis_refusals",
            "DUIS requests refused by the ingress, by the check that failed",
            ["check"],
            registry=registry,
        )
        self._refusals = {kind: refusals.labels(kind) for kind in REFUSALS}
        self._other_refusal = refusals.labels(_OTHER)
        self.key_separation = Counter(
            "dccgate_duis_key_separation_refusals",
            "Requests refused by the signing-key separation control (SEC Appendix AD 3.3.1), "
            "per User",
            ["user"],
            registry=registry,
        )
        self.answer_seconds = Histogram(
            "dccgate_duis_answer_seconds",
            "Time from a DUIS request's arrival to its synchronous answer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.waiting = Gauge(
            "dccgate_duis_waiting_requests",
            "Requests waiting for the router's decision now",
            registry=registry,
        )

    def answered(self, service: str, outcome: str, seconds: float) -> None:
        """Count one answer."""
        child = self._requests.get((service, outcome))
        if child is not None:
            child.inc()
        self.answer_seconds.observe(seconds)

    def refused(self, check: str, user_id: str | None) -> None:
        """Count one refusal by `check`; key-separation refusals also per User."""
        self._refusals.get(check, self._other_refusal).inc()
        if check == "key_separation":
            label = user_id if user_id is not None and self._registered(user_id) else _OTHER
            self.key_separation.labels(label).inc()
