from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from broker.producer import OutputBatch
from broker.schemas import DeviceAlert
from broker.topics import Topics
from throttling import DEFAULT_STORM_PARAMS, StormGuard, StormParams, StormPolicy
from workers.alerts import (
    STORM_HEADER,
    AlertMetrics,
    AlertProcessor,
    storm_policy_from_config,
)
from workers.control import model
from workers.control.state import ConfigSnapshot, Item
from workers.metrics import CommonMetrics

TOPICS = Topics.with_prefix("")
TP = TopicPartition(TOPICS.alerts_inbound, 0)
DEVICE = "00-DB-12-34-56-78-9A-BC"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DNO = "90-B3-D5-1F-30-02-00-00"
POLICY = StormPolicy(default=StormParams(window_s=60, max_alerts=3, period_s=10))


def _alert(code: str = "8F1F", *, n: int = 0, recipients: list[str] | None = None,
           device: str = DEVICE, region: str | None = "north", **extra: Any) -> bytes:  # fmt: skip
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


def _record(value: bytes | None, *, offset: int = 0) -> Any:
    return ConsumerRecord(
        TOPICS.alerts_inbound, 0, offset, 1_000, 0, DEVICE.encode(), value, None, 0, 0, []
    )


@pytest.fixture
def alerts() -> tuple[AlertProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    processor = AlertProcessor(
        topics=TOPICS,
        metrics=AlertMetrics(CommonMetrics(registry, version="test")),
        guard=StormGuard(POLICY),
    )
    return processor, registry


def _out() -> OutputBatch:
    return OutputBatch({t: 3 for t in TOPICS.all()})


def _run(
    processor: AlertProcessor, values: list[bytes | None], now_ms: int = 5_000
) -> tuple[OutputBatch, object]:
    out = _out()
    records = [_record(v, offset=i) for i, v in enumerate(values)]
    report = processor.process({TP: records}, out, now_ms)
    return out, report


def _by_topic(out: OutputBatch, topic: str) -> list[tuple[Any, ...]]:
    return [r for parts in out._lists.get(topic, []) for r in parts]


def _outbound(out: OutputBatch) -> list[tuple[bytes, DeviceAlert, dict[str, bytes]]]:
    return [
        (r[0], msgspec.json.decode(r[1], type=DeviceAlert), dict(r[2]))
        for r in _by_topic(out, TOPICS.alerts_outbound)
    ]


def test_alert_goes_to_every_recipient_unchanged(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    raw = _alert()
    out, report = _run(processor, [raw])
    records = _by_topic(out, TOPICS.alerts_outbound)
    assert sorted(r[0] for r in records) == sorted([SUPPLIER.encode(), DNO.encode()])
    assert all(r[1] == raw for r in records)
    processor.after_send(report, 5_000)
    labels = {"region": "north", "alert_code": "8F1F"}
    assert registry.get_sample_value("dccgate_alerts_received_total", labels) == 1
    assert registry.get_sample_value("dccgate_alerts_forwarded_total", labels) == 2


def test_duplicate_recipients_get_one_copy_and_inbound_throttle_fields_are_cleared(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, _ = alerts
    raw = _alert(recipients=[SUPPLIER, SUPPLIER, ""], region=None, throttled_alert_count=7,
                 throttled_alert_sequence_id="forged")  # fmt: skip
    out, _ = _run(processor, [raw])
    [(key, alert, _)] = _outbound(out)
    assert key == SUPPLIER.encode()
    assert (alert.throttled_alert_count, alert.throttled_alert_sequence_id) == (None, None)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"{broken", "invalid_json"),
        (None, "invalid_json"),
        (b'{"device_id": "x"}', "invalid_schema"),
        (_alert(region="mars"), "invalid_schema"),
        (_alert(recipients=[]), "no_recipients"),
        (_alert(recipients=[""]), "no_recipients"),
    ],
)
def test_bad_alerts_are_dead_lettered(
    alerts: tuple[AlertProcessor, CollectorRegistry], value: bytes | None, kind: str
) -> None:
    processor, registry = alerts
    out, report = _run(processor, [value])
    assert _by_topic(out, TOPICS.alerts_outbound) == []
    [dead] = _by_topic(out, TOPICS.deadletter)
    assert dead[1] == value
    assert dict(dead[2])["dccgate-dlq-kind"] == kind.encode()
    processor.after_send(report, 5_000)
    sample = {"service": "alerts", "reason": kind}
    assert registry.get_sample_value("dccgate_deadletter_records_total", sample) == 1


def test_storm_is_suppressed_and_counted_then_copies_carry_the_counts(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    # 10 alerts at t=5 s: 3 forwarded, 7 suppressed (the storm starts at the 4th).
    out, report = _run(processor, [_alert(n=i) for i in range(10)], now_ms=5_000)
    assert len(_outbound(out)) == 3 * 2
    processor.after_send(report, 5_000)
    # Held back, but counted only once the boundary decides which one goes out.
    assert (
        registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "8F1F"}) is None
    )
    assert registry.get_sample_value("dccgate_alerts_active_storms") == 1
    assert registry.get_sample_value("dccgate_alerts_tracked_keys") == 1
    # Nothing due before the period ends.
    assert processor.tick(_out(), 14_999) is None
    # At t0 + period: the latest alert goes out with the 6 others of the period.
    out = _out()
    report = processor.tick(out, 15_000)
    assert report is not None
    periodic = _outbound(out)
    assert {k for k, _, _ in periodic} == {SUPPLIER.encode(), DNO.encode()}
    for _, alert, headers in periodic:
        assert alert.payload == "p9"
        assert alert.throttled_alert_count == 6
        assert alert.throttled_alert_sequence_id == f"{DEVICE}:8F1F:5000"
        assert headers[STORM_HEADER] == b"periodic"
    processor.after_send(report, 15_000)
    assert registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "8F1F"}) == 6
    # A quiet period: the storm ends with a final copy carrying the storm's total.
    out = _out()
    report = processor.tick(out, 25_000)
    final = _outbound(out)
    assert len(final) == 2
    for _, alert, headers in final:
        assert (alert.payload, alert.throttled_alert_count) == ("p9", 6)
        assert alert.throttled_alert_sequence_id == f"{DEVICE}:8F1F:5000"
        assert headers[STORM_HEADER] == b"final"
    processor.after_send(report, 25_000)
    assert registry.get_sample_value("dccgate_alerts_active_storms") == 0
    # Accounting: 3 at once + 1 periodic copy + its 6 suppressed = the 10 received.
    labels = {"region": "north", "alert_code": "8F1F"}
    assert registry.get_sample_value("dccgate_alerts_received_total", labels) == 10
    assert registry.get_sample_value("dccgate_alerts_forwarded_total", labels) == (3 + 1 + 1) * 2


def test_clock_going_backwards_is_held(alerts: tuple[AlertProcessor, CollectorRegistry]) -> None:
    processor, _ = alerts
    _run(processor, [_alert(n=i) for i in range(5)], now_ms=5_000)
    # The wall clock steps back: no boundary passes, nothing breaks.
    assert processor.tick(_out(), 1_000) is None
    assert processor.tick(_out(), 15_000) is not None


def test_excluded_code_passes_in_full_and_unknown_codes_get_the_default(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    processor.set_exclusions(["8f3f"], version=4)
    out, report = _run(processor, [_alert("0x8F3F", n=i) for i in range(50)])
    assert len(_outbound(out)) == 100
    out, report = _run(processor, [_alert("ZZ99", n=i) for i in range(10)])
    assert len(_outbound(out)) == 3 * 2
    report = processor.tick(_out(), 15_000)
    processor.after_send(report, 15_000)
    assert (
        registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "other"}) == 6
    )
    assert registry.get_sample_value("dccgate_alerts_exclusions") == 1
    assert registry.get_sample_value("dccgate_alerts_exclusions_version") == 4


def _snapshot(**items: msgspec.Struct) -> ConfigSnapshot:
    keys = {"exclusions": "alerts.exclusions", "storm_policy": "alerts.storm-policy"}
    return ConfigSnapshot(
        offset=0,
        items={
            keys[name]: Item(key=keys[name], version=2, body=body, raw=b"", by="t", at_ms=0)
            for name, body in items.items()
        },
        tokens={},
    )


def test_configuration_is_mapped_from_the_control_snapshot(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    configured = model.StormPolicy(
        default=model.StormParams(window_s=60, max_alerts=5, period_s=1),
        per_code={"8F35": model.StormParams(window_s=10, max_alerts=2, period_s=3)},
    )
    processor.apply(
        _snapshot(exclusions=model.Exclusions(alert_codes=["8F3F"]), storm_policy=configured)
    )
    guard = processor.guard
    assert guard.exclusions == frozenset({"8F3F"})
    assert guard.policy == StormPolicy(
        default=StormParams(window_s=60, max_alerts=5, period_s=1),
        per_code={"8F35": StormParams(window_s=10, max_alerts=2, period_s=3)},
    )
    assert registry.get_sample_value("dccgate_alerts_exclusions_version") == 2
    # Nothing configured: no exclusions, the default parameters.
    processor.apply(_snapshot())
    assert guard.exclusions == frozenset()
    assert guard.policy == StormPolicy(default=DEFAULT_STORM_PARAMS)
    assert storm_policy_from_config(None) == StormPolicy(default=DEFAULT_STORM_PARAMS)
    assert registry.get_sample_value("dccgate_alerts_exclusions_version") == 0


def test_default_processor_uses_the_default_policy() -> None:
    processor = AlertProcessor(
        topics=TOPICS, metrics=AlertMetrics(CommonMetrics(CollectorRegistry(), version="t"))
    )
    assert processor.guard.policy.default == DEFAULT_STORM_PARAMS
    assert processor.guard.exclusions == frozenset()
