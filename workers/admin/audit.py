"""The audit trail: every accepted change, who made it, when, old and new value.

Written to `dcc.audit` (not compacted, about 13 months' retention) next to each change on
`dcc.control`, and kept in memory by the admin service for `GET /v1/audit`: the most recent
`capacity` records (100,000 by default), rebuilt from the topic at start.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator

import msgspec

from broker.consumer import Record
from broker.follower import TopicFollower
from broker.schemas import AuditRecord
from broker.settings import KafkaSettings

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder(AuditRecord).decode


class AuditLog:
    """The recent audit records, oldest first, rebuilt from `topic`."""

    def __init__(self, settings: KafkaSettings, topic: str, *, capacity: int = 100_000) -> None:
        self._records: collections.deque[AuditRecord] = collections.deque(maxlen=capacity)
        self._follower = TopicFollower(settings, topic, self._apply, name="audit")

    async def start(self) -> None:
        """Start reading the audit topic."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop reading."""
        await self._follower.stop()

    @property
    def problem(self) -> str | None:
        """Why `dcc.audit` cannot be followed now, or None."""
        return self._follower.problem

    async def wait_applied(self, offset: int, timeout_s: float = 5.0) -> None:
        """Wait until the record at `offset` is readable."""
        await self._follower.wait_offset(0, offset, timeout_s)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            try:
                self._records.append(_decode(rec.value or b""))
            except msgspec.DecodeError as exc:
                log.warning("dcc.audit offset %d is not an audit record: %s", rec.offset, exc)

    def query(
        self,
        *,
        key_prefix: str = "",
        by: str | None = None,
        since_ms: int = 0,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The newest `limit` records matching every filter given, newest first."""
        out: list[AuditRecord] = []
        for record in self._newest_first():
            if record.at_ms < since_ms:
                continue  # log order is only nearly time order (several admin clocks)
            if until_ms is not None and record.at_ms > until_ms:
                continue
            if key_prefix and not record.key.startswith(key_prefix):
                continue
            if by is not None and record.by != by:
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def _newest_first(self) -> Iterator[AuditRecord]:
        return reversed(self._records)
