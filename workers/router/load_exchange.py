"""The exchange between routers on `dcc.load`: each router's admitted rates for traffic
management (SECMP0067) and its DCC-wide ADT counts (SEC G6 (b)(i)).

Every router publishes its load report every `REPORT_INTERVAL_S` and sums the latest report
of each peer. Records with the header `dccgate-load: adt` are `adt.AdtCountReport`s; records
without it are traffic `LoadReport`s (the format of the first release, so older routers still
read the topic; they log the ADT reports as not being load reports and go on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import TypeVar

import msgspec

from adt import AdtCountReport
from adt import merge_reports as merge_adt_reports
from broker.consumer import Record
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.settings import KafkaSettings
from throttling import LoadReport, merge_reports
from workers.router.adt import AdtControl
from workers.router.traffic import TrafficControl
from workers.runtime.supervise import SideTasks

__all__ = [
    "ADT_MAX_REPORT_AGE_S",
    "LOAD_KIND_HEADER",
    "MAX_REPORT_AGE_S",
    "REPORT_INTERVAL_S",
    "SIDE_TASK",
    "VIEW_INTERVAL_S",
    "LoadExchange",
    "new_peer_id",
]

log = logging.getLogger(__name__)

SIDE_TASK = "load_exchange"
"""The exchange's name among the router's side tasks (`/healthz`, metrics)."""

REPORT_INTERVAL_S = 0.25
"""How often each router publishes its load report (I in the overshoot bound)."""
VIEW_INTERVAL_S = 0.1
"""How often each router recomputes its limits from the latest reports (V)."""
MAX_REPORT_AGE_S = 3 * REPORT_INTERVAL_S
"""A peer whose latest report is older is taken to be gone."""
ADT_MAX_REPORT_AGE_S = 5.0
"""A peer's DCC-wide ADT counts are summed until its report is this old: long against the
report interval, so a router that pauses (a long batch, a GC) is not dropped from the count
(an under-count would let requests past a DCC-wide threshold); a crashed router's share
leaves the sum after this long."""
LOAD_KIND_HEADER = "dccgate-load"
_ADT_HEADERS = ((LOAD_KIND_HEADER, b"adt"),)

R = TypeVar("R", LoadReport, AdtCountReport)
_decode_report = msgspec.json.Decoder(LoadReport).decode
_decode_adt_report = msgspec.json.Decoder(AdtCountReport).decode
_encode = msgspec.json.Encoder().encode


def new_peer_id() -> str:
    """A router's id in load reports: host, process and a random part (unique per start)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _keep_newest(reports: dict[str, R], peer: str, report: R, at_s: float) -> None:
    """Keep `report` as `peer`'s latest unless a newer one (by the sender's clock) is kept."""
    known = reports.get(peer)
    if known is None or at_s >= known.at_s:
        reports[peer] = report


class LoadExchange:
    """Publishes this router's load report and DCC-wide ADT counts to `dcc.load` and folds
    in the peers' reports.

    Runs until `stop` is set: reports every REPORT_INTERVAL_S, the traffic limits and the
    peers' ADT counts recomputed every VIEW_INTERVAL_S from the latest report of each peer.
    `adt` is optional (the benchmark runs traffic management alone).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        control: TrafficControl,
        producer: BatchProducer,
        adt: AdtControl | None = None,
        side_tasks: SideTasks | None = None,
    ) -> None:
        self._topic = topic
        self._control = control
        self._producer = producer
        self._adt = adt
        self._side = side_tasks
        self.reports: dict[str, LoadReport] = {}
        self.adt_reports: dict[str, AdtCountReport] = {}
        self.bad_reports = 0
        # Only recent reports matter; start a little before now.
        since_ms = time.time_ns() // 1_000_000 - 10_000
        self._follower = TopicFollower(
            settings, topic, self._on_reports, name="load", from_ms=since_ms
        )

    def _on_reports(self, records: list[Record]) -> None:
        for rec in records:
            is_adt = bool(rec.headers) and (LOAD_KIND_HEADER, b"adt") in rec.headers
            try:
                if is_adt:
                    adt = _decode_adt_report(rec.value or b"")
                    _keep_newest(self.adt_reports, adt.router_id, adt, adt.at_s)
                else:
                    load = _decode_report(rec.value or b"")
                    _keep_newest(self.reports, load.peer_id, load, load.at_s)
            except msgspec.DecodeError as exc:
                self.bad_reports += 1
                what = "an ADT count report" if is_adt else "a load report"
                log.warning("dcc.load offset %d is not %s: %s", rec.offset, what, exc)

    def _dcc_adt(self) -> AdtControl | None:
        """The ADT control while DCC-wide count thresholds exist, else None."""
        adt = self._adt
        if adt is None or not adt.engine.dcc_table.count_rules:
            return None
        return adt

    async def _publish(self, now_s: float) -> None:
        key = self._control.peer_id.encode()
        manager = self._control.manager
        if manager is not None:
            report = manager.local_report(now_s)
            self.reports[report.peer_id] = report
            await self._producer.send_one(self._topic, key, _encode(report))
        adt = self._dcc_adt()
        if adt is not None:
            counts = adt.engine.count_report(self._control.peer_id, now_s)
            await self._producer.send_one(self._topic, key, _encode(counts), headers=_ADT_HEADERS)

    def _fold(self, now_s: float) -> None:
        # Reports of peers that left are dropped here, and by the merges.
        self._control.roll_month(now_s)  # allocations derived from forecasts follow the month
        manager = self._control.manager
        if manager is not None:
            self.reports = {p: r for p, r in self.reports.items() if now_s - r.at_s <= 60.0}
            manager.update_view(merge_reports(self.reports, now_s, MAX_REPORT_AGE_S))
        adt = self._dcc_adt()
        if adt is not None:
            self.adt_reports = {p: r for p, r in self.adt_reports.items() if now_s - r.at_s <= 60.0}
            adt.engine.set_peer_counts(
                merge_adt_reports(
                    self.adt_reports.values(),
                    now_s,
                    ADT_MAX_REPORT_AGE_S,
                    exclude_router=self._control.peer_id,
                )
            )

    @property
    def problem(self) -> str | None:
        """Why the peers' reports cannot be read now, or None."""
        return self._follower.problem

    async def _exchange_step(self, now_s: float) -> None:
        """Publish and fold; a failure (the broker unreachable, a send refused) is reported
        to the side tasks and retried at the next report: the view is stale until then, and
        /healthz says so (SECMP0067 and the DCC-wide ADT counts depend on it)."""
        try:
            await self._publish(now_s)
            self._fold(now_s)
        except Exception as exc:  # retried next interval; never stops the router
            if self._side is None:
                raise
            self._side.failed(SIDE_TASK, exc)
            return
        if self._side is not None:
            self._side.recovered(SIDE_TASK)

    async def run(self, stop: asyncio.Event) -> None:
        """Exchange reports until `stop` is set."""
        await self._follower.start()
        try:
            next_report = 0.0
            while not stop.is_set():
                now_s = time.time()
                if now_s >= next_report:
                    next_report = now_s + REPORT_INTERVAL_S
                    await self._exchange_step(now_s)
                else:
                    self._fold(now_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), VIEW_INTERVAL_S)
        finally:
            await self._follower.stop()
