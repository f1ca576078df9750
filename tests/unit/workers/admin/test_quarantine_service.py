"""workers.admin.quarantine: a decision is final only once Kafka acknowledged its records.

A fake producer refuses chosen sends (as `BatchProducer.send_one` does when a record is not
acknowledged: `DeliveryError`), or holds them until released, so every step of a decision
can fail and be retried, and a second decision can arrive while the first is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from broker.errors import DeliveryError
from broker.schemas import AuditRecord, QuarantinedRequest
from broker.settings import KafkaSettings
from broker.topics import Topics
from tests.unit.records import FakeRecord
from workers.admin.quarantine import (
    DecisionNotSentError,
    DecisionRefusedError,
    QuarantineService,
    Selection,
)
from workers.admin.tokens import Principal
from workers.config.codes import ResponseCodes

T0 = 1_700_000_000.0
USER = "90-B3-D5-1F-30-01-00-00"
OPERATOR = Principal("operator", "op1")
TOPICS = Topics.with_prefix("")


def _id(n: int) -> str:
    return f"{USER}:00-DB-00-00-00-00-00-{n:02X}:{n}"


class FakeProducer:
    """Records every acknowledged send; `refuse(topic)` says which sends fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.refuse: Callable[[str, bytes | None], bool] = lambda topic, value: False
        self.gate: asyncio.Event | None = None  # when set: sends wait for it

    async def send_one(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int]:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse(topic, value):
            raise DeliveryError(f"record to {topic} not acknowledged: KafkaTimeoutError")
        self.sent.append((topic, key, value))
        return 0, len(self.sent) - 1

    def on(self, topic: str) -> list[bytes | None]:
        """The values acknowledged on `topic`, in order."""
        return [value for t, _, value in self.sent if t == topic]


class FakeAuditWriter:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.fail = False

    async def record_many(self, audits: list[AuditRecord]) -> None:
        if self.fail:
            raise DeliveryError("record to dcc.audit not acknowledged: KafkaTimeoutError")
        self.records.extend(audits)


def _service(
    producer: FakeProducer, writer: FakeAuditWriter, registry: CollectorRegistry | None = None
) -> QuarantineService:
    service = QuarantineService(
        KafkaSettings(bootstrap="127.0.0.1:1"),
        TOPICS,
        producer,
        writer,
        ResponseCodes(),
        clock=lambda: T0 + 60,
        registry=registry,
    )
    held = [
        QuarantinedRequest(
            id=_id(n),
            user_id=USER,
            srv="7.2",
            kind="user_adt",
            rule="r",
            reason="too many",
            at_s=T0 + n,
            observed=4,
            limit=3,
            response_code="Q1",
            request=msgspec.Raw(b'{"request_id": "%s"}' % _id(n).encode()),
        )
        for n in range(1, 5)
    ]
    service._apply(
        [
            FakeRecord(topic=TOPICS.sr_quarantine, offset=i, value=msgspec.json.encode(h))
            for i, h in enumerate(held)
        ]
    )
    return service


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def writer() -> FakeAuditWriter:
    return FakeAuditWriter()


@pytest.mark.parametrize("topic", [TOPICS.sr_outbound, TOPICS.user_responses, TOPICS.sr_quarantine])
async def test_a_release_not_acknowledged_stays_pending_and_a_retry_decides_it(
    producer: FakeProducer, writer: FakeAuditWriter, topic: str
) -> None:
    service = _service(producer, writer)
    producer.refuse = lambda t, _: t == topic
    with pytest.raises(DecisionNotSentError, match="still pending: try again"):
        await service.decide(_id(1), "release", OPERATOR)
    entry = service.book.get(_id(1))
    assert entry is not None
    assert entry.state == "pending"
    assert not service._deciding
    # Nothing after the failed step was sent; the decision record (the commit) never was.
    assert producer.on(TOPICS.sr_quarantine) == []

    producer.refuse = lambda t, _: False
    doc = await service.decide(_id(1), "release", OPERATOR)
    assert doc is not None
    assert doc["state"] == "released"
    assert len(producer.on(TOPICS.sr_quarantine)) == 1
    assert producer.on(TOPICS.sr_outbound)[-1] == b'{"request_id": "%s"}' % _id(1).encode()
    with pytest.raises(DecisionRefusedError, match="final"):
        await service.decide(_id(1), "release", OPERATOR)


async def test_the_steps_run_in_order_and_the_decision_record_comes_last(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    await service.decide(_id(1), "release", OPERATOR)
    assert [t for t, _, _ in producer.sent] == [
        TOPICS.sr_outbound,
        TOPICS.user_responses,
        TOPICS.sr_quarantine,
    ]
    assert [a.action for a in writer.records] == ["quarantine.release"]


async def test_a_delete_whose_audit_fails_stays_pending(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    writer.fail = True
    with pytest.raises(DecisionNotSentError, match=r"dcc\.audit"):
        await service.decide(_id(2), "delete", OPERATOR)
    assert producer.on(TOPICS.sr_quarantine) == []
    writer.fail = False
    doc = await service.decide(_id(2), "delete", OPERATOR)
    assert doc is not None
    assert doc["state"] == "deleted"


async def test_a_second_decision_while_the_first_is_in_flight_is_refused(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    producer.gate = asyncio.Event()
    first = asyncio.create_task(service.decide(_id(1), "release", OPERATOR))
    await asyncio.sleep(0)  # the first has claimed the request and is sending
    assert service._deciding == {_id(1): "release"}
    with pytest.raises(DecisionRefusedError, match="being decided"):
        await service.decide(_id(1), "delete", OPERATOR)
    many = asyncio.create_task(
        service.decide_many("delete", OPERATOR, Selection(user_id=USER), limit=10)
    )
    await asyncio.sleep(0)
    assert set(service._deciding) == {_id(1), _id(2), _id(3), _id(4)}
    with pytest.raises(DecisionRefusedError, match="being decided"):
        await service.decide(_id(2), "release", OPERATOR)
    producer.gate.set()
    doc, bulk = await first, await many
    assert doc is not None
    assert doc["state"] == "released"
    assert [(s["id"], s["state"]) for s in bulk["skipped"]] == [(_id(1), "pending")]
    assert "being decided" in bulk["skipped"][0]["reason"]
    assert {e["id"] for e in bulk["decided"]} == {_id(2), _id(3), _id(4)}
    assert not service._deciding


async def test_a_failed_in_flight_decision_frees_the_request_for_another(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    producer.gate = asyncio.Event()
    producer.refuse = lambda t, _: True
    first = asyncio.create_task(service.decide(_id(1), "release", OPERATOR))
    await asyncio.sleep(0)
    producer.gate.set()
    with pytest.raises(DecisionNotSentError):
        await first
    producer.refuse = lambda t, _: False
    doc = await service.decide(_id(1), "delete", OPERATOR)
    assert doc is not None
    assert doc["state"] == "deleted"


async def test_a_bulk_decision_decides_only_what_kafka_acknowledged(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    # The forward of request 3 is refused: 1, 2 and 4 are released, 3 stays pending.
    producer.refuse = lambda t, v: t == TOPICS.sr_outbound and _id(3).encode() in (v or b"")
    result = await service.decide_many("release", OPERATOR, Selection(user_id=USER), limit=10)
    assert {e["id"] for e in result["decided"]} == {_id(1), _id(2), _id(4)}
    assert [f["id"] for f in result["failed"]] == [_id(3)]
    assert "1 of 4" in result["error"]
    assert "call again" in result["error"]
    assert service.book.counts()["pending"] == 1
    assert len(producer.on(TOPICS.sr_quarantine)) == 3
    assert len(writer.records) == 3
    assert not service._deciding

    producer.refuse = lambda t, v: False
    again = await service.decide_many("release", OPERATOR, Selection(user_id=USER), limit=10)
    assert [e["id"] for e in again["decided"]] == [_id(3)]
    assert len(again["skipped"]) == 3
    assert again["failed"] == []
    assert "error" not in again
    assert service.book.counts() == {"pending": 0, "released": 4, "deleted": 0, "expired": 0}
    # Each request forwarded once (the refused forward never reached the topic).
    assert len(producer.on(TOPICS.sr_outbound)) == 4


async def test_a_bulk_decision_whose_records_all_fail_decides_nothing(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    registry = CollectorRegistry()
    service = _service(producer, writer, registry)
    name, labels = "dccgate_quarantine_decisions_total", {"decision": "deleted", "by": "operator"}
    producer.refuse = lambda t, _: t == TOPICS.sr_quarantine
    result = await service.decide_many("delete", OPERATOR, Selection(user_id=USER), limit=10)
    assert result["decided"] == []
    assert len(result["failed"]) == 4
    assert service.book.counts()["pending"] == 4
    assert registry.get_sample_value(name, labels) == 0  # counted only once decided
    producer.refuse = lambda t, _: False
    result = await service.decide_many("delete", OPERATOR, Selection(user_id=USER), limit=10)
    assert len(result["decided"]) == 4
    assert registry.get_sample_value(name, labels) == 4


async def test_expiry_waits_for_a_decision_in_flight(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    producer.gate = asyncio.Event()
    first = asyncio.create_task(service.decide(_id(1), "release", OPERATOR))
    await asyncio.sleep(0)
    late = T0 + service.book.pending_max_s + 100
    assert await service.expire_due(late) == 0  # deferred: request 1 is being decided
    producer.gate.set()
    await first
    assert await service.expire_due(late) == 3  # the others
    entry = service.book.get(_id(1))
    assert entry is not None
    assert entry.state == "released"


async def test_an_expiry_not_acknowledged_stays_pending_and_expires_at_the_next_round(
    producer: FakeProducer, writer: FakeAuditWriter
) -> None:
    service = _service(producer, writer)
    later = T0 + service.book.pending_max_s + 10  # all four are overdue
    producer.refuse = lambda t, value: (
        t == TOPICS.sr_quarantine and _id(3).encode() in (value or b"")
    )
    with pytest.raises(DeliveryError):
        await service.expire_due(later)
    states = {n: service.book.get(_id(n)).state for n in range(1, 5)}  # type: ignore[union-attr]
    # Those whose records were acknowledged expired; the failed one and the one after it
    # are still pending, answered at most once so far.
    assert states == {1: "expired", 2: "expired", 3: "pending", 4: "pending"}
    producer.refuse = lambda t, value: False
    assert await service.expire_due(later) == 2
    assert {service.book.get(_id(n)).state for n in range(1, 5)} == {"expired"}  # type: ignore[union-attr]
    log = [msgspec.json.decode(v or b"") for v in producer.on(TOPICS.sr_quarantine)]
    assert sorted(e["id"] for e in log if e["event"] == "expired") == [_id(n) for n in range(1, 5)]
