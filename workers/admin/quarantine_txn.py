"""A quarantine decision's records in one transaction (exactly-once, on Apache Kafka).

With `exactly_once` on, a release's forward to `dcc.sr.outbound`, the User's answer on
`dcc.user.responses` and the decision record on `dcc.sr.quarantine` (and an expiry's answer
and record) are written in one transaction: a read_committed reader sees all of them or
none, so an admin process killed half-way never leaves a forward without its decision, and
the retry that follows forwards nothing twice. The audit record is written and read back
before the transaction (the audit log reads dcc.audit), so the audit trail may still show
an attempt that was then not committed, never a decision without its audit record.

Every admin process of a deployment uses the same transactional id, so the newest one
fences a predecessor that is still finishing a decision (its transaction is aborted and it
answers 503, "try again"); a fenced process takes the id back on its next decision.
"""

from __future__ import annotations

import asyncio
import logging

from broker.errors import FencedError
from broker.producer import BatchProducer, OutputBatch
from broker.settings import KafkaSettings
from broker.topics import Topics

__all__ = ["DecisionTransactions", "quarantine_transactional_id"]

log = logging.getLogger(__name__)


def quarantine_transactional_id(settings: KafkaSettings) -> str:
    """The transactional id of quarantine decisions: one per deployment (topic prefix)."""
    return f"{settings.topic_prefix}dccgate-quarantine"


class DecisionTransactions:
    """The transactional producer of quarantine decisions; `write()` one at a time."""

    def __init__(self, settings: KafkaSettings, topics: Topics) -> None:
        self._producer = BatchProducer(
            settings, transactional_id=quarantine_transactional_id(settings)
        )
        self._topics = [topics.sr_outbound, topics.user_responses, topics.sr_quarantine]
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect, learn the partition counts and register the transactional id."""
        await self._producer.start()
        try:
            await self._producer.prepare(self._topics)
            await self._producer.init_transactions()
        except BaseException:
            await self._producer.stop()
            raise

    async def stop(self) -> None:
        """Disconnect (a transaction under way is aborted by the broker)."""
        await self._producer.stop()

    def batch(self) -> OutputBatch:
        """An empty batch for one decision's records."""
        return self._producer.batch()

    async def write(self, out: OutputBatch) -> None:
        """Write every record of `out` in one transaction; raise BrokerError (DeliveryError,
        FencedError) if it was not committed, in which case none of it is visible."""
        records = out.take()
        async with self._lock:
            try:
                await self._producer.transact(records, {}, "")
            except FencedError as exc:
                # Another admin process took the id over: take it back for the next
                # decision; this one is reported as not sent (nothing of it is visible).
                log.warning("quarantine decisions: %s; taking the id back", exc)
                await self._producer.renew()
                raise
