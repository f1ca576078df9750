"""Helpers for the alert worker's unit tests: records, a processor, its outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.schemas import DeviceAlert
from broker.topics import Topics
from tests.unit.records import FakeRecord, written
from throttling import StormGuard, StormParams, StormPolicy
from workers.alerts import AlertMetrics, AlertProcessor
from workers.alerts.processor import AlertReport
from workers.runtime.metrics import CommonMetrics

TOPICS = Topics.with_prefix("")
TP = TopicPartition(TOPICS.alerts_inbound, 0)
DEVICE = "00-DB-12-34-56-78-9A-BC"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DNO = "90-B3-D5-1F-30-02-00-00"
POLICY = StormPolicy(default=StormParams(window_s=60, max_alerts=3, period_s=10))


def alert_value(
    code: str = "8F1F",
    *,
    n: int = 0,
    recipients: list[str] | None = None,
    device: str = DEVICE,
    region: str | None = "north",
    **extra: Any,
) -> bytes:
    doc: dict[str, Any] = {
        "device_id": device,
        "alert_code": code,
        "recipients": [SUPPLIER, DNO] if recipients is None else recipients,
        "raised_at_ms": 1_000 + n,
        "payload": f"p{n}",
        **extra,
    }
    if region is not None:
        doc["region"] = region
    return msgspec.json.encode(doc)


def record(
    value: bytes | None,
    *,
    offset: int = 0,
    topic: str = TOPICS.alerts_inbound,
    partition: int = 0,
    key: bytes | None = DEVICE.encode(),
) -> Record:
    """An alert as read from `topic` (by default dcc.alerts.inbound), written at 1,000 ms."""
    return FakeRecord(topic=topic, partition=partition, offset=offset, key=key, value=value)


@pytest.fixture
def alerts() -> tuple[AlertProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    processor = AlertProcessor(
        topics=TOPICS,
        metrics=AlertMetrics(CommonMetrics(registry, version="test")),
        guard=StormGuard(POLICY),
    )
    return processor, registry


def new_out() -> OutputBatch:
    return OutputBatch({t: 3 for t in TOPICS.all()})


def run_batch(
    processor: AlertProcessor,
    values: Sequence[bytes | None],
    now_ms: int = 5_000,
    first: int = 0,
) -> tuple[OutputBatch, AlertReport]:
    """Process `values` as one batch of partition 0, at offsets from `first`."""
    out = new_out()
    records = [record(v, offset=first + i) for i, v in enumerate(values)]
    report = processor.process({TP: records}, out, now_ms)
    return out, report


def run_tick(processor: AlertProcessor, now_ms: int) -> tuple[OutputBatch, AlertReport]:
    """A tick at `now_ms` that must have something due (the test fails otherwise)."""
    out = new_out()
    report = processor.tick(out, now_ms)
    assert report is not None, f"nothing was due at {now_ms} ms"
    return out, report


def outbound(out: OutputBatch) -> list[tuple[bytes | None, DeviceAlert, dict[str, bytes]]]:
    """(key, alert, headers) of every record written to dcc.alerts.outbound."""
    return [
        (w.key, msgspec.json.decode(w.value or b"", type=DeviceAlert), dict(w.headers))
        for w in written(out, TOPICS.alerts_outbound)
    ]
