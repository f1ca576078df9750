"""The ADT counter changelog without a broker: what is written, restored and forgotten."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from adt import AdtValues, Released, encode_snapshot
from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from tests.unit.records import FakeRecord, written
from workers.config.settings import Settings
from workers.router.adt import AdtControl
from workers.router.adt_metrics import AdtMetrics
from workers.router.adt_state import AdtStateStore

T0 = 1_800_000_000.0
IN, STATE, QUARANTINE = "dcc.sr.inbound", "dcc.state.router", "dcc.sr.quarantine"
U, V = "90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-02-00-00"


def _values(max_: int = 5) -> AdtValues:
    return msgspec.convert(
        {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": max_}]}, AdtValues
    )


def _store() -> tuple[AdtStateStore, AdtControl]:
    adt = AdtControl()
    adt.engine.set_user_values(U, _values())
    kafka = Settings().kafka("127.0.0.1:1", embedded=True)
    return AdtStateStore(kafka, IN, STATE, adt), adt


def _count(adt: AdtControl, user: str, now_s: float) -> list[int]:
    return [u.count for u in adt.engine.usage(user, now_s)]


def test_write_snapshots_touched_users_with_values_onto_their_input_partition() -> None:
    store, adt = _store()
    for _ in range(3):
        adt.engine.record_processed(U, "7.2", T0)
    out = OutputBatch({STATE: 3})
    # V has no values of its own: nothing to snapshot.
    assert store.write(out, {U: 2, V: 1}, T0) == 1
    [snapshot] = written(out, STATE)
    assert (snapshot.partition, snapshot.key) == (2, U.encode())
    assert snapshot.value is not None
    assert msgspec.json.decode(snapshot.value)["windows"][0]["buckets"][0][1] == 3
    assert store.snapshots_written == 1


def test_restore_puts_the_counts_back_and_revoke_forgets_them() -> None:
    _, adt = _store()
    for _ in range(4):
        adt.engine.record_processed(U, "7.2", T0)
    snapshot = adt.engine.snapshot_user(U, T0)
    assert snapshot is not None
    fresh, fresh_adt = _store()
    assert fresh.restore([(U, (1, encode_snapshot(snapshot)))]) == 1
    assert _count(fresh_adt, U, T0 + 60) == [4]
    fresh.assigned = frozenset({1})
    asyncio.run(fresh.on_revoke(frozenset({TopicPartition(IN, 1)})))
    assert _count(fresh_adt, U, T0 + 60) == [0]
    assert fresh.assigned == frozenset()


def test_a_corrupt_snapshot_is_logged_and_the_user_starts_empty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, adt = _store()
    assert store.restore([(U, (0, b"{not json"))]) == 0
    assert store.restore_errors == 1
    assert "not restored" in caplog.text
    # A snapshot under another User's key is refused too.
    other = adt.engine.snapshot_user(U, T0)
    assert other is not None
    assert store.restore([(V, (0, encode_snapshot(other)))]) == 0
    assert store.restore_errors == 2


def test_releases_count_only_for_owned_partitions() -> None:
    store, adt = _store()
    store.assigned = frozenset({0})
    encode = msgspec.json.Encoder().encode
    mine = Released(id="r1", by="op", at_s=T0, user_id=U, srv="7.2")
    old_format = Released(id="r2", by="op", at_s=T0)
    key = U.encode()
    records: list[Record] = [
        FakeRecord(topic=QUARANTINE, key=key, value=encode(mine)),
        # A partition another router owns:
        FakeRecord(topic=QUARANTINE, partition=1, key=key, value=encode(mine)),
        # Written before releases named the SRV:
        FakeRecord(topic=QUARANTINE, key=key, value=encode(old_format)),
        FakeRecord(topic=QUARANTINE, key=key, value=b'{"event":"quarantined"}'),
        FakeRecord(topic=QUARANTINE, key=key, value=None),
    ]
    assert store.on_quarantine_log(records, T0) == 1
    assert _count(adt, U, T0) == [1]
    # The User is snapshotted with the next batch, touched or not.
    out = OutputBatch({STATE: 3})
    assert store.write(out, {}, T0) == 1


def test_metrics_show_the_nearest_threshold_of_registered_users() -> None:
    store, adt = _store()
    adt.configured = True
    adt.engine.set_dcc_values(_values(10))
    registry = CollectorRegistry()
    AdtMetrics(registry, adt, lambda: frozenset({U}), store)
    now = time.time()
    for _ in range(2):
        adt.engine.record_processed(U, "7.2", now)
    ratio = registry.get_sample_value(
        "dccgate_adt_user_nearest_threshold_ratio", {"user": U, "rule": f"user:{U}:7.2:3600"}
    )
    assert ratio == pytest.approx(2 / 5)
    dcc = registry.get_sample_value("dccgate_adt_dcc_threshold_ratio", {"rule": "dcc:7.2:3600"})
    assert dcc == pytest.approx(2 / 10)
    assert registry.get_sample_value("dccgate_adt_state_snapshots_total") == 0
