"""SECMP0062 end to end: a rogue device storms 100,000 alerts among normal traffic from
10,000 devices.

The alert worker runs in-process against the session's broker, configured through the
control topic (storm policy and exclusion list), and every alert on dcc.alerts.outbound is
read back and accounted for.
"""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from tests.integration.alerts_helpers import (
    DNO,
    SUPPLIER,
    Outbound,
    OutboundWatch,
    alert,
    configured,
    device,
    running_alerts,
    storm_seen,
)
from tests.integration.helpers import read_topic, wait_until_async
from workers.alerts import STORM_HEADER
from workers.config.model import Exclusions, StormParams, StormPolicy
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

RECIPIENTS = [SUPPLIER, DNO]
ROGUE = "00-DB-FF-FF-FF-FF-00-01"
TAMPERED = "00-DB-FF-FF-FF-FF-00-02"
STORM_N, NORMAL_N, EXCLUDED_N = 100_000, 10_000, 1_000
MAX_ALERTS = 5
CHUNKS = 20
SEND_S = 3.0
CONFIG = {
    "alerts.storm-policy": StormPolicy(
        default=StormParams(window_s=60, max_alerts=MAX_ALERTS, period_s=1)
    ),
    "alerts.exclusions": Exclusions(alert_codes=["8F3F"]),
}


async def _send(kafka: KafkaSettings, topic: str) -> None:
    """The three kinds of traffic interleaved, in CHUNKS batches over SEND_S seconds."""
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for c in range(CHUNKS):
            batch = producer.batch()
            for i in range(c * STORM_N // CHUNKS, (c + 1) * STORM_N // CHUNKS):
                batch.add(topic, ROGUE.encode(), alert(ROGUE, "8F1F", i))
            for i in range(c * NORMAL_N // CHUNKS, (c + 1) * NORMAL_N // CHUNKS):
                batch.add(topic, device(i).encode(), alert(device(i), "8F35", i))
            for i in range(c * EXCLUDED_N // CHUNKS, (c + 1) * EXCLUDED_N // CHUNKS):
                batch.add(topic, TAMPERED.encode(), alert(TAMPERED, "8F3F", i))
            await producer.send(batch)
            # Spread over about 3 periods, so the storm has several periodic copies.
            await asyncio.sleep(SEND_S / CHUNKS)


async def test_alert_storm_is_reduced_and_everything_else_is_delivered(
    settings: Settings, kafka: KafkaSettings
) -> None:
    async with (
        configured(settings, kafka, CONFIG) as (reader, _),
        OutboundWatch(kafka, settings) as watch,
        running_alerts(settings, kafka, reader) as (_, registry, task),
    ):
        started = time.monotonic()
        await _send(kafka, settings.topics.alerts_inbound)
        sent_s = time.monotonic() - started

        # Wait for the storm's final copy (one per recipient): 1 to 2 periods after its
        # last alert, once everything before it is out.
        def final_copies_out() -> bool:
            assert not task.done(), task.exception()
            finals = sum(1 for _, _, h in watch.records if h.get(STORM_HEADER) == b"final")
            return finals >= len(RECIPIENTS)

        await wait_until_async(
            final_copies_out,
            timeout_s=60,
            what=lambda: f"no final copy: {len(watch.records)} records",
            step_s=0.1,
        )
        done_s = time.monotonic() - started
        await asyncio.sleep(0.5)  # anything extra (a second storm's copies) shows up too

    by_device: dict[str, list[Outbound]] = collections.defaultdict(list)
    for rec in watch.records:
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
    # The storm, per recipient (its records are in one partition, in order): one storm,
    # reduced to MAX_ALERTS at once and one copy a second, every alert accounted for.
    for user in RECIPIENTS:
        seen = storm_seen(
            [r for r in by_device[ROGUE] if r[0] == user.encode()], STORM_N, MAX_ALERTS
        )
        assert (len(seen.sequences), seen.repeats) == (1, 0)
        assert seen.periodic >= 2
        assert seen.last_payload == f"8F1F-{STORM_N - 1}"
        print(
            f"{user}: {seen.at_once} at once, {seen.periodic} periodic, {seen.suppressed} "
            f"suppressed, sent in {sent_s:.2f} s, final copy after {done_s:.2f} s"
        )
    assert registry.get_sample_value("dccgate_alerts_suppressed_total", {"alert_code": "8F1F"}) == (
        STORM_N - MAX_ALERTS - seen.periodic
    )

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
