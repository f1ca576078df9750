"""Dead-lettering: a record that cannot be decoded is kept, never dropped.

The dead-letter record carries the original key, value and headers byte for byte, plus
headers that say why and where it came from (docs/contract.md, "dcc.deadletter").
"""

from __future__ import annotations

from broker.consumer import Record
from broker.producer import OutputBatch

__all__ = ["DLQ_HEADER_PREFIX", "deadletter", "dlq_headers"]

DLQ_HEADER_PREFIX = "dccgate-dlq-"


def dlq_headers(
    record: Record, *, service: str, kind: str, reason: str, at_ms: int
) -> list[tuple[str, bytes]]:
    """The original headers of `record` followed by the dead-letter headers."""
    return [
        *(record.headers or ()),
        ("dccgate-dlq-kind", kind.encode()),
        ("dccgate-dlq-reason", reason.encode()),
        ("dccgate-dlq-service", service.encode()),
        ("dccgate-dlq-topic", record.topic.encode()),
        ("dccgate-dlq-partition", str(record.partition).encode()),
        ("dccgate-dlq-offset", str(record.offset).encode()),
        ("dccgate-dlq-at-ms", str(at_ms).encode()),
    ]


def deadletter(
    out: OutputBatch,
    topic: str,
    record: Record,
    *,
    service: str,
    kind: str,
    reason: str,
    at_ms: int,
) -> None:
    """Add `record` to `out` for the dead-letter `topic`, with its reason.

    `kind` is a short, bounded label for metrics (e.g. `invalid_json`); `reason` the full
    human-readable explanation.
    """
    out.add(
        topic,
        record.key,
        record.value,
        headers=dlq_headers(record, service=service, kind=kind, reason=reason, at_ms=at_ms),
    )
