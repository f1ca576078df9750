"""DCC-wide counts across routers: each router reports its local per-SRV counts, and every
router adds the latest report of each peer to its own exact local count.

Why no shared counter: the DCC-wide ADT (SEC G6 (b)(i)) counts one SRV across all Users,
and Users are spread over routers by partition. A shared store on the hot path would cost a
network round trip per request; Kafka already carries the reports (DESIGN.md, `dcc.load`).

Overshoot bound. With P routers, each reporting every I seconds, reports taking up to D
seconds to arrive, and router i admitting requests of one SRV at rate r_i per second: a
router sees its own admissions at once but a peer's only in the peer's next report, up to
I + D seconds late. Once the true total reaches the threshold, every router still below it
in its own view may go on admitting until the peers' reports arrive, so together the
routers can admit up to about sum(r_i) * (I + D), i.e. P * (I + D) * r for equal rates,
beyond a DCC-wide threshold in one window. Example: 6 routers, 1 s reports, 0.2 s delivery,
50 requests/s each of one SRV: up to about 360 beyond the threshold. Keep I small against
the window (a report every second is cheap: one record per router) and set DCC-wide
thresholds that margin below the hard limit. A single router never overshoots: its own
count is exact.

Staleness the other way: a report is the peer's window at report time, so events that have
left the peer's window since then are still summed until its next report (a brief
over-count: quarantine a little early, never late). A report older than `max_age_s` (a
router that stopped or crashed) is no longer summed: after a crash the DCC-wide count drops
by that router's share until its partitions' new owners have counted again. Reports are
compared by the sender's clock (`at_s`); keep router clocks in NTP sync, well within
`max_age_s`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["AdtCountReport", "PeerCounts", "SrvWindowCount", "merge_reports"]

PeerCounts = dict[tuple[str, int], int]
"""(srv, window_s) -> requests counted by the peers in that window."""


class SrvWindowCount(msgspec.Struct, frozen=True, kw_only=True):
    """One router's local count of one SRV over one window length at report time."""

    srv: str
    window_s: Annotated[int, Meta(ge=1)]
    count: Annotated[int, Meta(ge=0)]


class AdtCountReport(msgspec.Struct, frozen=True, kw_only=True):
    """A router's local DCC-wide counts (`AdtEngine.count_report`), published every I s.

    router_id: unique per router process (e.g. the Kafka client id). at_s: when counted,
    epoch seconds on the sender's clock.
    """

    router_id: str
    at_s: float
    counts: tuple[SrvWindowCount, ...] = ()


def merge_reports(
    reports: Iterable[AdtCountReport],
    now_s: float,
    max_age_s: float,
    *,
    exclude_router: str | None = None,
) -> PeerCounts:
    """Sum the latest report of each router, for `AdtEngine.set_peer_counts`.

    reports: any number per router; only the newest (highest `at_s`) of each is used.
    max_age_s: a report older than this at `now_s` is ignored (a router that stopped);
    a few report intervals, e.g. 5 s for a 1 s interval. exclude_router: this router's own
    id, whose exact local count the engine already has.
    """
    latest: dict[str, AdtCountReport] = {}
    for report in reports:
        if report.router_id == exclude_router:
            continue
        seen = latest.get(report.router_id)
        if seen is None or report.at_s > seen.at_s:
            latest[report.router_id] = report
    merged: PeerCounts = {}
    for report in latest.values():
        if now_s - report.at_s > max_age_s:
            continue
        for c in report.counts:
            key = (c.srv, c.window_s)
            merged[key] = merged.get(key, 0) + c.count
    return merged
