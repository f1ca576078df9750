"""The MP102 rule end to end: a router forwards 11.3 Activate Firmware to two meters; an
outage alert of one is dropped when its restore alert follows, the other's is forwarded
late, and a meter with no activation is not held at all.

A router and an alert worker run in-process against the session's broker; the rule is
turned on through dcc.control.
"""

from __future__ import annotations

import orjson
import pytest

from broker.settings import KafkaSettings
from tests.integration.alerts_helpers import (
    DNO,
    OutboundWatch,
    alert,
    configured,
    running_alerts,
    send,
)
from tests.integration.helpers import running_router, wait_until_async
from workers.config.model import Mp102Rule
from workers.config.settings import Settings

pytestmark = pytest.mark.usefixtures("topics_ready")

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
RESTORED = "00-DB-12-34-56-78-90-A0"  # activates firmware; its restore alert follows
UNRESTORED = "00-DB-12-34-56-78-90-A1"  # activates firmware; no restore alert
UNRELATED = "00-DB-12-34-56-78-90-A2"  # no activation
HOLD_S = 2


def _activate(target: str, counter: int) -> tuple[bytes, bytes]:
    # 11.3 is critical: CV 5 is the signed pre-command sent to the device over the WAN.
    return SUPPLIER.encode(), orjson.dumps(
        {
            "request_id": f"{SUPPLIER}:{target}:{counter}",
            "user_role": "IS",
            "srv": "11.3",
            "command_variant": 5,
            "body": {},
        }
    )


async def test_outage_alerts_after_firmware_activation(
    settings: Settings, kafka: KafkaSettings
) -> None:
    rule = {"alerts.mp102": Mp102Rule(enabled=True, watch_s=600, hold_s=HOLD_S)}
    async with (
        configured(settings, kafka, rule) as (reader, _),
        OutboundWatch(kafka, settings) as watch,
        running_router(settings, kafka),
        running_alerts(settings, kafka, reader) as (_, registry, task),
    ):
        await send(
            kafka, settings.topics.sr_inbound, [_activate(RESTORED, 1), _activate(UNRESTORED, 2)]
        )

        def activations_seen() -> bool:
            assert not task.done(), task.exception()
            seen = registry.get_sample_value("dccgate_alerts_firmware_activations_total")
            return seen == 2

        await wait_until_async(
            activations_seen, timeout_s=30, what="the 11.3 requests did not reach the alert worker"
        )
        inbound = settings.topics.alerts_inbound
        outages = [
            (d.encode(), alert(d, "AD1", i, recipients=[DNO]))
            for i, d in enumerate((RESTORED, UNRESTORED, UNRELATED))
        ]
        await send(kafka, inbound, outages)
        await wait_until_async(
            lambda: len(watch.records) >= 1,
            timeout_s=30,
            what="the unrelated outage alert did not go out",
        )
        assert registry.get_sample_value("dccgate_alerts_mp102_held") == 2
        assert [a.device_id for _, a, _ in watch.records] == [UNRELATED]
        await send(
            kafka, inbound, [(RESTORED.encode(), alert(RESTORED, "8F35", 9, recipients=[DNO]))]
        )

        def done() -> bool:
            dropped = registry.get_sample_value("dccgate_alerts_mp102_dropped_total")
            released = registry.get_sample_value("dccgate_alerts_mp102_released_total")
            return dropped == 1 and released == 1 and len(watch.records) >= 3

        await wait_until_async(done, timeout_s=30, what=lambda: f"{watch.records}")
    sent = sorted((a.device_id, a.alert_code) for _, a, _ in watch.records)
    # The restored meter's outage was a false alarm: dropped; its restore went on.
    assert sent == [(RESTORED, "8F35"), (UNRESTORED, "AD1"), (UNRELATED, "AD1")]
    assert registry.get_sample_value("dccgate_alerts_held") == 0
