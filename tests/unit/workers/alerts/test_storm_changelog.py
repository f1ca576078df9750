"""workers.alerts.storm_changelog: running storms on the dcc.state.alerts changelog, and back."""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.schemas import DeviceStormState
from tests.unit.records import read_back
from tests.unit.workers.alerts.helpers import (
    DEVICE,
    POLICY,
    TOPICS,
    alert_value,
    new_out,
    outbound,
    record,
    run_batch,
    run_tick,
)
from throttling import StormGuard
from workers.alerts import BOUNDARY_HEADER, STORM_HEADER, AlertMetrics, AlertProcessor
from workers.alerts.processor import AlertReport
from workers.runtime.metrics import CommonMetrics

STATE = TOPICS.state_alerts


def _processor() -> tuple[AlertProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    processor = AlertProcessor(
        topics=TOPICS,
        metrics=AlertMetrics(CommonMetrics(registry, version="test")),
        guard=StormGuard(POLICY),  # window 60 s, 3 alerts, period 10 s
    )
    processor.set_changelog(STATE)
    return processor, registry


def _stages(processor: AlertProcessor, report: AlertReport) -> list[OutputBatch]:
    stages: list[OutputBatch] = []
    while True:
        out = new_out()
        if not processor.follow_up(report, len(stages), out):
            return stages
        stages.append(out)


def _state_records(out: OutputBatch) -> list[Record]:
    """The changelog records of a stage, as the broker would hand them back."""
    return read_back(out, STATE)


def _state(rec: Record) -> DeviceStormState:
    assert rec.value is not None, "a tombstone, not a snapshot"
    return msgspec.json.decode(rec.value, type=DeviceStormState)


def test_a_storm_is_snapshotted_after_its_batch_and_a_tombstone_ends_it() -> None:
    processor, registry = _processor()
    out, report = run_batch(processor, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    assert len(outbound(out)) == 3 * 2  # the forwards are main outputs, as before
    [snap] = _stages(processor, report)
    [rec] = _state_records(snap)
    assert (rec.key, rec.partition) == (DEVICE.encode(), 0)
    state = _state(rec)
    [storm] = state.storms
    assert (storm.alert_code, storm.sequence_id) == ("8F1F", f"{DEVICE}:8F1F:5000")
    assert (storm.pending, storm.suppressed, storm.due_ms) == (7, 0, 15_000)
    assert (storm.start_offset, storm.through_offset, storm.latest.payload) == (3, 9, "p9")
    assert state.copies == []
    # At the boundary: the snapshot with the copy in it, the copy, the snapshot without.
    _, report = run_tick(processor, 15_000)
    with_copy, copies, bare = _stages(processor, report)
    [embedded] = _state(_state_records(with_copy)[0]).copies
    periodic = (embedded.final, embedded.boundary_ms, embedded.alert.throttled_alert_count)
    assert periodic == (False, 15_000, 6)
    sent = outbound(copies)
    assert len(sent) == 2
    assert all(h[BOUNDARY_HEADER] == b"15000" and h[STORM_HEADER] == b"periodic" for *_, h in sent)
    assert _state(_state_records(bare)[0]).copies == []
    # A quiet period: the final copy, then a tombstone.
    _, report = run_tick(processor, 25_000)
    with_copy, copies, bare = _stages(processor, report)
    assert [h[STORM_HEADER] for *_, h in outbound(copies)] == [b"final", b"final"]
    [tombstone] = _state_records(bare)
    assert (tombstone.key, tombstone.value) == (DEVICE.encode(), None)
    assert processor.tick(new_out(), 35_000) is None  # forgotten: nothing more to write
    processor.after_send(report, 25_000)  # the final copy, counted as written to both
    sample = {"region": "north", "alert_code": "8F1F"}
    assert registry.get_sample_value("dccgate_alerts_forwarded_total", sample) == 2


def test_a_restored_storm_continues_and_skips_the_alerts_it_counted() -> None:
    first, _ = _processor()
    _, report = run_batch(first, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    [snap] = _stages(first, report)
    # A crash; the next owner restores the snapshot and reads the input again from the
    # last commit, offset 0 here, with three new alerts after it.
    second, registry = _processor()
    assert second.restore(_state_records(snap), 5_500) == 1
    values = [alert_value(n=i) for i in range(13)]
    out, report = run_batch(second, values, now_ms=6_000)
    # 0-2 were forwarded at once before the storm: forwarded again (at-least-once);
    # 3-9 were counted by the snapshot: skipped; 10-12 belong to the storm.
    assert [a.payload for _, a, _ in outbound(out)] == ["p0", "p0", "p1", "p1", "p2", "p2"]
    _, report = run_tick(second, 15_000)
    _, copies, _ = _stages(second, report)
    [(_, copy, _), _] = outbound(copies)
    assert (copy.payload, copy.throttled_alert_count) == ("p12", 9)  # 7 + 3 - the copy
    assert copy.throttled_alert_sequence_id == f"{DEVICE}:8F1F:5000"
    assert registry.get_sample_value("dccgate_alerts_storms_restored_total") == 1


def test_copies_in_a_snapshot_are_sent_again_after_a_restore() -> None:
    first, _ = _processor()
    run_batch(first, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    _, report = run_tick(first, 15_000)
    with_copy, copies, _ = _stages(first, report)
    # A crash after the snapshot with the copy was written, maybe before the copy was.
    second, _ = _processor()
    second.restore(_state_records(with_copy), 15_050)
    _, report = run_tick(second, 15_100)
    _, again, again_bare = _stages(second, report)
    # The repeat is the same record: same body, same sequence ID and boundary header.
    assert sorted(outbound(again), key=repr) == sorted(outbound(copies), key=repr)
    assert _state(_state_records(again_bare)[0]).copies == []


def test_the_newest_snapshot_per_device_wins_and_a_tombstone_forgets() -> None:
    first, _ = _processor()
    _, report = run_batch(first, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    [old] = _state_records(_stages(first, report)[0])
    tombstone = record(None, topic=STATE, key=DEVICE.encode(), offset=1)
    second, _ = _processor()
    assert second.restore([old, tombstone], 5_500) == 0
    assert second.guard.active_storms == 0


def test_revoked_partitions_lose_their_storms_without_copies() -> None:
    processor, _ = _processor()
    run_batch(processor, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    assert processor.guard.active_storms == 1
    processor.revoke([TopicPartition(TOPICS.alerts_inbound, 0)])
    assert processor.guard.active_storms == 0
    assert processor.tick(new_out(), 100_000) is None


def test_a_storm_that_ends_and_starts_again_in_one_batch_is_snapshotted_as_the_new_one() -> None:
    processor, _ = _processor()
    run_batch(processor, [alert_value(n=i) for i in range(10)], now_ms=5_000)
    # 25 s later: the first storm's boundaries (15 s, then 25 s quiet) are settled by the
    # batch's first alert, and the batch starts a second storm at its fourth alert.
    _, report = run_batch(
        processor, [alert_value(n=i) for i in range(10, 20)], now_ms=30_000, first=10
    )
    [snap, copies, _] = _stages(processor, report)
    assert [h[STORM_HEADER] for *_, h in outbound(copies)][::2] == [b"periodic", b"final"]
    state = _state(_state_records(snap)[0])
    [storm] = state.storms
    span = (storm.sequence_id, storm.start_offset, storm.through_offset)
    assert span == (f"{DEVICE}:8F1F:30000", 13, 19)
