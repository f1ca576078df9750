"""workers.alerts.firmware: which forwarded Service Requests the MP102 rule hears of."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from broker.settings import KafkaSettings
from tests.unit.workers.alerts.helpers import record
from workers.alerts.firmware import FirmwareFeed

USER = "90-B3-D5-1F-30-01-00-00"
METER = "00-DB-12-34-56-78-90-A0"


def _sr(srv: str = "11.3", cv: int = 5, **body: Any) -> bytes:
    return orjson.dumps(
        {
            "request_id": f"{USER}:{METER}:7",
            "user_role": "IS",
            "srv": srv,
            "command_variant": cv,
            "body": body,
        }
    )


def test_only_activations_sent_to_the_device_are_noted() -> None:
    noted: list[tuple[str, float]] = []
    registry = CollectorRegistry()
    seen = Counter("seen", "test", registry=registry)
    feed = FirmwareFeed(
        KafkaSettings(bootstrap="x:1"), "out", lambda d, t: noted.append((d, t)), seen
    )
    values = [
        _sr(),  # CV 5: the signed pre-command to the device
        _sr(cv=4),  # to Transform: not an activation yet
        _sr(srv="11.2", cv=1),
        _sr(cv=6, activation_datetime="1970-01-01T00:10:00"),  # future-dated, no zone: UTC
        _sr(cv=7, activation_datetime=12),  # not a date: noted when forwarded
        _sr(cv=7, activation_datetime="1970-01-01T00:00:00Z"),  # in the past: when forwarded
        b'{"srv": "11.3", broken',
        None,
    ]
    feed.on_records([record(v, topic="out", offset=i) for i, v in enumerate(values)])
    # The records' timestamp is 1,000 ms.
    assert noted == [(METER, 1.0), (METER, 600.0), (METER, 1.0), (METER, 1.0)]
    assert registry.get_sample_value("seen_total") == 4
