"""The results collector of `dccgate loadtest`: counts and latency histograms, O(1) per call.

The runner calls it for every request sent, every answer of the gateway, every end-to-end
answer of the simulated device network, every install, alert, dead letter and timeline event,
then `finish()` turns the counts into a `LoadTestReport` (report_schema.py).

On the hot path (hundreds of thousands of calls a second) each call does a few list and dict
updates and no allocation beyond a new label's row: no per-message lists. Memory is bounded:
per time bucket a handful of ints and two sparse HDR histograms; per label a short list of
ints, with at most `max_labels` labels per table (further labels are added up in an `others`
row). The collector never reads the clock: every time is an argument, seconds since the run
started, and wall-clock times are passed to `finish()`.
"""

from __future__ import annotations

import math
from typing import TypeVar

import msgspec

from workers.tools.loadtest.latency import LatencyHistogram, SparseLatencyHistogram
from workers.tools.loadtest.report_schema import (
    OUTCOMES,
    SPAN_GAP_S,
    AlertRow,
    Bucket,
    CompletionRow,
    Event,
    InstallRow,
    LoadTestReport,
    Span,
    SrvLatency,
    Totals,
)
from workers.tools.loadtest.summaries import (
    OTHERS,
    ROW_LEN,
    alert_key,
    latency_summary,
    ms_or_none,
    outcome_dict,
    outcome_rows,
)

__all__ = ["OTHERS", "Progress", "ResultCollector"]

_OUTCOME_INDEX = {name: index for index, name in enumerate(OUTCOMES)}
_N_OUTCOMES = len(OUTCOMES) + 1  # the last slot counts outcomes not in the contract
_MAX_LABEL_CHARS = 200
_OTHERS_PAIR = (OTHERS, OTHERS)
_MAX_SRV_LATENCIES = 256
_MAX_SPAN_KEYS = 1000
_MAX_SPANS_PER_KEY = 200
_CODES_PER_BUCKET = 16
_SPAN_KINDS = {"throttled": "throttled", "quarantined": "quarantined"}
_STORM_GAP_S = 120.0
"""A storm's copies come once a storm period (seconds to a minute); its final copy ends it."""

K = TypeVar("K", str, tuple[str, str])


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot for the live display: counts so far, `elapsed_s` the latest time seen."""

    elapsed_s: float
    sent: int
    answered: int
    completed: int
    outcomes: dict[str, int]
    installs_ok: int
    installs_failed: int
    alerts_raised: int
    alerts_delivered: int


def _clip(label: str) -> str:
    return label if len(label) <= _MAX_LABEL_CHARS else label[: _MAX_LABEL_CHARS - 1] + "…"


def _clip_key(key: K) -> K:
    if isinstance(key, str):
        return _clip(key)
    return tuple(_clip(part) for part in key)  # type: ignore[return-value]


def _landed(table: dict[K, list[int]], key: K, overflow: K) -> K:
    """The key `ResultCollector._keyed(table, key, overflow, ...)` put `key`'s row under."""
    if key in table:
        return key
    clipped = _clip_key(key)
    return clipped if clipped in table else overflow


def _flow_rows(
    table: dict[str, list[int]], failed_steps: dict[str, dict[str, int]]
) -> list[InstallRow]:
    return [
        InstallRow(
            region=region,
            ok=ok,
            failed=failed,
            failed_steps=dict(sorted(failed_steps.get(region, {}).items())),
        )
        for region, (ok, failed) in sorted(table.items())
    ]


def _coalesce(spans: list[list[float]], gap_s: float) -> list[list[float]]:
    """Spans in start order, those less than `gap_s` apart (and not closed) joined."""
    out: list[list[float]] = []
    for start, end, n, closed in sorted(spans):
        if out and start - out[-1][1] <= gap_s and not out[-1][3]:
            out[-1][1] = max(out[-1][1], end)
            out[-1][2] += n
            out[-1][3] = closed
        else:
            out.append([start, end, n, closed])
    return out


def _add(row: list[int], other: list[int]) -> None:
    for i, n in enumerate(other):
        row[i] += n


class ResultCollector:
    """Counts what happened in a load-test run, per time bucket and per label.

    Args:
        scenario: the scenario's name, carried into the report.
        seed: the run's random seed.
        scale: the rate multiplier of the run.
        duration_s: the planned duration in seconds.
        bucket_s: width of a time bucket in seconds (default 1.0); doubled until the planned
            duration fits in half of `max_buckets`, so a run may overrun its plan twofold.
        max_buckets: cap on time buckets (default 2000); later times count in the last one.
        max_labels: cap on labels per table (Users, SRVs, rules, regions, alert codes, dead
            letter reasons, response codes; default 10,000).
        top_n: rows kept in the report's per-User, per-SRV and per-rule tables by volume
            (default 15), plus up to `top_n // 3` more: the largest by requests not accepted;
            the rest is added up in an `others` row.
        max_events: timeline entries kept in full (default 1000); later ones are only counted.
    """

    def __init__(
        self,
        *,
        scenario: str,
        seed: int,
        scale: float,
        duration_s: float,
        bucket_s: float = 1.0,
        max_buckets: int = 2000,
        max_labels: int = 10_000,
        top_n: int = 15,
        max_events: int = 1000,
    ) -> None:
        if not bucket_s > 0 or not math.isfinite(bucket_s):
            raise ValueError(f"bucket_s must be a positive number of seconds, got {bucket_s!r}")
        if not duration_s >= 0 or not math.isfinite(duration_s):
            raise ValueError(f"duration_s must be zero or more seconds, got {duration_s!r}")
        if max_buckets < 2 or max_labels < 1 or top_n < 1 or max_events < 0:
            raise ValueError("max_buckets >= 2, max_labels >= 1, top_n >= 1, max_events >= 0")
        while duration_s / bucket_s > max_buckets / 2:
            bucket_s *= 2
        self.scenario = scenario
        self.seed = seed
        self.scale = scale
        self.duration_s = duration_s
        self.bucket_s = bucket_s
        self._per_s = 1.0 / bucket_s
        self._max_buckets = max_buckets
        self._max_labels = max_labels
        self._top_n = top_n
        self._max_events = max_events
        self._elapsed_s = 0.0
        self._init_buckets()
        self._init_tables()

    def _init_buckets(self) -> None:
        # Per time bucket, grown on demand (amortised O(1)).
        self._n = 0
        self._last = -1
        self._sent: list[int] = []
        self._answered: list[int] = []
        self._completed: list[int] = []
        self._installs_ok: list[int] = []
        self._installs_failed: list[int] = []
        self._alerts_raised: list[int] = []
        self._alerts_delivered: list[int] = []
        self._completed_failed: list[int] = []
        self._bucket_deadletters: list[int] = []
        self._bucket_codes: list[dict[str, int] | None] = []
        self._bucket_outcomes: list[list[int]] = []
        self._bucket_events: list[dict[str, int] | None] = []
        self._bucket_gateway: list[SparseLatencyHistogram | None] = []
        self._bucket_e2e: list[SparseLatencyHistogram | None] = []
        self._columns = (
            self._sent,
            self._answered,
            self._completed,
            self._installs_ok,
            self._installs_failed,
            self._alerts_raised,
            self._alerts_delivered,
            self._completed_failed,
            self._bucket_deadletters,
        )

    def _init_tables(self) -> None:
        # Whole run.
        self._gateway = LatencyHistogram()
        self._e2e = LatencyHistogram()
        self._outcomes = [0] * _N_OUTCOMES
        self._total_sent = 0
        self._total_answered = 0
        self._total_completed = 0
        self._codes: dict[str, int] = {}
        self._users: dict[str, list[int]] = {}
        self._srvs: dict[str, list[int]] = {}
        self._rules: dict[str, list[int]] = {}
        self._others_user = [0] * ROW_LEN
        self._others_srv = [0] * ROW_LEN
        self._others_rule = [0] * ROW_LEN
        self._folded = 0
        self._completions: dict[str, list[int]] = {}  # region -> [ok, failed]
        self._installs: dict[str, list[int]] = {}  # region -> [ok, failed]
        self._failed_steps: dict[str, dict[str, int]] = {}  # installs row's key -> counts
        self._installs_total = [0, 0]
        self._firmware: dict[str, list[int]] = {}  # region -> [ok, failed]
        self._firmware_steps: dict[str, dict[str, int]] = {}  # firmware row's key -> counts
        self._firmware_total = [0, 0]
        # (region, code) -> raised, delivered, at once, periodic, final, suppressed
        self._alerts: dict[tuple[str, str], list[int]] = {}
        self._alerts_total = [0, 0, 0, 0]  # raised, delivered, suppressed, storms
        self._deadletters: dict[str, int] = {}
        self._events: list[Event] = []
        self._events_total = 0
        # SRV -> gateway latency (2 significant figures, like a time bucket's, so one slot
        # computation serves both); past the cap, one histogram for the rest.
        self._srv_latency: dict[str, SparseLatencyHistogram] = {}
        # (kind, label) -> spans [start_s, end_s, count], in time order.
        self._spans: dict[tuple[str, str], list[list[float]]] = {}

    # -- time buckets -------------------------------------------------------------------

    def _bucket(self, t_s: float) -> int:
        # Hot path: a compare costs less than max().
        if t_s > self._elapsed_s:  # noqa: PLR1730
            self._elapsed_s = t_s
        index = int(t_s * self._per_s)
        if index < 0:  # noqa: PLR1730
            index = 0
        if index >= self._n:
            index = self._grow(index)
        if index > self._last:  # noqa: PLR1730
            self._last = index
        return index

    def _grow(self, index: int) -> int:
        index = min(index, self._max_buckets - 1)
        target = min(max(index + 1, 2 * self._n), self._max_buckets)
        extra = target - self._n
        for column in self._columns:
            column.extend([0] * extra)
        self._bucket_outcomes.extend([0] * _N_OUTCOMES for _ in range(extra))
        self._bucket_events.extend([None] * extra)
        self._bucket_codes.extend([None] * extra)
        self._bucket_gateway.extend([None] * extra)
        self._bucket_e2e.extend([None] * extra)
        self._n = target
        return index

    # -- labels -------------------------------------------------------------------------

    def _row(self, table: dict[str, list[int]], label: str, others: list[int]) -> list[int]:
        row = table.get(label)
        if row is None:
            row = self._new_row(table, label, ROW_LEN)
            if row is None:
                return others
        return row

    def _new_row(self, table: dict[K, list[int]], key: K, width: int) -> list[int] | None:
        # The slow path: a label not seen yet (or one longer than the clip, seen before).
        key = _clip_key(key)
        row = table.get(key)
        if row is None:
            if len(table) >= self._max_labels:
                self._folded += 1
                return None
            row = table[key] = [0] * width
        return row

    def _keyed(self, table: dict[K, list[int]], key: K, overflow: K, width: int) -> list[int]:
        row = table.get(key)
        if row is None:
            row = self._new_row(table, key, width)
            if row is None:
                row = table.get(overflow)
                if row is None:
                    row = table[overflow] = [0] * width
        return row

    def _count(self, table: dict[str, int], label: str) -> None:
        if label in table:
            table[label] += 1
            return
        self._count_n(table, _clip(label), 1)

    # -- the runner's calls -------------------------------------------------------------

    def request_sent(self, t_s: float, user_id: str, srv: str, n: int = 1) -> None:
        """`n` Service Requests written to dcc.sr.inbound at `t_s` (seconds since the start)."""
        self._sent[self._bucket(t_s)] += n
        self._total_sent += n
        # Hot path: the dict lookup inline, the method call only for a new label.
        row = self._users.get(user_id) or self._row(self._users, user_id, self._others_user)
        row[0] += n
        row = self._srvs.get(srv) or self._row(self._srvs, srv, self._others_srv)
        row[0] += n

    def request_answered(
        self,
        t_s: float,
        user_id: str,
        srv: str,
        outcome: str,
        response_code: str,
        rule: str | None,
        latency_s: float,
    ) -> None:
        """The gateway's answer on dcc.user.responses; `latency_s` since the request was sent."""
        index = self._bucket(t_s)
        slot = 2 + _OUTCOME_INDEX.get(outcome, _N_OUTCOMES - 1)
        self._answered[index] += 1
        self._bucket_outcomes[index][slot - 2] += 1
        self._total_answered += 1
        self._outcomes[slot - 2] += 1
        row = self._users.get(user_id) or self._row(self._users, user_id, self._others_user)
        row[1] += 1
        row[slot] += 1
        row = self._srvs.get(srv) or self._row(self._srvs, srv, self._others_srv)
        row[1] += 1
        row[slot] += 1
        if rule is not None:
            row = self._row(self._rules, rule, self._others_rule)
            row[1] += 1
            row[slot] += 1
        self._count(self._codes, response_code)
        codes = self._bucket_codes[index]
        if codes is None:
            codes = self._bucket_codes[index] = {}
        if response_code in codes:
            codes[response_code] += 1
        elif len(codes) < _CODES_PER_BUCKET:
            codes[_clip(response_code)] = codes.get(_clip(response_code), 0) + 1
        self._gateway.record_s(latency_s)
        histogram = self._bucket_gateway[index]
        if histogram is None:
            histogram = self._bucket_gateway[index] = SparseLatencyHistogram()
        histogram.record_s_also(self._srv_latency.get(srv) or self._srv_histogram(srv), latency_s)
        if outcome in _SPAN_KINDS:
            # Hot while a User is throttled: extend its open span inline.
            spans = self._spans.get((outcome, user_id))
            last = spans[-1] if spans else None
            if last is not None and 0.0 <= t_s - last[1] <= SPAN_GAP_S:
                last[1] = t_s
                last[2] += 1
            else:
                self._span(outcome, user_id, t_s, 1)

    def _srv_histogram(self, srv: str) -> SparseLatencyHistogram:
        srv = _clip(srv) if len(self._srv_latency) < _MAX_SRV_LATENCIES else OTHERS
        histogram = self._srv_latency.get(srv)
        if histogram is None:
            histogram = self._srv_latency[srv] = SparseLatencyHistogram()
        return histogram

    def _span(self, kind: str, label: str, t_s: float, n: int, gap_s: float = SPAN_GAP_S) -> None:
        """Extend the (kind, label) span that ended within `gap_s` of `t_s` and is not
        closed, or open one. A span is [start_s, end_s, count, closed]."""
        key = (kind, label)
        spans = self._spans.get(key)
        if spans is None:
            if len(self._spans) >= _MAX_SPAN_KEYS:
                self._folded += 1
                return
            spans = self._spans[(kind, _clip(label))] = []
        last = spans[-1] if spans else None
        if last is not None and (
            (t_s - last[1] <= gap_s and not last[3]) or len(spans) >= _MAX_SPANS_PER_KEY
        ):
            last[1] = max(last[1], t_s)
            last[0] = min(last[0], t_s)
            last[2] += n
        else:
            spans.append([t_s, t_s, float(n), 0.0])

    def request_completed(
        self, t_s: float, user_id: str, srv: str, region: str, ok: bool, latency_s: float
    ) -> None:
        """The end-to-end answer of the simulated device network; `latency_s` since sent."""
        index = self._bucket(t_s)
        self._completed[index] += 1
        if not ok:
            self._completed_failed[index] += 1
        self._total_completed += 1
        self._keyed(self._completions, region, OTHERS, 2)[0 if ok else 1] += 1
        self._e2e.record_s(latency_s)
        histogram = self._bucket_e2e[index]
        if histogram is None:
            histogram = self._bucket_e2e[index] = SparseLatencyHistogram()
        histogram.record_s(latency_s)

    def install_finished(self, t_s: float, region: str, ok: bool, failed_step: str | None) -> None:
        """An Install & Commission sequence ended, completed (`ok`) or at `failed_step`."""
        index = self._bucket(t_s)
        if ok:
            self._installs_ok[index] += 1
        else:
            self._installs_failed[index] += 1
        self._flow_finished(
            self._installs, self._failed_steps, self._installs_total, region, ok, failed_step
        )

    def firmware_finished(self, t_s: float, region: str, ok: bool, failed_step: str | None) -> None:
        """A firmware-campaign meter's update (11.1, then 11.3 CV 4 and 5) ended, activated
        (`ok`) or at `failed_step`."""
        self._bucket(t_s)
        self._flow_finished(
            self._firmware, self._firmware_steps, self._firmware_total, region, ok, failed_step
        )

    def _flow_finished(
        self,
        table: dict[str, list[int]],
        failed_steps: dict[str, dict[str, int]],
        total: list[int],
        region: str,
        ok: bool,
        failed_step: str | None,
    ) -> None:
        row = self._keyed(table, region, OTHERS, 2)
        slot = 0 if ok else 1
        total[slot] += 1
        row[slot] += 1
        if ok:
            return
        # Regions are few: one dict of failed steps per row of the table.
        key = _landed(table, region, OTHERS)
        steps = failed_steps.get(key)
        if steps is None:
            steps = failed_steps[key] = {}
        self._count(steps, failed_step or "unknown")

    def alert_raised(self, t_s: float, region: str, alert_code: str) -> None:
        """A device alert written to dcc.alerts.inbound."""
        self._alerts_raised[self._bucket(t_s)] += 1
        self._alerts_total[0] += 1
        self._keyed(self._alerts, (region, alert_code), _OTHERS_PAIR, 6)[0] += 1

    def alert_delivered(
        self,
        t_s: float,
        region: str,
        alert_code: str,
        storm_copy: str | None,
        throttled_count: int,
        *,
        primary: bool = True,
    ) -> None:
        """A record read from dcc.alerts.outbound.

        Args:
            storm_copy: the `dccgate-storm-copy` header: `periodic`, `final`, or None for an
                alert forwarded at once.
            throttled_count: its `throttled_alert_count` (0 when absent).
            primary: False for the second and later recipients' copies of one alert: they count
                as delivered records, but not again as copies or suppressed alerts.
        """
        self._alerts_delivered[self._bucket(t_s)] += 1
        self._alerts_total[1] += 1
        row = self._keyed(self._alerts, (region, alert_code), _OTHERS_PAIR, 6)
        row[1] += 1
        if not primary:
            return
        if storm_copy is None:
            row[2] += 1
        elif storm_copy == "periodic":
            row[3] += 1
            row[5] += throttled_count
            self._alerts_total[2] += throttled_count
        elif storm_copy == "final":
            row[4] += 1
            self._alerts_total[3] += 1
        if storm_copy is not None:
            label = f"{region} {alert_code}"
            self._span("storm", label, t_s, 1, _STORM_GAP_S)
            if storm_copy == "final":
                spans = self._spans.get(("storm", label))
                if spans:
                    spans[-1][3] = 1.0

    def deadlettered(self, t_s: float, reason: str) -> None:
        """A record the gateway wrote to dcc.deadletter, by its `dccgate-dlq-kind`."""
        self._bucket_deadletters[self._bucket(t_s)] += 1
        self._count(self._deadletters, reason)

    def event(self, t_s: float, kind: str, detail: str) -> None:
        """A timeline entry: `kind` such as throttling, quarantine, storm, fault or phase."""
        index = self._bucket(t_s)
        self._events_total += 1
        if len(self._events) < self._max_events:
            self._events.append(Event(t_s=t_s, kind=_clip(kind), detail=_clip(detail)))
        counts = self._bucket_events[index]
        if counts is None:
            counts = self._bucket_events[index] = {}
        if kind in counts or len(counts) < 16:
            counts[kind] = counts.get(kind, 0) + 1

    # -- shards -------------------------------------------------------------------------

    def merge(self, other: ResultCollector) -> None:
        """Add what `other` counted to this collector: another shard of the same run (same
        bucket width and caps), as `workers/tools/loadtest/shards.py` gathers them. A label new to
        this collector obeys its `max_labels` as if it had been counted here; timeline
        entries are kept in time order, at most `max_events`."""
        if other.bucket_s != self.bucket_s:
            raise ValueError(f"cannot merge buckets of {other.bucket_s} s into {self.bucket_s} s")
        if other._n > self._n:
            self._grow(other._n - 1)
        for mine, theirs in zip(self._columns, other._columns, strict=True):
            _add(mine, theirs)
        for index in range(other._n):
            _add(self._bucket_outcomes[index], other._bucket_outcomes[index])
            self._merge_bucket(index, other)
        self._last = max(self._last, other._last)
        self._elapsed_s = max(self._elapsed_s, other._elapsed_s)
        self._gateway.merge(other._gateway)
        self._e2e.merge(other._e2e)
        _add(self._outcomes, other._outcomes)
        self._total_sent += other._total_sent
        self._total_answered += other._total_answered
        self._total_completed += other._total_completed
        self._folded += other._folded
        for label, n in other._codes.items():
            self._count_n(self._codes, label, n)
        tables = (
            (self._users, other._users, self._others_user),
            (self._srvs, other._srvs, self._others_srv),
            (self._rules, other._rules, self._others_rule),
        )
        for mine_t, theirs_t, others in tables:
            for label, row in theirs_t.items():
                _add(self._row(mine_t, label, others), row)
        _add(self._others_user, other._others_user)
        _add(self._others_srv, other._others_srv)
        _add(self._others_rule, other._others_rule)
        for region, row in other._completions.items():
            _add(self._keyed(self._completions, region, OTHERS, 2), row)
        self._merge_flows(self._installs, self._failed_steps, other._installs, other._failed_steps)
        _add(self._installs_total, other._installs_total)
        self._merge_flows(
            self._firmware, self._firmware_steps, other._firmware, other._firmware_steps
        )
        _add(self._firmware_total, other._firmware_total)
        for pair, row in other._alerts.items():
            _add(self._keyed(self._alerts, pair, _OTHERS_PAIR, 6), row)
        _add(self._alerts_total, other._alerts_total)
        for reason, n in other._deadletters.items():
            self._count_n(self._deadletters, reason, n)
        self._events = sorted([*self._events, *other._events], key=lambda e: e.t_s)
        del self._events[self._max_events :]
        self._events_total += other._events_total
        self._merge_extras(other)

    def _merge_extras(self, other: ResultCollector) -> None:
        for srv, histogram in other._srv_latency.items():
            target = self._srv_latency.get(srv) or self._srv_histogram(srv)
            target.merge(histogram)
        for key, spans in other._spans.items():
            mine = self._spans.get(key)
            if mine is None:
                if len(self._spans) >= _MAX_SPAN_KEYS:
                    self._folded += 1
                    continue
                mine = self._spans[key] = []
            gap_s = _STORM_GAP_S if key[0] == "storm" else SPAN_GAP_S
            self._spans[key] = _coalesce([*mine, *(list(span) for span in spans)], gap_s)

    def _merge_bucket(self, index: int, other: ResultCollector) -> None:
        theirs_codes = other._bucket_codes[index]
        if theirs_codes:
            codes = self._bucket_codes[index]
            if codes is None:
                codes = self._bucket_codes[index] = {}
            for code, n in theirs_codes.items():
                if code in codes or len(codes) < _CODES_PER_BUCKET:
                    codes[code] = codes.get(code, 0) + n
        theirs = other._bucket_events[index]
        if theirs:
            counts = self._bucket_events[index]
            if counts is None:
                counts = self._bucket_events[index] = {}
            for kind, n in theirs.items():
                if kind in counts or len(counts) < 16:
                    counts[kind] = counts.get(kind, 0) + n
        for mine, histograms in (
            (self._bucket_gateway, other._bucket_gateway),
            (self._bucket_e2e, other._bucket_e2e),
        ):
            histogram = histograms[index]
            if histogram is not None:
                target = mine[index]
                if target is None:
                    target = mine[index] = SparseLatencyHistogram(histogram.significant_figures)
                target.merge(histogram)

    def _merge_flows(
        self,
        table: dict[str, list[int]],
        failed_steps: dict[str, dict[str, int]],
        theirs: dict[str, list[int]],
        their_steps: dict[str, dict[str, int]],
    ) -> None:
        for region, row in theirs.items():
            _add(self._keyed(table, region, OTHERS, 2), row)
            steps = failed_steps.setdefault(_landed(table, region, OTHERS), {})
            for step, n in their_steps.get(region, {}).items():
                self._count_n(steps, step, n)

    def _count_n(self, table: dict[str, int], label: str, n: int) -> None:
        if label not in table and len(table) >= self._max_labels:
            self._folded += 1
            label = OTHERS
        table[label] = table.get(label, 0) + n

    # -- reading ------------------------------------------------------------------------

    def progress(self) -> Progress:
        """Counts so far, for the live display."""
        return Progress(
            elapsed_s=self._elapsed_s,
            sent=self._total_sent,
            answered=self._total_answered,
            completed=self._total_completed,
            outcomes=outcome_dict(self._outcomes),
            installs_ok=self._installs_total[0],
            installs_failed=self._installs_total[1],
            alerts_raised=self._alerts_total[0],
            alerts_delivered=self._alerts_total[1],
        )

    def finish(
        self,
        t_s: float,
        *,
        gateway: dict[str, object],
        started_at_unix_s: float | None = None,
        finished_at_unix_s: float | None = None,
    ) -> LoadTestReport:
        """The report of the run, ended at `t_s` seconds after its start.

        Args:
            gateway: free-form facts about the gateway and configuration under test.
            started_at_unix_s: wall-clock start (the collector reads no clock).
            finished_at_unix_s: wall-clock end; default: start + `t_s`.
        """
        elapsed_s = max(t_s, self._elapsed_s)
        if finished_at_unix_s is None and started_at_unix_s is not None:
            finished_at_unix_s = started_at_unix_s + elapsed_s
        wanted = max(self._last + 1, math.ceil(elapsed_s * self._per_s - 1e-9))
        if wanted > self._n:
            self._grow(wanted - 1)
        used = min(wanted, self._n)
        users = outcome_rows(self._users, self._others_user, self._top_n)
        return LoadTestReport(
            scenario=self.scenario,
            seed=self.seed,
            scale=self.scale,
            duration_s=self.duration_s,
            elapsed_s=elapsed_s,
            bucket_s=self.bucket_s,
            started_at_unix_s=started_at_unix_s,
            finished_at_unix_s=finished_at_unix_s,
            gateway=gateway,
            totals=self._totals(),
            gateway_latency=latency_summary(self._gateway),
            e2e_latency=latency_summary(self._e2e),
            buckets=[self._bucket_row(i) for i in range(used)],
            by_user=users,
            by_srv=outcome_rows(self._srvs, self._others_srv, self._top_n),
            by_rule=outcome_rows(self._rules, self._others_rule, self._top_n),
            completions=[
                CompletionRow(region=region, ok=ok, failed=failed)
                for region, (ok, failed) in sorted(self._completions.items())
            ],
            installs=_flow_rows(self._installs, self._failed_steps),
            firmware=_flow_rows(self._firmware, self._firmware_steps),
            alerts=[
                AlertRow(
                    region=region,
                    alert_code=code,
                    raised=row[0],
                    delivered=row[1],
                    forwarded_at_once=row[2],
                    periodic_copies=row[3],
                    final_copies=row[4],
                    suppressed=row[5],
                )
                for (region, code), row in sorted(self._alerts.items(), key=alert_key)
            ],
            deadletters=dict(sorted(self._deadletters.items(), key=lambda kv: -kv[1])),
            events=list(self._events),
            spans=sorted(
                (
                    Span(kind=kind, label=label, start_s=s[0], end_s=s[1], count=int(s[2]))
                    for (kind, label), spans in self._spans.items()
                    for s in spans
                ),
                key=lambda span: (span.start_s, span.kind, span.label),
            ),
            srv_latency=self._srv_latencies(),
        )

    def _srv_latencies(self) -> list[SrvLatency]:
        rows = []
        for srv, h in sorted(self._srv_latency.items(), key=lambda kv: (-kv[1].count, kv[0])):
            p50, p90, p99, p999, top = h.percentiles_us((50.0, 90.0, 99.0, 99.9, 100.0))
            rows.append(
                SrvLatency(
                    srv=srv,
                    count=h.count,
                    p50_ms=ms_or_none(p50),
                    p90_ms=ms_or_none(p90),
                    p99_ms=ms_or_none(p99),
                    p999_ms=ms_or_none(p999),
                    max_ms=ms_or_none(top),
                )
            )
        return rows

    def _totals(self) -> Totals:
        completed_ok = sum(row[0] for row in self._completions.values())
        return Totals(
            sent=self._total_sent,
            answered=self._total_answered,
            completed_ok=completed_ok,
            completed_failed=self._total_completed - completed_ok,
            outcomes=outcome_dict(self._outcomes),
            response_codes=dict(sorted(self._codes.items(), key=lambda kv: -kv[1])),
            installs_ok=self._installs_total[0],
            installs_failed=self._installs_total[1],
            firmware_ok=self._firmware_total[0],
            firmware_failed=self._firmware_total[1],
            alerts_raised=self._alerts_total[0],
            alerts_delivered=self._alerts_total[1],
            alerts_suppressed=self._alerts_total[2],
            storms=self._alerts_total[3],
            deadletters=sum(self._deadletters.values()),
            events=self._events_total,
            events_dropped=self._events_total - len(self._events),
            users_seen=len(self._users),
            labels_folded=self._folded,
        )

    def _bucket_row(self, index: int) -> Bucket:
        gateway = self._bucket_gateway[index]
        e2e = self._bucket_e2e[index]
        g50, g99 = gateway.percentiles_us((50.0, 99.0)) if gateway else (None, None)
        e50, e99 = e2e.percentiles_us((50.0, 99.0)) if e2e else (None, None)
        return Bucket(
            t_s=round(index * self.bucket_s, 9),
            sent=self._sent[index],
            answered=self._answered[index],
            completed=self._completed[index],
            outcomes={k: v for k, v in outcome_dict(self._bucket_outcomes[index]).items() if v},
            installs_ok=self._installs_ok[index],
            installs_failed=self._installs_failed[index],
            alerts_raised=self._alerts_raised[index],
            alerts_delivered=self._alerts_delivered[index],
            events=dict(self._bucket_events[index] or {}),
            codes=dict(self._bucket_codes[index] or {}),
            completed_failed=self._completed_failed[index],
            deadletters=self._bucket_deadletters[index],
            gateway_p50_ms=ms_or_none(g50),
            gateway_p99_ms=ms_or_none(g99),
            e2e_p50_ms=ms_or_none(e50),
            e2e_p99_ms=ms_or_none(e99),
        )
