"""Group commit to Kafka for the ingress: the records of requests that arrive together go
to the broker in one `BatchProducer.send`, and each request still waits for its own
record's acknowledgement before it is answered.

One send is in flight at a time. Records that arrive while it is in flight are gathered
into the next batch, sent as soon as the one before is acknowledged; a record arriving
when nothing is in flight is sent at once (no linger). So under load a request costs an
append to a batch instead of a send through aiokafka's per-record path and a future
awaited per record, and a quiet ingress adds no delay.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from broker.errors import DeliveryError
from broker.producer import BatchProducer, Headers, OutputBatch

__all__ = ["GroupPublisher", "Publisher"]

MAX_BATCH_RECORDS = 2000
"""At most this many records per send; more wait for the next (bounds one send's size)."""


class Publisher(Protocol):
    """What the ingress publishes through: one record, acknowledged before it returns."""

    async def send_one(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Headers = ()
    ) -> object:
        """Send one record; raises DeliveryError when the broker does not acknowledge it."""
        ...


class GroupPublisher:
    """`send_one` over a shared `BatchProducer`, concurrent calls sent as one batch."""

    def __init__(self, producer: BatchProducer, *, max_batch_records: int = MAX_BATCH_RECORDS):
        self._producer = producer
        self._max = max_batch_records
        self._batch: OutputBatch | None = None
        self._count = 0
        self._acked: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self.sends = 0
        """Batches sent so far (for tests and the benchmark)."""

    async def send_one(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Headers = ()
    ) -> None:
        """Add the record to the next batch and wait until the broker acknowledged it.

        Raises DeliveryError when the batch was not acknowledged (BatchProducer retries
        for its delivery timeout first). A caller that is cancelled does not cancel the
        batch: the other requests in it still get their acknowledgement.
        """
        while self._batch is not None and self._count >= self._max:
            # The next batch is full: wait until it has been sent, then start another.
            full = self._acked
            assert full is not None
            with contextlib.suppress(DeliveryError):
                await asyncio.shield(full)
        if self._batch is None:
            self._batch = self._producer.batch()
            self._count = 0
            self._acked = asyncio.get_running_loop().create_future()
            # Nobody may be left to read a failure (every caller cancelled): mark it read.
            self._acked.add_done_callback(_consume)
        self._batch.add(topic, key, value, headers)
        self._count += 1
        acked = self._acked
        assert acked is not None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="ingress-publisher")
        await asyncio.shield(acked)

    async def _send_all(self) -> None:
        while self._batch is not None:
            batch, acked = self._batch, self._acked
            assert acked is not None
            self._batch, self._acked, self._count = None, None, 0
            self.sends += 1
            try:
                await self._producer.send(batch)
            except DeliveryError as exc:
                acked.set_exception(exc)
            except asyncio.CancelledError:
                acked.set_exception(DeliveryError("the ingress stopped before Kafka acknowledged"))
                raise
            except Exception as exc:  # every waiter must get an answer
                acked.set_exception(DeliveryError(f"records not sent: {exc!r}"))
            else:
                acked.set_result(None)


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
