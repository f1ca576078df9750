"""An alert worker SIGKILLed mid-storm, with alerts waiting for regional capacity: the
restarted worker continues the storm under the same sequence ID with exact counts, and
delivers every alert that was waiting.

Real `dccgate worker alerts` processes against the session's broker, configured through
dcc.control.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from broker.settings import KafkaSettings
from tests.integration.alerts_helpers import (
    OutboundWatch,
    configured,
    kill_mid_storm,
    storm_seen,
    stream_storm,
)
from tests.integration.brokers import SessionBroker
from tests.integration.helpers import start_worker_process
from workers.config.model import RegionalCapacity, RegionCapacity, StormParams, StormPolicy
from workers.config.settings import Settings

pytestmark = [pytest.mark.usefixtures("topics_ready"), pytest.mark.slow]

ROGUE = "00-DB-FF-FF-FF-FF-00-01"
STORM_N, NORMAL_N = 30_000, 3_000
CHUNKS = 30
MAX_ALERTS = 5
CONFIG = {
    "alerts.storm-policy": StormPolicy(
        default=StormParams(window_s=600, max_alerts=MAX_ALERTS, period_s=1)
    ),
    # The normal alerts arrive faster than the South may take them: some always wait.
    "alerts.regional-capacity": RegionalCapacity(
        regions={"south": RegionCapacity(rate_per_s=300, burst=50)}
    ),
}


def _start(broker: SessionBroker, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return start_worker_process(
        broker.bootstrap, settings, log, worker="alerts", env={"DCCGATE_MAX_POLL_RECORDS": "500"}
    )


async def _stream(kafka: KafkaSettings, topic: str) -> None:
    """The storm and the normal alerts interleaved, over about 8 s."""
    await stream_storm(
        kafka, topic, ROGUE, storm_n=STORM_N, normal_n=NORMAL_N, chunks=CHUNKS, over_s=8.0
    )


async def test_sigkill_mid_storm_keeps_the_storm_contained_and_loses_nothing(
    kafka_broker: SessionBroker, settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    logs = [tmp_path / "alerts-1.log", tmp_path / "alerts-2.log"]
    procs: list[subprocess.Popen[bytes]] = []
    async with (
        configured(settings, kafka, CONFIG),
        OutboundWatch(kafka, settings) as watch,
    ):
        try:
            streamer = asyncio.create_task(_stream(kafka, settings.topics.alerts_inbound))
            normal_at_kill = await kill_mid_storm(
                lambda log: _start(kafka_broker, settings, log),
                logs,
                procs,
                watch,
                streamer,
                NORMAL_N,
            )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
    # Every normal alert delivered: those waiting for capacity at the kill were not lost
    # (a few may come twice: at-least-once).
    normal = [a.payload for _, a, _ in watch.records if a.alert_code == "8F35"]
    assert set(normal) == {f"8F35-{i}" for i in range(NORMAL_N)}
    # The storm stayed one storm across the restart, every alert accounted for exactly.
    storm = [r for r in watch.records if r[1].device_id == ROGUE]
    seen = storm_seen(storm, STORM_N, MAX_ALERTS)
    restored = "1 storms" in logs[1].read_text()
    print(
        f"normal delivered at the kill {normal_at_kill}, duplicates {len(normal) - NORMAL_N}; "
        f"storm: {seen.at_once} at once, {seen.periodic} periodic, {seen.suppressed} "
        f"suppressed, {seen.repeats} repeated copies, restored: {restored}"
    )
    assert len(seen.sequences) == 1
    assert restored
    assert procs[1].returncode == 0
