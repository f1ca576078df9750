"""Replay an alert storm against a running gateway and watch it being contained.

    dccgate run                                     # in another terminal
    python docs/examples/alert_storm.py             # docs/alerts.md, "Watch a storm"

Sends, over `--seconds` (default 15), interleaved on dcc.alerts.inbound:

- a rogue meter storming `--storm` (default 20,000) low-battery alerts (8F1F);
- `--devices` (default 1,000) meters raising one supply-restored alert (8F35) each;
- 200 tamper alerts (8F3F) from one meter: on the exclusion list if you put it there.

Then follows dcc.alerts.outbound and prints, per device kind, what the recipients got: alerts
forwarded at once, periodic copies with their `throttled_alert_count`, and the storm's final
copy. Stops once the final copy is in (or after `--wait` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import msgspec
import orjson

from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.schemas import DeviceAlert
from broker.settings import KafkaSettings
from broker.topics import Topics

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DNO = "90-B3-D5-1F-30-02-00-00"
ROGUE = "00-DB-FF-FF-FF-FF-00-01"
TAMPERED = "00-DB-FF-FF-FF-FF-00-02"
HEADER = "dccgate-storm-copy"


def _alert(device: str, code: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "device_id": device,
            "alert_code": code,
            "recipients": [SUPPLIER, DNO],
            "region": "south",
            "raised_at_ms": time.time_ns() // 1_000_000,
            "payload": f"{code}-{n}",
        }
    )


async def _send(kafka: KafkaSettings, topic: str, args: argparse.Namespace) -> None:
    chunks = max(1, int(args.seconds * 4))
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for c in range(chunks):
            batch = producer.batch()
            for i in range(c * args.storm // chunks, (c + 1) * args.storm // chunks):
                batch.add(topic, ROGUE.encode(), _alert(ROGUE, "8F1F", i))
            for i in range(c * args.devices // chunks, (c + 1) * args.devices // chunks):
                device = f"00-DB-00-00-00-00-{i // 256:02X}-{i % 256:02X}"
                batch.add(topic, device.encode(), _alert(device, "8F35", i))
            for i in range(c * 200 // chunks, (c + 1) * 200 // chunks):
                batch.add(topic, TAMPERED.encode(), _alert(TAMPERED, "8F3F", i))
            await producer.send(batch)
            await asyncio.sleep(args.seconds / chunks)
    print(f"sent {args.storm} storm alerts, {args.devices} normal, 200 tamper alerts")


async def main(args: argparse.Namespace) -> None:
    kafka = KafkaSettings(bootstrap=args.bootstrap)
    topics = Topics.with_prefix(args.topic_prefix)
    seen: Counter[str] = Counter()
    counts: list[int] = []
    final: list[DeviceAlert] = []
    final_in = asyncio.Event()
    started_ms = time.time_ns() // 1_000_000

    def on_records(records: list[Any]) -> None:
        for rec in records:
            alert = msgspec.json.decode(rec.value, type=DeviceAlert)
            if alert.raised_at_ms < started_ms or rec.key != SUPPLIER.encode():
                continue  # an earlier run's, or the second recipient's copy
            kind = dict(rec.headers or ()).get(HEADER, b"at once").decode()
            who = {ROGUE: "rogue 8F1F", TAMPERED: "tamper 8F3F"}.get(alert.device_id, "normal")
            seen[f"{who}: {kind}"] += 1
            if who == "rogue 8F1F" and kind == "periodic":
                counts.append(alert.throttled_alert_count or 0)
            if kind == "final":
                final.append(alert)
                final_in.set()

    follower = TopicFollower(
        kafka, topics.alerts_outbound, on_records, name="storm-demo", from_ms=started_ms
    )
    await follower.start()
    try:
        await _send(kafka, topics.alerts_inbound, args)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(final_in.wait(), args.wait)
        await asyncio.sleep(1.0)
    finally:
        await follower.stop()
    print(f"what {SUPPLIER} received on {topics.alerts_outbound}:")
    for key, n in sorted(seen.items()):
        print(f"  {key:<28} {n}")
    print(f"  throttled_alert_count of the periodic copies: {counts} (sum {sum(counts)})")
    for alert in final:
        print(
            f"  final copy: sequence {alert.throttled_alert_sequence_id}, "
            f"total suppressed {alert.throttled_alert_count}"
        )
    if not final:
        print(f"  no final copy within {args.wait:.0f} s: is period_s short enough?")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument("--storm", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--wait", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
