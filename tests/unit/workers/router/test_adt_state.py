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
    # One record per key counted under: USER/SRV.
    assert (snapshot.partition, snapshot.key) == (2, f"{U}/7.2".encode())
    assert snapshot.value is not None
    assert msgspec.json.decode(snapshot.value)["windows"][0]["buckets"][0][1] == 3
    assert store.snapshots_written == 1
    # Nothing counted since: nothing to write.
    assert store.write(OutputBatch({STATE: 3}), {U: 2}, T0 + 1) == 0


def test_a_batch_writes_the_keys_it_counted_under_not_every_key_of_the_user() -> None:
    store, adt = _store()
    srvs = [f"7.{i}" for i in range(1, 31)]
    thresholds = [{"srv": s, "window_s": w, "max": 100} for s in srvs for w in (60, 3600)]
    values = {"thresholds": [*thresholds, {"srv": "*", "window_s": 60, "max": 1000}]}
    adt.engine.set_user_values(U, msgspec.convert(values, AdtValues))
    for srv in srvs:  # every key holds counts
        adt.engine.record_processed(U, srv, T0)
    assert store.write(OutputBatch({STATE: 3}), {U: 0}, T0) == 31
    adt.engine.record_processed(U, "7.5", T0 + 1)
    out = OutputBatch({STATE: 3})
    assert store.write(out, {U: 0}, T0 + 1) == 2
    assert sorted(w.key or b"" for w in written(out, STATE)) == [
        f"{U}/*".encode(),
        f"{U}/7.5".encode(),
    ]


def test_restore_takes_per_srv_the_newest_of_the_users_record_and_the_keys_records() -> None:
    two = msgspec.convert(
        {
            "thresholds": [
                {"srv": "7.2", "window_s": 3600, "max": 50},
                {"srv": "7.3", "window_s": 3600, "max": 50},
            ]
        },
        AdtValues,
    )
    # The record a router before per-key records wrote: key U, every window of U (4 x 7.2,
    # 6 x 7.3); the bytes as that code encoded them.
    head = int(T0 * 60) // 3600
    old = (
        b'{"user_id":"%s","buckets_per_window":60,"taken_at_s":1800000000.0,"windows":['
        b'{"srv":"7.2","window_s":3600,"head":%d,"buckets":[[%d,4]]},'
        b'{"srv":"7.3","window_s":3600,"head":%d,"buckets":[[%d,6]]}]}'
    ) % (U.encode(), head, head, head, head)
    store, adt = _store()
    adt.engine.set_user_values(U, two)
    assert store.restore([(U, (1, old))]) == 1
    assert _count(adt, U, T0) == [4, 6]
    # Then this version counted 7.2 again and wrote that key's record, after the old one.
    writer, writer_adt = _store()
    writer_adt.engine.set_user_values(U, two)
    writer.restore([(U, (1, old))])
    writer_adt.engine.record_processed(U, "7.2", T0)
    out = OutputBatch({STATE: 3})
    assert writer.write(out, {U: 1}, T0) == 1
    [key_record] = written(out, STATE)
    assert key_record.value is not None
    fresh, fresh_adt = _store()
    fresh_adt.engine.set_user_values(U, two)
    assert fresh.restore([(U, (1, old)), (f"{U}/7.2", (1, key_record.value))]) == 1
    assert _count(fresh_adt, U, T0) == [5, 6]
    # A User's record newer than a key's record wins for every SRV, those it lacks too.
    only_72 = old.replace(
        b',{"srv":"7.3","window_s":3600,"head":%d,"buckets":[[%d,6]]}' % (head, head), b""
    )
    fresh, fresh_adt = _store()
    fresh_adt.engine.set_user_values(U, two)
    assert fresh.restore([(f"{U}/7.3", (1, old)), (U, (1, only_72))]) == 1
    assert _count(fresh_adt, U, T0) == [4, 0]


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
