"""Metrics of the certificate registry (workers.admin.routes_certificates)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["CertificateMetrics"]


class CertificateMetrics:
    """Refusals of the key-separation control at registration, per User (registered Users
    only, so the label stays bounded)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.refusals = Counter(
            "dccgate_key_separation_registrations_refused",
            "Certificate registrations refused because the key is (or was) registered for the "
            "other usage (SEC Appendix AD 3.3.1), per User",
            ["user"],
            registry=registry or CollectorRegistry(),
        )
