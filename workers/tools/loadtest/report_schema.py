"""The load-test report and the what-if comparison as msgspec Structs: the JSON format.

Versioned by `format`; fields are added with defaults, never renamed, reordered or retyped
(docs/loadtest-report.md describes every field). Times in a run are seconds since the run
started (`*_s`), latencies are milliseconds (`*_ms`), wall-clock times are Unix seconds
(`*_unix_s`).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "NOT_ACCEPTED",
    "OUTCOMES",
    "REPORT_FORMAT",
    "SPAN_GAP_S",
    "WHATIF_FORMAT",
    "AlertRow",
    "Bucket",
    "CompletionRow",
    "DiffRow",
    "Event",
    "InstallRow",
    "LatencyDiff",
    "LatencySummary",
    "LoadTestReport",
    "OutcomeRow",
    "PercentilePoint",
    "ReportError",
    "Span",
    "SrvLatency",
    "ThresholdResult",
    "Totals",
    "WhatIfDiff",
]

REPORT_FORMAT = "dccgate.loadtest.report/1"
SPAN_GAP_S = 3.0
"""A throttling, quarantine or storm span ends when nothing of it is seen for this long."""
WHATIF_FORMAT = "dccgate.loadtest.whatif/1"

OUTCOMES = ("accepted", "rejected", "throttled", "quarantined", "released", "deleted")
"""The outcomes of docs/contract.md, in the order the report shows them; any other is `other`."""

NOT_ACCEPTED = ("throttled", "quarantined", "rejected")
"""The outcomes a what-if is about, in the order its page shows them."""


class ReportError(ValueError):
    """A report file that cannot be read: names the file and what to do."""


class PercentilePoint(msgspec.Struct, frozen=True, kw_only=True):
    """One point of a percentile distribution: `percentile` (0-100) and its value in ms."""

    percentile: float
    value_ms: float


class LatencySummary(msgspec.Struct, frozen=True, kw_only=True):
    """Latency of one kind over the whole run, from an HDR histogram (3 significant figures).

    `hdr` is the HdrHistogram's standard compressed encoding of the values in microseconds
    (`HISTFAAA...`; empty when nothing was recorded): feed it to any HdrHistogram tool.
    """

    count: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    clamped: int = 0
    distribution: list[PercentilePoint] = msgspec.field(default_factory=list)
    hdr: str = ""


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """One time bucket `[t_s, t_s + bucket_s)` of the run: counts of what happened in it."""

    t_s: float
    sent: int = 0
    answered: int = 0
    completed: int = 0
    outcomes: dict[str, int] = msgspec.field(default_factory=dict)
    installs_ok: int = 0
    installs_failed: int = 0
    alerts_raised: int = 0
    alerts_delivered: int = 0
    events: dict[str, int] = msgspec.field(default_factory=dict)
    gateway_p50_ms: float | None = None
    gateway_p99_ms: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    codes: dict[str, int] = msgspec.field(default_factory=dict)
    """Answers per response code in this bucket (at most 16 codes per bucket)."""
    completed_failed: int = 0
    """End-to-end answers of the simulated devices that were failures."""
    deadletters: int = 0


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """A period of the run: `kind` (throttled, quarantined, storm) active for `label` (a User,
    or a region and alert code) from `start_s` to `end_s`, with `count` answers or copies.

    A span goes on while the next one comes within `SPAN_GAP_S` of the last."""

    kind: str
    label: str
    start_s: float
    end_s: float
    count: int = 0


class SrvLatency(msgspec.Struct, frozen=True, kw_only=True):
    """Gateway latency of one SRV's answers (ms; null when none)."""

    srv: str
    count: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None


class ThresholdResult(msgspec.Struct, frozen=True, kw_only=True):
    """A `--threshold` checked at the end of the run: `metric op limit` (base units: ms, a
    fraction, per second), the value measured (null: the run had none) and whether it passed."""

    expression: str
    metric: str
    op: str
    limit: float
    actual: float | None
    passed: bool
    shown: str = ""
    """`actual` for people, with its unit."""


class OutcomeRow(msgspec.Struct, frozen=True, kw_only=True):
    """Answers for one User, SRV or rule: `sent` requests and `outcomes` of the answers."""

    label: str
    sent: int = 0
    answered: int = 0
    outcomes: dict[str, int] = msgspec.field(default_factory=dict)
    folded: int = 0
    """For the `others` row: how many labels it adds up (0 otherwise)."""


class CompletionRow(msgspec.Struct, frozen=True, kw_only=True):
    """End-to-end answers from the simulated device network, per CSP region."""

    region: str
    ok: int = 0
    failed: int = 0


class InstallRow(msgspec.Struct, frozen=True, kw_only=True):
    """Installs (or firmware-campaign meters) per CSP region; `failed_steps` counts failures
    by the step that failed."""

    region: str
    ok: int = 0
    failed: int = 0
    failed_steps: dict[str, int] = msgspec.field(default_factory=dict)


class AlertRow(msgspec.Struct, frozen=True, kw_only=True):
    """Device alerts per (region, alert code) and what storm protection made of them.

    `raised`: alerts the devices sent. `delivered`: records on dcc.alerts.outbound (one per
    recipient). `forwarded_at_once`, `periodic_copies`, `final_copies`: copies counted once per
    alert (first recipient). `suppressed`: the sum of `throttled_alert_count` over periodic
    copies, the alerts held back (docs/alerts.md, Accounting).
    """

    region: str
    alert_code: str
    raised: int = 0
    delivered: int = 0
    forwarded_at_once: int = 0
    periodic_copies: int = 0
    final_copies: int = 0
    suppressed: int = 0


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A timeline entry: `kind` (throttling, quarantine, storm, fault, phase...) and detail."""

    t_s: float
    kind: str
    detail: str


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """Totals of the run."""

    sent: int = 0
    answered: int = 0
    completed_ok: int = 0
    completed_failed: int = 0
    outcomes: dict[str, int] = msgspec.field(default_factory=dict)
    response_codes: dict[str, int] = msgspec.field(default_factory=dict)
    installs_ok: int = 0
    installs_failed: int = 0
    firmware_ok: int = 0
    firmware_failed: int = 0
    alerts_raised: int = 0
    alerts_delivered: int = 0
    alerts_suppressed: int = 0
    storms: int = 0
    deadletters: int = 0
    events: int = 0
    events_dropped: int = 0
    users_seen: int = 0
    labels_folded: int = 0
    """Calls whose User, SRV, rule, region, code or reason fell past a table's label cap."""


class LoadTestReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `dccgate loadtest` measured in one run (report.json)."""

    format: str = REPORT_FORMAT
    scenario: str
    seed: int
    scale: float
    duration_s: float
    elapsed_s: float
    bucket_s: float
    started_at_unix_s: float | None = None
    finished_at_unix_s: float | None = None
    gateway: dict[str, object] = msgspec.field(default_factory=dict)
    totals: Totals = msgspec.field(default_factory=Totals)
    gateway_latency: LatencySummary = msgspec.field(default_factory=LatencySummary)
    e2e_latency: LatencySummary = msgspec.field(default_factory=LatencySummary)
    buckets: list[Bucket] = msgspec.field(default_factory=list)
    by_user: list[OutcomeRow] = msgspec.field(default_factory=list)
    by_srv: list[OutcomeRow] = msgspec.field(default_factory=list)
    by_rule: list[OutcomeRow] = msgspec.field(default_factory=list)
    completions: list[CompletionRow] = msgspec.field(default_factory=list)
    installs: list[InstallRow] = msgspec.field(default_factory=list)
    firmware: list[InstallRow] = msgspec.field(default_factory=list)
    """Firmware-campaign meters per region (11.1, then 11.3 CV 4 and 5): activated or failed."""
    alerts: list[AlertRow] = msgspec.field(default_factory=list)
    deadletters: dict[str, int] = msgspec.field(default_factory=dict)
    events: list[Event] = msgspec.field(default_factory=list)
    spans: list[Span] = msgspec.field(default_factory=list)
    """Periods of throttling and quarantine per User, and of storms per region and code."""
    srv_latency: list[SrvLatency] = msgspec.field(default_factory=list)
    """Gateway latency per SRV, the most answered first."""
    thresholds: list[ThresholdResult] = msgspec.field(default_factory=list)
    """The run's `--threshold`s, checked at its end."""


class DiffRow(msgspec.Struct, frozen=True, kw_only=True):
    """One User, SRV, rule or alert code in both runs: counts per outcome, and the change.

    `delta` is proposed minus base for every key of either side.
    """

    label: str
    base: dict[str, int] = msgspec.field(default_factory=dict)
    proposed: dict[str, int] = msgspec.field(default_factory=dict)
    delta: dict[str, int] = msgspec.field(default_factory=dict)


class LatencyDiff(msgspec.Struct, frozen=True, kw_only=True):
    """Latency percentiles of one kind (`gateway` or `e2e`) in both runs, in ms (null: none)."""

    kind: str
    base_ms: dict[str, float | None] = msgspec.field(default_factory=dict)
    proposed_ms: dict[str, float | None] = msgspec.field(default_factory=dict)


class WhatIfDiff(msgspec.Struct, frozen=True, kw_only=True):
    """The difference between a run under the current configuration and one under a proposal."""

    format: str = WHATIF_FORMAT
    scenario: str
    seed: int
    scale: float
    comparable: bool
    notes: list[str] = msgspec.field(default_factory=list)
    totals: DiffRow
    latency: list[LatencyDiff] = msgspec.field(default_factory=list)
    by_user: list[DiffRow] = msgspec.field(default_factory=list)
    by_srv: list[DiffRow] = msgspec.field(default_factory=list)
    by_rule: list[DiffRow] = msgspec.field(default_factory=list)
    installs: list[DiffRow] = msgspec.field(default_factory=list)
    alerts: list[DiffRow] = msgspec.field(default_factory=list)
