"""workers.ingress.publisher: concurrent requests' records go to Kafka in one batch, each
caller waits for its own acknowledgement, and a failure reaches every caller of its batch."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import DeliveryError
from broker.producer import OutputBatch
from workers.ingress.publisher import GroupPublisher


class FakeProducer:
    """BatchProducer's batch()/send(); each send waits for the test to release it."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[list[tuple[bytes | None, bytes | None]]] = []
        self.release = asyncio.Event()
        self.fail = fail

    def batch(self) -> OutputBatch:
        return OutputBatch({"t": 3, "audit": 1})

    async def send(self, batch: OutputBatch) -> None:
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise DeliveryError("not acknowledged")
        self.sent.append([(r[0], r[1]) for _, _, r in batch.records()])


async def _publish(publisher: GroupPublisher, n: int, start: int = 0) -> list[asyncio.Task[None]]:
    tasks = [
        asyncio.create_task(publisher.send_one("t", f"k{i}".encode(), f"v{i}".encode()))
        for i in range(start, start + n)
    ]
    await asyncio.sleep(0)
    return tasks


async def test_records_of_concurrent_requests_go_in_one_send_and_each_is_acknowledged() -> None:
    producer = FakeProducer()
    publisher = GroupPublisher(producer)  # type: ignore[arg-type]
    first = await _publish(publisher, 1)
    await asyncio.sleep(0)  # the first send is in flight, holding one record
    more = await _publish(publisher, 5, start=1)
    assert not any(t.done() for t in first + more)  # nobody answered before the ack
    producer.release.set()
    await asyncio.gather(*first, *more)
    assert [len(batch) for batch in producer.sent] == [1, 5]
    assert sorted(v or b"" for batch in producer.sent for _, v in batch) == sorted(
        f"v{i}".encode() for i in range(6)
    )
    assert publisher.sends == 2


async def test_a_record_alone_is_sent_at_once() -> None:
    producer = FakeProducer()
    producer.release.set()
    publisher = GroupPublisher(producer)  # type: ignore[arg-type]
    await asyncio.wait_for(publisher.send_one("t", b"k", b"v", headers=[("h", b"1")]), 1)
    assert producer.sent == [[(b"k", b"v")]]


async def test_a_failed_send_fails_every_caller_of_that_batch_only() -> None:
    producer = FakeProducer(fail=1)
    publisher = GroupPublisher(producer)  # type: ignore[arg-type]
    failing = await _publish(publisher, 3)
    producer.release.set()
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(r, DeliveryError) for r in results)
    await asyncio.wait_for(publisher.send_one("t", b"k", b"v"), 1)  # the next one passes
    assert producer.sent == [[(b"k", b"v")]]


async def test_a_cancelled_caller_does_not_cancel_the_batch() -> None:
    producer = FakeProducer()
    publisher = GroupPublisher(producer)  # type: ignore[arg-type]
    tasks = await _publish(publisher, 2)
    tasks[0].cancel()
    producer.release.set()
    await tasks[1]
    assert len(producer.sent[0]) == 2
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]


async def test_a_full_batch_makes_further_records_wait_for_the_next() -> None:
    producer = FakeProducer()
    publisher = GroupPublisher(producer, max_batch_records=2)  # type: ignore[arg-type]
    tasks = await _publish(publisher, 1)
    await asyncio.sleep(0)
    tasks += await _publish(publisher, 5, start=1)
    producer.release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert len(producer.sent[0]) == 1
    assert max(len(b) for b in producer.sent) <= 2
    assert sum(len(b) for b in producer.sent) == 6
