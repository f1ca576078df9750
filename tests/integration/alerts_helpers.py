"""Helpers for the alert worker's integration tests: configuration through dcc.control, an
alert worker in this event loop, and what it writes to dcc.alerts.outbound."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import orjson
from prometheus_client import CollectorRegistry

from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.schemas import DeviceAlert
from broker.settings import KafkaSettings
from tests.integration.helpers import wait_until_async
from workers.admin.service import AdminService
from workers.alerts import STORM_HEADER, AlertService
from workers.alerts.service import build_alerts
from workers.config.reader import ControlReader
from workers.config.settings import Settings
from workers.runtime.metrics import CommonMetrics

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DNO = "90-B3-D5-1F-30-02-00-00"

# (key, alert, headers) of one record on dcc.alerts.outbound.
Outbound = tuple[bytes, DeviceAlert, dict[str, bytes]]


def alert(
    device: str,
    code: str,
    n: int,
    *,
    region: str | None = "south",
    recipients: Iterable[str] = (SUPPLIER, DNO),
) -> bytes:
    """An alert's JSON; `n` goes into its payload (`{code}-{n}`) and `raised_at_ms`."""
    return orjson.dumps(
        {
            "device_id": device,
            "alert_code": code,
            "recipients": list(recipients),
            "region": region,
            "raised_at_ms": 1_700_000_000_000 + n,
            "payload": f"{code}-{n}",
        }
    )


def device(i: int) -> str:
    """The i-th normal device's ID (EUI-64, up to 65,536 of them)."""
    return f"00-DB-00-00-00-00-{i // 256:02X}-{i % 256:02X}"


@contextlib.asynccontextmanager
async def configured(
    settings: Settings, kafka: KafkaSettings, items: Mapping[str, msgspec.Struct]
) -> AsyncIterator[tuple[ControlReader, AdminService]]:
    """A control reader with `items` (dcc.control key -> body) written through the admin
    service's writer, as the admin API does, and applied."""
    token = "alerts-test-operator-token-32-characters"
    settings = msgspec.structs.replace(settings, admin_token=token)
    reader = ControlReader(kafka, settings.topics.control)
    await reader.start()
    await reader.wait_caught_up()
    admin = AdminService(settings, kafka, reader)
    await admin.start()
    try:
        for key, body in items.items():
            await admin.writer.put(key, body, by="test", expected_version=None)
        await wait_until_async(
            lambda: all(reader.snapshot.get(k) is not None for k in items),
            timeout_s=15,
            what="configuration not applied",
        )
        yield reader, admin
    finally:
        await admin.stop()
        await reader.stop()


class OutboundWatch:
    """Everything written to dcc.alerts.outbound, decoded, as it arrives."""

    def __init__(self, kafka: KafkaSettings, settings: Settings) -> None:
        self.records: list[Outbound] = []
        self._follower = TopicFollower(
            kafka, settings.topics.alerts_outbound, self._on_records, name="test-outbound"
        )

    def _on_records(self, records: list[Any]) -> None:
        self.records.extend(
            (r.key, msgspec.json.decode(r.value, type=DeviceAlert), dict(r.headers or ()))
            for r in records
        )

    async def __aenter__(self) -> OutboundWatch:
        await self._follower.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._follower.stop()

    def of(self, user: str) -> list[Outbound]:
        """The records for one recipient, in the order written (one partition)."""
        return [r for r in self.records if r[0] == user.encode()]


@contextlib.asynccontextmanager
async def running_alerts(
    settings: Settings, kafka: KafkaSettings, reader: ControlReader | None
) -> AsyncIterator[tuple[AlertService, CollectorRegistry, asyncio.Task[None]]]:
    """An alert worker in this event loop, with its partitions assigned."""
    registry = CollectorRegistry()
    service = build_alerts(settings, kafka, CommonMetrics(registry, version="test"), reader=reader)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:

        def assigned() -> bool:
            assert not task.done(), task.exception()
            return bool(service.status.assigned)

        await wait_until_async(assigned, timeout_s=30, what="no partitions assigned")
        yield service, registry, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def send(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Write (key, value) records, in order, and wait for the acknowledgements."""
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        batch = producer.batch()
        for key, value in records:
            batch.add(topic, key, value)
        await producer.send(batch)


async def stream_storm(
    kafka: KafkaSettings,
    topic: str,
    rogue: str,
    *,
    storm_n: int,
    normal_n: int,
    chunks: int,
    over_s: float = 8.0,
) -> None:
    """A storm of `storm_n` 8F1F alerts from `rogue` and `normal_n` 8F35 alerts, each from a
    device of its own (payload `8F35-i`), interleaved in `chunks` sends over `over_s` s."""
    async with BatchProducer(kafka) as producer:
        await producer.prepare([topic])
        for c in range(chunks):
            batch = producer.batch()
            for i in range(c * storm_n // chunks, (c + 1) * storm_n // chunks):
                batch.add(topic, rogue.encode(), alert(rogue, "8F1F", i, recipients=[DNO]))
            for i in range(c * normal_n // chunks, (c + 1) * normal_n // chunks):
                batch.add(topic, device(i).encode(), alert(device(i), "8F35", i, recipients=[DNO]))
            await producer.send(batch)
            await asyncio.sleep(over_s / chunks)


async def kill_mid_storm(
    start: Callable[[Path], subprocess.Popen[bytes]],
    logs: list[Path],
    procs: list[subprocess.Popen[bytes]],
    watch: OutboundWatch,
    streamer: asyncio.Task[None],
    normal_n: int,
) -> int:
    """Start an alert worker (`start(logs[0])`), SIGKILL it once two periodic storm copies
    are out, start another (`start(logs[1])`), and wait for the rest of the stream, every
    normal alert and the storm's final copy; return the normal alerts delivered at the kill.
    The processes are added to `procs` as they start: the caller stops them."""
    procs.append(start(logs[0]))

    def mid_storm() -> bool:
        assert procs[0].poll() is None, logs[0].read_text()
        copies = [h for _, _, h in watch.records if h.get(STORM_HEADER) == b"periodic"]
        return len(copies) >= 2

    await wait_until_async(mid_storm, timeout_s=60, what="no storm copies")
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    normal_at_kill = sum(1 for _, a, _ in watch.records if a.alert_code == "8F35")
    assert normal_at_kill < normal_n, "the kill came too late to test anything"
    procs.append(start(logs[1]))
    await streamer

    def done() -> bool:
        assert procs[1].poll() is None, logs[1].read_text()
        normal = {a.payload for _, a, _ in watch.records if a.alert_code == "8F35"}
        final = any(h.get(STORM_HEADER) == b"final" for _, _, h in watch.records)
        return final and len(normal) == normal_n

    await wait_until_async(done, timeout_s=90, what=lambda: logs[1].read_text()[-3000:])
    await asyncio.sleep(1.0)  # a late repeat would arrive by now
    return normal_at_kill


class StormSeen(msgspec.Struct, frozen=True, kw_only=True):
    """One storm's records for one recipient, repeats of a copy counted once."""

    at_once: int
    periodic: int
    suppressed: int
    sequences: frozenset[str]
    repeats: int
    last_payload: str


def storm_seen(records: list[Outbound], sent: int, max_alerts: int) -> StormSeen:
    """Check the SECMP0062 accounting of one device's storm as one recipient saw it, and
    return what it saw. A copy sent again after a crash (same sequence ID and boundary
    header) is a repeat and counted once; an alert forwarded at once may be repeated too
    (at-least-once), so at-once alerts are counted by payload."""
    from workers.alerts import BOUNDARY_HEADER, STORM_HEADER

    at_once = {a.payload for _, a, h in records if STORM_HEADER not in h}
    copies: dict[tuple[str | None, bytes, bytes], DeviceAlert] = {}
    for _, a, h in records:
        if STORM_HEADER in h:
            copies.setdefault(
                (a.throttled_alert_sequence_id, h[BOUNDARY_HEADER], h[STORM_HEADER]), a
            )
    repeats = sum(1 for _, _, h in records if STORM_HEADER in h) - len(copies)
    periodic = [a for (_, _, kind), a in copies.items() if kind == b"periodic"]
    final = {seq: a for (seq, _, kind), a in copies.items() if kind == b"final"}
    sequences = frozenset(a.throttled_alert_sequence_id or "" for a in copies.values())
    assert set(final) == sequences, "every storm ended with one final copy"
    assert len(at_once) == max_alerts * len(sequences)
    suppressed = sum(a.throttled_alert_count or 0 for a in periodic)
    # Every alert sent was forwarded at once, as a periodic copy, or suppressed and counted
    # on a periodic copy; the final copy repeats its storm's total.
    assert len(at_once) + len(periodic) + suppressed == sent
    for seq, last in final.items():
        counts = [a for a in periodic if a.throttled_alert_sequence_id == seq]
        assert last.throttled_alert_count == sum(a.throttled_alert_count or 0 for a in counts)
        assert (last.payload, last.raised_at_ms) == (counts[-1].payload, counts[-1].raised_at_ms)
    return StormSeen(
        at_once=len(at_once),
        periodic=len(periodic),
        suppressed=suppressed,
        sequences=sequences,
        repeats=repeats,
        last_payload=next(iter(final.values())).payload if final else "",
    )
