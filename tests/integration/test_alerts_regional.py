"""Regional capacity end to end: above a CSP region's rate, the excluded and high-priority
codes go first, the rest are delayed (not lost), and a full queue pauses the input.

The alert worker runs in-process against the session's broker, configured through
dcc.control; every alert on dcc.alerts.outbound is read back.
"""

from __future__ import annotations

import msgspec
import pytest

from broker.settings import KafkaSettings
from tests.integration.alerts_helpers import (
    SUPPLIER,
    OutboundWatch,
    alert,
    configured,
    device,
    running_alerts,
    send,
)
from tests.integration.helpers import wait_until_async
from workers.config.model import Exclusions, RegionalCapacity, RegionCapacity
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

NORMAL_N, PRIORITY_N, EXCLUDED_N = 1_500, 150, 50


def _config(rate_per_s: float, burst: int, max_queued: int) -> dict[str, msgspec.Struct]:
    south = RegionCapacity(rate_per_s=rate_per_s, burst=burst, max_queued=max_queued)
    return {
        "alerts.regional-capacity": RegionalCapacity(
            regions={"south": south}, high_priority_codes=["AD1"]
        ),
        "alerts.exclusions": Exclusions(alert_codes=["8F3F"]),
    }


async def test_priority_alerts_go_first_and_the_others_are_delayed_not_lost(
    settings: Settings, kafka: KafkaSettings
) -> None:
    total = NORMAL_N + PRIORITY_N + EXCLUDED_N
    # 200 alerts a second for the South: the normal ones take about 8 s to go out.
    async with (
        configured(settings, kafka, _config(200, 50, 100_000)) as (reader, _),
        OutboundWatch(kafka, settings) as watch,
        running_alerts(settings, kafka, reader) as (_, registry, task),
    ):
        # All the normal alerts first, then the priority ones: these must overtake.
        records = [
            (device(i).encode(), alert(device(i), "8F35", i, recipients=[SUPPLIER]))
            for i in range(NORMAL_N)
        ]
        for i in range(PRIORITY_N):
            d = device(NORMAL_N + i)
            records.append((d.encode(), alert(d, "AD1", i, recipients=[SUPPLIER])))
        for i in range(EXCLUDED_N):
            d = device(NORMAL_N + PRIORITY_N + i)
            records.append((d.encode(), alert(d, "8F3F", i, recipients=[SUPPLIER])))
        await send(kafka, settings.topics.alerts_inbound, records)

        def all_out() -> bool:
            assert not task.done(), task.exception()
            return len(watch.records) >= total

        await wait_until_async(
            all_out, timeout_s=60, what=lambda: f"{len(watch.records)} of {total} out"
        )
        queued = registry.get_sample_value("dccgate_alerts_regional_queued", {"region": "south"})
        held = registry.get_sample_value("dccgate_alerts_held")
    out = watch.of(SUPPLIER)
    # Nothing lost, nothing twice.
    assert sorted(a.payload for _, a, _ in out) == sorted(
        [f"8F35-{i}" for i in range(NORMAL_N)]
        + [f"AD1-{i}" for i in range(PRIORITY_N)]
        + [f"8F3F-{i}" for i in range(EXCLUDED_N)]
    )
    # The priority alerts, sent after every normal one, went out while most of the normal
    # ones still waited.
    codes = [a.alert_code for _, a, _ in out]
    last_priority = max(i for i, code in enumerate(codes) if code != "8F35")
    normal_after = codes[last_priority:].count("8F35")
    print(f"normal alerts still waiting when the last priority alert went: {normal_after}")
    assert normal_after >= NORMAL_N // 3
    # Delays measured: every alert observed once; the queue and the hold are empty again.
    count = registry.get_sample_value(
        "dccgate_alerts_regional_delay_seconds_count", {"region": "south"}
    )
    at_once = registry.get_sample_value(
        "dccgate_alerts_regional_delay_seconds_bucket", {"region": "south", "le": "0.001"}
    )
    assert count is not None
    assert at_once is not None
    delayed = count - at_once
    assert count == total
    assert delayed >= NORMAL_N // 2
    assert (queued, held) == (0, 0)


async def test_a_full_queue_pauses_the_input_and_nothing_is_dropped(
    settings: Settings, kafka: KafkaSettings
) -> None:
    n = 2_000
    paused_seen = []
    async with (
        configured(settings, kafka, _config(1_000, 50, 100)) as (reader, _),
        OutboundWatch(kafka, settings) as watch,
        running_alerts(settings, kafka, reader) as (_, registry, task),
    ):
        records = [
            (device(i).encode(), alert(device(i), "8F35", i, recipients=[SUPPLIER]))
            for i in range(n)
        ]
        await send(kafka, settings.topics.alerts_inbound, records)

        def all_out() -> bool:
            assert not task.done(), task.exception()
            paused_seen.append(registry.get_sample_value("dccgate_alerts_input_paused"))
            return len(watch.records) >= n

        await wait_until_async(
            all_out, timeout_s=60, step_s=0.01, what=lambda: f"{len(watch.records)} of {n} out"
        )
    assert 1.0 in paused_seen  # the input was paused while the queue was full
    assert paused_seen[-1] == 0.0
    assert sorted(a.payload for _, a, _ in watch.records) == sorted(f"8F35-{i}" for i in range(n))
