"""SECMP0062 end to end: a rogue device storms 100,000 alerts among normal traffic from
10,000 devices.

The alert worker runs in-process against the embedded broker, configured through the
control topic (storm policy and exclusion list), and every alert on dcc.alerts.outbound is
read back and accounted for.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson
import pytest
from prometheus_client import CollectorRegistry

from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.schemas import DeviceAlert
from broker.settings import KafkaSettings
from tests.integration.helpers import read_topic, wait_until_async
from workers.alerts import STORM_HEADER
from workers.control.model import Exclusions, StormParams, StormPolicy
from workers.control.reader import ControlReader
from workers.metrics import CommonMetrics
from workers.services import AdminService, build_alerts
from workers.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DNO = "90-B3-D5-1F-30-02-00-00"
RECIPIENTS = [SUPPLIER, DNO]
ROGUE = "00-DB-FF-FF-FF-FF-00-01"
TAMPERED = "00-DB-FF-FF-FF-FF-00-02"
STORM_N, NORMAL_N, EXCLUDED_N = 100_000, 10_000, 1_000
MAX_ALERTS = 5
CHUNKS = 20
SEND_S = 3.0


@pytest.fixture
async def reader(kafka: KafkaSettings, settings: Settings) -> AsyncIterator[ControlReader]:
    """A control reader with the storm policy and the exclusion list written through the
    admin service's writer, as the admin API does."""
    settings = msgspec.structs.replace(settings, admin_token="x")
    reader = ControlReader(kafka, settings.topics.control)
    await reader.start()
    await reader.wait_caught_up()
    admin = AdminService(settings, kafka, reader)
    await admin.start()
    try:
        params = StormParams(window_s=60, max_alerts=MAX_ALERTS, period_s=1)
        await admin.writer.put("alerts.storm-policy", StormPolicy(default=params),
                               by="test", expected_version=None)  # fmt: skip
        await admin.writer.put("alerts.exclusions", Exclusions(alert_codes=["8F3F"]),
                               by="test", expected_version=None)  # fmt: skip
        for _ in range(300):
            snap = reader.snapshot
            if snap.storm_policy is not None and snap.exclusions is not None:
                break
            await asyncio.sleep(0.05)
        yield reader
    finally:
        await admin.stop()
        await reader.stop()


def _alert(device: str, code: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "device_id": device,
            "alert_code": code,
            "recipients": RECIPIENTS,
            "region": "south",
            "raised_at_ms": 1_700_000_000_000 + n,
            "payload": f"{code}-{n}",
        }
    )


async def _send(kafka: KafkaSettings, topic: str) -> None:
    """The three kinds of traffic interleaved, in CHUNKS batches over SEND_S seconds."""
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for c in range(CHUNKS):
            batch = producer.batch()
            for i in range(c * STORM_N // CHUNKS, (c + 1) * STORM_N // CHUNKS):
                batch.add(topic, ROGUE.encode(), _alert(ROGUE, "8F1F", i))
            for i in range(c * NORMAL_N // CHUNKS, (c + 1) * NORMAL_N // CHUNKS):
                device = f"00-DB-00-00-00-00-{i // 256:02X}-{i % 256:02X}"
                batch.add(topic, device.encode(), _alert(device, "8F35", i))
            for i in range(c * EXCLUDED_N // CHUNKS, (c + 1) * EXCLUDED_N // CHUNKS):
                batch.add(topic, TAMPERED.encode(), _alert(TAMPERED, "8F3F", i))
            await producer.send(batch)
            # Spread over about 3 periods, so the storm has several periodic copies.
            await asyncio.sleep(SEND_S / CHUNKS)


async def test_alert_storm_is_reduced_and_everything_else_is_delivered(
    settings: Settings, kafka: KafkaSettings, reader: ControlReader
) -> None:
    registry = CollectorRegistry()
    loop = build_alerts(settings, kafka, CommonMetrics(registry, version="test"), reader=reader)
    received: list[tuple[bytes, DeviceAlert, dict[str, bytes]]] = []

    def on_records(records: list[Any]) -> None:
        received.extend(
            (r.key, msgspec.json.decode(r.value, type=DeviceAlert), dict(r.headers or ()))
            for r in records
        )

    def finals() -> int:
        return sum(1 for _, _, h in received if h.get(STORM_HEADER) == b"final")

    follower = TopicFollower(kafka, settings.topics.alerts_outbound, on_records, name="test")
    await follower.start()
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        for _ in range(300):
            if loop.status.assigned:
                break
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await _send(kafka, settings.topics.alerts_inbound)
        sent_s = time.monotonic() - started

        # Wait for the storm's final copy (one per recipient): 1 to 2 periods after its
        # last alert, once everything before it is out.
        def final_copies_out() -> bool:
            assert not task.done(), task.exception()
            return finals() >= len(RECIPIENTS)

        await wait_until_async(
            final_copies_out,
            timeout_s=60,
            what=lambda: f"no final copy: {len(received)} records",
            step_s=0.1,
        )
        done_s = time.monotonic() - started
        await asyncio.sleep(0.5)  # anything extra (a second storm's copies) shows up too
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await follower.stop()

    by_device: dict[str, list[tuple[bytes, DeviceAlert, dict[str, bytes]]]] = (
        collections.defaultdict(list)
    )
    for rec in received:
        by_device[rec[1].device_id].append(rec)
    # Normal traffic: every alert to every recipient, untouched.
    normal = [r for d, recs in by_device.items() if d not in (ROGUE, TAMPERED) for r in recs]
    assert len(normal) == NORMAL_N * len(RECIPIENTS)
    assert {(k, a.payload) for k, a, _ in normal} == {
        (u.encode(), f"8F35-{i}") for u in RECIPIENTS for i in range(NORMAL_N)
    }
    assert all(a.throttled_alert_count is None for _, a, _ in normal)
    # The excluded code: all of it.
    tampered = by_device[TAMPERED]
    assert len(tampered) == EXCLUDED_N * len(RECIPIENTS)
    assert all(a.throttled_alert_sequence_id is None for _, a, _ in tampered)
    # The storm, per recipient (its records are in one partition, in order).
    for user in RECIPIENTS:
        storm = [(a, h) for k, a, h in by_device[ROGUE] if k == user.encode()]
        at_once = [a for a, h in storm if STORM_HEADER not in h]
        periodic = [a for a, h in storm if h.get(STORM_HEADER) == b"periodic"]
        final = [a for a, h in storm if h.get(STORM_HEADER) == b"final"]
        sequences = {a.throttled_alert_sequence_id for a in periodic + final}
        assert len(final) == len(sequences) >= 1
        assert len(periodic) >= 2
        assert len(at_once) == MAX_ALERTS * len(sequences)
        assert all(a.throttled_alert_count is None for a in at_once)
        suppressed = sum(a.throttled_alert_count or 0 for a in periodic)
        # Every alert received was forwarded at once, as a periodic copy, or suppressed
        # and counted on a periodic copy; the final copy repeats the storm's total.
        assert len(at_once) + len(periodic) + suppressed == STORM_N
        for seq in sequences:
            copies = [a for a in periodic if a.throttled_alert_sequence_id == seq]
            [last] = [a for a in final if a.throttled_alert_sequence_id == seq]
            counts = sum(a.throttled_alert_count or 0 for a in copies)
            assert last.throttled_alert_count == counts
            assert (last.payload, last.raised_at_ms) == (
                copies[-1].payload,
                copies[-1].raised_at_ms,
            )
        assert final[-1].payload == f"8F1F-{STORM_N - 1}"
        print(
            f"{user}: {len(at_once)} at once, {len(periodic)} periodic, {suppressed} "
            f"suppressed, sent in {sent_s:.2f} s, final copy after {done_s:.2f} s"
        )
    assert registry.get_sample_value(
        "dccgate_alerts_suppressed_total", {"alert_code": "8F1F"}
    ) == float(suppressed)

    def received(code: str) -> float | None:
        labels = {"region": "south", "alert_code": code}
        return registry.get_sample_value("dccgate_alerts_received_total", labels)

    assert (received("8F1F"), received("8F35"), received("8F3F")) == (
        STORM_N,
        NORMAL_N,
        EXCLUDED_N,
    )
    assert registry.get_sample_value("dccgate_alerts_active_storms") == 0
    assert registry.get_sample_value("dccgate_alerts_exclusions_version") == 1
    # The storm was kept on the changelog while it ran; once over, its key is a tombstone.
    state = await read_topic(kafka, settings.topics.state_alerts, expect=2)
    assert {r.key for r in state} == {ROGUE.encode()}
    assert state[-1].value is None
    assert any(r.value is not None for r in state)
