"""workers.alerts.processor: decode, storm protection, fan-out, copies, configuration."""

from __future__ import annotations

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from broker.producer import OutputBatch
from tests.unit.records import written
from tests.unit.workers.alerts.helpers import (
    DEVICE,
    DNO,
    SUPPLIER,
    TOPICS,
    TP,
    alert_value,
    alerts,
    new_out,
    outbound,
    run_batch,
    run_tick,
)
from throttling import (
    DEFAULT_STORM_PARAMS,
    CorrelationPolicy,
    RegionalPolicy,
    RegionCapacity,
    StormParams,
    StormPolicy,
)
from workers.alerts import (
    STORM_HEADER,
    AlertMetrics,
    AlertProcessor,
    correlation_policy_from_config,
    device_key,
    regional_policy_from_config,
    storm_policy_from_config,
)
from workers.config import model
from workers.config.snapshot import ConfigSnapshot, Item
from workers.runtime.metrics import CommonMetrics

__all__ = ["alerts"]  # the fixture, imported from the helpers


def test_alert_goes_to_every_recipient_unchanged(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    raw = alert_value()
    out, report = run_batch(processor, [raw])
    records = written(out, TOPICS.alerts_outbound)
    assert sorted(r.key or b"" for r in records) == sorted([SUPPLIER.encode(), DNO.encode()])
    assert all(r.value == raw for r in records)
    processor.after_send(report, 5_000)
    labels = {"region": "north", "alert_code": "8F1F"}
    assert registry.get_sample_value("dccgate_alerts_received_total", labels) == 1
    assert registry.get_sample_value("dccgate_alerts_forwarded_total", labels) == 2


def test_duplicate_recipients_get_one_copy_and_inbound_throttle_fields_are_cleared(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, _ = alerts
    raw = alert_value(
        recipients=[SUPPLIER, SUPPLIER, ""],
        region=None,
        throttled_alert_count=7,
        throttled_alert_sequence_id="forged",
    )
    out, _ = run_batch(processor, [raw])
    [(key, alert, _)] = outbound(out)
    assert key == SUPPLIER.encode()
    assert (alert.throttled_alert_count, alert.throttled_alert_sequence_id) == (None, None)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"{broken", "invalid_json"),
        (None, "invalid_json"),
        (b'{"device_id": "x"}', "invalid_schema"),
        (alert_value(region="mars"), "invalid_schema"),
        (alert_value(recipients=[]), "no_recipients"),
        (alert_value(recipients=[""]), "no_recipients"),
        # Bounded identifiers: a storm key or a fan-out may not be as large as a record.
        (alert_value(code="8F1F" * 4 + "0"), "invalid_schema"),
        (alert_value(device="0" * 65), "invalid_schema"),
        (
            alert_value(recipients=[f"90-B3-D5-1F-30-{i:02X}-00-00" for i in range(33)]),
            "invalid_schema",
        ),
        (alert_value(recipients=["9" * 65]), "invalid_schema"),
        (alert_value(throttled_alert_sequence_id="s" * 257), "invalid_schema"),
    ],
)
def test_bad_alerts_are_dead_lettered(
    alerts: tuple[AlertProcessor, CollectorRegistry], value: bytes | None, kind: str
) -> None:
    processor, registry = alerts
    out, report = run_batch(processor, [value])
    assert written(out, TOPICS.alerts_outbound) == []
    [dead] = written(out, TOPICS.deadletter)
    assert dead.value == value
    assert dict(dead.headers)["dccgate-dlq-kind"] == kind.encode()
    processor.after_send(report, 5_000)
    sample = {"service": "alerts", "reason": kind}
    assert registry.get_sample_value("dccgate_deadletter_records_total", sample) == 1


def test_storm_is_suppressed_and_counted_then_copies_carry_the_counts(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    # 10 alerts at t=5 s: 3 forwarded, 7 suppressed (the storm starts at the 4th).
    out, report = run_batch(processor, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    assert len(outbound(out)) == 3 * 2
    processor.after_send(report, 5_000)
    # Held back, but counted only once the boundary decides which one goes out.
    assert (
        registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "8F1F"}) is None
    )
    assert registry.get_sample_value("dccgate_alerts_active_storms") == 1
    assert registry.get_sample_value("dccgate_alerts_tracked_keys") == 1
    # Nothing due before the period ends.
    assert processor.tick(new_out(), 14_999) is None
    # At t0 + period: the latest alert goes out with the 6 others of the period.
    out, report = run_tick(processor, 15_000)
    periodic = outbound(out)
    assert {k for k, _, _ in periodic} == {SUPPLIER.encode(), DNO.encode()}
    for _, alert, headers in periodic:
        assert alert.payload == "p9"
        assert alert.throttled_alert_count == 6
        assert alert.throttled_alert_sequence_id == f"{DEVICE}:8F1F:5000"
        assert headers[STORM_HEADER] == b"periodic"
    processor.after_send(report, 15_000)
    assert registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "8F1F"}) == 6
    # A quiet period: the storm ends with a final copy carrying the storm's total.
    out, report = run_tick(processor, 25_000)
    final = outbound(out)
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
    run_batch(processor, [alert_value(n=i) for i in range(5)], now_ms=5_000)
    # The wall clock steps back: no boundary passes, nothing breaks.
    assert processor.tick(new_out(), 1_000) is None
    assert processor.tick(new_out(), 15_000) is not None


def test_excluded_code_passes_in_full_and_unknown_codes_get_the_default(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    processor.set_exclusions(["8f3f"], version=4)
    out, report = run_batch(processor, [alert_value("0x8F3F", n=i) for i in range(50)])
    assert len(outbound(out)) == 100
    out, report = run_batch(processor, [alert_value("ZZ99", n=i) for i in range(10)])
    assert len(outbound(out)) == 3 * 2
    _, report = run_tick(processor, 15_000)
    processor.after_send(report, 15_000)
    assert (
        registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "other"}) == 6
    )
    assert registry.get_sample_value("dccgate_alerts_exclusions") == 1
    assert registry.get_sample_value("dccgate_alerts_exclusions_version") == 4


def _snapshot(**items: msgspec.Struct) -> ConfigSnapshot:
    keys = {
        "exclusions": "alerts.exclusions",
        "storm_policy": "alerts.storm-policy",
        "regional": "alerts.regional-capacity",
        "mp102": "alerts.mp102",
    }
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


# --- regional capacity and the MP102 rule ------------------------------------------------------


def _codes(out: OutputBatch) -> list[str]:
    return [a.alert_code for _, a, _ in outbound(out)]


def test_regional_capacity_sends_priority_first_and_holds_the_commit_back(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    processor.set_exclusions(["8F3F"])
    capacity = RegionCapacity(rate_per_s=1.0, burst=2)
    processor.set_capacity(
        RegionalPolicy(regions={"north": capacity}, high_priority_codes=frozenset({"8F36"}))
    )
    values = [alert_value("8F35", device=f"00-DB-00-00-00-00-00-{i:02X}", n=i) for i in range(4)]
    values += [alert_value("8F36", n=4), alert_value("8F3F", n=5)]
    out, report = run_batch(processor, values, now_ms=5_000)
    # Two go at once (the burst); the others wait, the offsets from 2 on held back.
    assert [a.payload for _, a, _ in outbound(out)][::2] == ["p0", "p1"]
    assert processor.held_floor() == {TP: 2}
    processor.after_send(report, 5_000)
    assert registry.get_sample_value("dccgate_alerts_regional_queued", {"region": "north"}) == 4
    assert registry.get_sample_value("dccgate_alerts_held") == 4
    # One a second after that, oldest first; each release lets the commit move on.
    floors, sent = [], []
    for t in range(6_000, 10_000, 1_000):
        out, report = run_tick(processor, t)
        processor.after_send(report, t)
        sent += [a.payload for _, a, _ in outbound(out)][::2]
        floors.append(processor.held_floor().get(TP))
    # Then one a second: the high-priority and the excluded code overtake the others.
    assert sent == ["p4", "p5", "p2", "p3"]
    assert floors == [2, 2, 3, None]
    delay = {"region": "north"}
    assert registry.get_sample_value("dccgate_alerts_regional_delay_seconds_count", delay) == 6
    assert registry.get_sample_value("dccgate_alerts_regional_delay_seconds_sum", delay) == 10.0


def test_a_full_regional_queue_stops_the_input_and_loses_nothing(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    capacity = RegionCapacity(rate_per_s=2.0, burst=1, max_queued=2)
    processor.set_capacity(RegionalPolicy(regions={"south": capacity}))
    values = [
        alert_value("8F35", device=f"00-DB-00-00-00-00-00-{i:02X}", n=i, region="south")
        for i in range(8)
    ]
    out, _ = run_batch(processor, values, now_ms=0)
    assert not processor.wants_input()
    assert registry.get_sample_value("dccgate_alerts_input_paused") == 1
    sent = [a.payload for _, a, _ in outbound(out)][::2]
    t = 0
    while not processor.wants_input() or processor.held_floor():
        t += 500
        out = new_out()
        processor.tick(out, t)
        sent += [a.payload for _, a, _ in outbound(out)][::2]
    assert sent == [f"p{i}" for i in range(8)]
    assert t == 3_500  # 2 a second after the first
    assert registry.get_sample_value("dccgate_alerts_input_paused") == 0


def test_mp102_holds_an_outage_after_firmware_activation_and_drops_it_on_restore(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    processor.set_mp102(CorrelationPolicy(enabled=True, watch_s=1800, hold_s=600))
    # 11.3 forwarded to the meter (the feed passes the RequestID's TARGET).
    processor.note_firmware_activation(DEVICE, 4.0)
    out, report = run_batch(processor, [alert_value("AD1", n=0, device=DEVICE.lower())])
    assert outbound(out) == []
    assert processor.held_floor() == {TP: 0}
    processor.after_send(report, 5_000)
    assert registry.get_sample_value("dccgate_alerts_mp102_held") == 1
    out, report = run_batch(processor, [alert_value("8F35", n=1)], now_ms=200_000, first=1)
    assert _codes(out) == ["8F35", "8F35"]  # the restore goes on; the outage is dropped
    assert processor.held_floor() == {}
    processor.after_send(report, 200_000)
    assert registry.get_sample_value("dccgate_alerts_mp102_dropped_total") == 1
    # Another device, no activation: its outage alert goes at once.
    out, _ = run_batch(processor, [alert_value("AD1", device="00-DB-00-00-00-00-00-01")], first=2)
    assert _codes(out) == ["AD1", "AD1"]


def test_mp102_releases_an_outage_late_when_no_restore_follows(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    processor, registry = alerts
    processor.set_mp102(CorrelationPolicy(enabled=True, watch_s=1800, hold_s=600))
    processor.note_firmware_activation(DEVICE, 4.0)
    run_batch(processor, [alert_value("AD1", n=0)], now_ms=5_000)
    assert processor.tick(new_out(), 604_000) is None
    out, report = run_tick(processor, 605_000)
    assert _codes(out) == ["AD1", "AD1"]
    processor.after_send(report, 605_000)
    assert registry.get_sample_value("dccgate_alerts_mp102_released_total") == 1
    assert processor.held_floor() == {}


def test_mp102_with_regional_capacity_holds_outages_in_any_spelling_and_gates_the_rest(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    # Codes the MP102 rule ignores skip its bookkeeping but still meet regional capacity;
    # the rule's codes are recognised however the device spells them.
    processor, _ = alerts
    processor.set_capacity(RegionalPolicy(regions={"north": RegionCapacity(rate_per_s=1.0,
                                                                            burst=1)}))  # fmt: skip
    processor.set_mp102(CorrelationPolicy(enabled=True, watch_s=1800, hold_s=600))
    processor.note_firmware_activation(DEVICE, 4.0)
    values = [alert_value("0xad1", n=0), alert_value("ad1", n=1), alert_value("8F1F", n=2)]
    values.append(alert_value("8F1F", n=3, device="00-DB-00-00-00-00-00-02"))
    out, _ = run_batch(processor, values)
    # Both outages held by the rule; the first 8F1F takes the burst, the second waits.
    assert _codes(out) == ["8F1F", "8F1F"]
    assert processor.held_floor() == {TP: 0}
    assert processor.outlet.rule.stats().held_now == 2
    assert processor.outlet.depth() == 3
    # Without regional capacity, a code the rule ignores goes at once.
    processor.set_capacity(RegionalPolicy())
    out, _ = run_batch(processor, [alert_value("8F3F", n=4)], first=4)
    assert _codes(out)[:2] == ["8F3F", "8F3F"]


def test_new_configuration_kinds_are_mapped_and_followed() -> None:
    changes: list[int | None] = []
    processor = AlertProcessor(
        topics=TOPICS,
        metrics=AlertMetrics(CommonMetrics(CollectorRegistry(), version="test")),
        on_mp102_change=lambda: changes.append(processor.mp102_watch_s),
    )
    regional = model.RegionalCapacity(
        regions={"north": model.RegionCapacity(rate_per_s=5, burst=10)},
        unknown_region="north",
        high_priority_codes=["8F36"],
    )
    mp102 = model.Mp102Rule(enabled=True, watch_s=60, hold_s=30)
    processor.apply(_snapshot(regional=regional, mp102=mp102))
    assert processor.outlet.gate.policy == RegionalPolicy(
        regions={"north": RegionCapacity(rate_per_s=5, burst=10)},
        unknown_region="north",
        high_priority_codes=frozenset({"8F36"}),
    )
    assert processor.outlet.rule.policy == CorrelationPolicy(enabled=True, watch_s=60, hold_s=30)
    assert changes == [60]
    processor.apply(_snapshot())
    assert not processor.outlet.active
    assert changes == [60, None]
    assert regional_policy_from_config(None) == RegionalPolicy()
    assert correlation_policy_from_config(None) == CorrelationPolicy()


@pytest.mark.parametrize(
    "raw",
    [
        "00-DB-12-34-56-78-9A-BC",
        "00-db-12-34-56-78-9a-bc",
        "00DB123456789ABC",
        " 00:DB:12:34:56:78:9A:BC ",
    ],
)
def test_device_ids_are_compared_in_the_form_duis_writes_them(raw: str) -> None:
    assert device_key(raw) == DEVICE
    assert device_key("not-an-eui") == "NOT-AN-EUI"


def test_every_alert_metric_the_deploy_files_use_is_exported(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    from tests.deploy_metrics import family, metrics_used_by_deploy

    processor, registry = alerts
    processor.set_capacity(RegionalPolicy(regions={"north": RegionCapacity(rate_per_s=1, burst=1)}))
    _, report = run_batch(processor, [alert_value(n=i) for i in range(5)])
    processor.after_send(report, 5_000)
    families = list(registry.collect())
    exported = {family(f.name) for f in families}
    wanted = {m for m in metrics_used_by_deploy() if m.startswith("dccgate_alerts_")}
    assert wanted - exported == set()


def test_alerts_at_the_bounds_are_forwarded(
    alerts: tuple[AlertProcessor, CollectorRegistry],
) -> None:
    from broker.schemas import MAX_ALERT_CODE_CHARS, MAX_RECIPIENTS

    processor, _ = alerts
    recipients = [f"90-B3-D5-1F-30-{i:02X}-00-00" for i in range(MAX_RECIPIENTS)]
    value = alert_value(code="A" * MAX_ALERT_CODE_CHARS, recipients=recipients)
    out, _ = run_batch(processor, [value])
    assert written(out, TOPICS.deadletter) == []
    keys = [key for key, _, _ in outbound(out)]
    assert sorted(k or b"" for k in keys) == sorted(r.encode() for r in recipients)
