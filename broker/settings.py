"""Kafka client settings, one frozen object passed by keyword to every factory."""

from __future__ import annotations

from typing import Any

import msgspec

from broker.security import KafkaSecurity, client_kwargs

__all__ = ["KafkaSettings"]


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How dccgate talks to Kafka.

    Defaults suit a production cluster; `for_embedded()` returns the values that suit the
    embedded broker (see docs/operations.md for why each one differs).
    """

    bootstrap: str
    """`host:port[,host:port...]` of the cluster."""
    client_id: str = "dccgate"
    topic_prefix: str = ""
    """Prepended to every topic name, e.g. `staging.` gives `staging.dcc.sr.inbound`."""
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 100
    """How long a fetch waits for data. On Apache Kafka new data wakes the fetch at once;
    on the embedded broker it does not, so this is the idle end-to-end latency floor."""
    max_poll_records: int = 2_000
    """Largest batch the consume-process-produce loop takes at once."""
    max_batches_in_flight: int = 2
    """Batches sent but not yet acknowledged and committed at once; with max_poll_records
    this bounds the duplicates after a crash."""
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    fetch_max_bytes: int = 16 * 1024 * 1024
    linger_ms: int = 2
    max_batch_bytes: int = 1024 * 1024
    request_timeout_ms: int = 30_000
    acks: int | str = "all"
    delivery_timeout_s: float = 120.0
    """How long a batch's outputs are re-sent before the worker gives up and stops (its
    input offsets stay uncommitted, so nothing is lost)."""
    exactly_once: bool = False
    """Write each batch's outputs and commit its input offsets in one transaction
    (broker/transactions.py). Resolved from the `exactly_once` setting (auto|on|off) by
    `broker.transactions.resolve_exactly_once`; never on the embedded broker."""
    transaction_timeout_ms: int = 60_000
    """How long the broker lets a transaction stay open before it aborts it itself (a
    worker that died mid-transaction is normally fenced sooner, by the next owner)."""
    isolation_level: str = "read_committed"
    """What every consumer reads: committed transactional records only. The same as
    read_uncommitted on a topic no transaction writes to."""
    security: KafkaSecurity = KafkaSecurity()
    """TLS and SASL (broker/security.py); PLAINTEXT by default."""

    def for_embedded(self) -> KafkaSettings:
        """The same settings tuned for the embedded broker: a group join there waits
        max(1 s, session_timeout/2), so a short session keeps start-up quick."""
        return msgspec.structs.replace(
            self, session_timeout_ms=2_000, heartbeat_interval_ms=300, fetch_max_wait_ms=50
        )

    def consumer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaConsumer`, without group or topics."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
            "fetch_max_bytes": self.fetch_max_bytes,
            "request_timeout_ms": self.request_timeout_ms,
            "isolation_level": self.isolation_level,
            **client_kwargs(self.security),
        }

    def producer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaProducer`."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "acks": self.acks,
            "linger_ms": self.linger_ms,
            "max_batch_size": self.max_batch_bytes,
            "request_timeout_ms": self.request_timeout_ms,
            **client_kwargs(self.security),
        }

    def admin_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaAdminClient`."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": f"{self.client_id}-admin",
            "request_timeout_ms": self.request_timeout_ms,
            **client_kwargs(self.security),
        }
