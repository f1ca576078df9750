"""Dead-lettering: a record that cannot be decoded is kept, never dropped.

The dead-letter record carries the original key, value and headers byte for byte, plus
headers that say why and where it came from (docs/contract.md, "dcc.deadletter").
"""

from __future__ import annotations

from broker.consumer import Record
from broker.producer import OutputBatch
from workers.runtime.headers import own_headers_dropped

__all__ = ["DLQ_HEADER_PREFIX", "deadletter", "dlq_headers", "processing_error"]

DLQ_HEADER_PREFIX = "dccgate-dlq-"
_ERROR_TEXT_CHARS = 300
"""The most of an exception's text a reason carries: a message may quote the input."""


def processing_error(stage: str, exc: BaseException) -> str:
    """The reason of a record a stage raised on: `processing_error: STAGE: Type: text`."""
    text = str(exc)
    if len(text) > _ERROR_TEXT_CHARS:
        text = text[: _ERROR_TEXT_CHARS - 3] + "..."
    return f"processing_error: {stage}: {type(exc).__name__}: {text}"


def dlq_headers(
    record: Record, *, service: str, kind: str, reason: str, at_ms: int
) -> list[tuple[str, bytes]]:
    """The original headers of `record` (less any that claim the gateway's own `dccgate-`
    prefix) followed by the dead-letter headers."""
    return [
        *own_headers_dropped(record.headers),
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
