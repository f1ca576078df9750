"""The alert worker: device alerts from `dcc.alerts.inbound` to their recipients, with
alert-storm protection (SECMP0062). docs/alerts.md describes it for operators.

Per alert, in this order:
1. decode: not JSON, or the wrong shape -> `dcc.deadletter` (`invalid_json`,
   `invalid_schema`); no recipient -> `dcc.deadletter` (`no_recipients`);
2. storm protection (`throttling.storm.StormGuard`, per device ID and alert code): forward
   at once, or suppress (only counted; a periodic copy of the storm may go out later);
3. a forwarded alert is written once per recipient to `dcc.alerts.outbound` (key: the
   recipient's User ID).
Storm copies come from `StormGuard.flush`, called after every batch and by the loop's
`tick` when no input arrives, so a storm's copies go out on time in a quiet system too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

import msgspec
from prometheus_client import Counter, Gauge

from broker.consumer import Record, TopicPartition
from broker.producer import Headers, OutputBatch, partition_for_key
from broker.schemas import DeviceAlert
from broker.topics import Topics
from throttling import (
    DEFAULT_STORM_PARAMS,
    StormCopy,
    StormGuard,
    StormParams,
    StormPolicy,
)
from workers.control import model
from workers.control.state import ConfigSnapshot
from workers.deadletter import deadletter
from workers.metrics import CommonMetrics

__all__ = [
    "KNOWN_ALERT_CODES",
    "SERVICE",
    "STORM_HEADER",
    "AlertMetrics",
    "AlertProcessor",
    "storm_policy_from_config",
]

log = logging.getLogger(__name__)

SERVICE = "alerts"

STORM_HEADER: Final = "dccgate-storm-copy"
"""Header on a storm copy on `dcc.alerts.outbound`: `periodic` or `final`."""
_PERIODIC_HEADERS: Final = ((STORM_HEADER, b"periodic"),)
_FINAL_HEADERS: Final = ((STORM_HEADER, b"final"),)

# Well-known GBCS codes (DOMAIN.md section 4) get their own `alert_code` label; others are
# `other` unless on the exclusion list, so the label stays bounded.
KNOWN_ALERT_CODES: Final = frozenset(
    {
        "8F1C",  # firmware verification failed
        "8F1D",  # GSME power supply loss
        "8F1F",  # low battery capacity
        "8F35",  # supply outage restored
        "8F36",  # supply restored after an outage of 3 minutes or more
        "8F3F",  # tamper detected
        "8F43",  # change in executing firmware
        "8F72",  # firmware verification successful
        "8F73",  # battery cover removed
        "8F75",  # strong magnetic field
        "8F77",  # second terminal cover removed
        "8F84",  # failure to deliver a Remote Party message to the ESME
        "8F89",  # firmware transfer failed
        "8F8A",  # firmware transfer succeeded
        "AD1",  # power outage (Communications Hub)
    }
)

# One record for OutputBatch.partition_lists: (key, value, headers, timestamp_ms).
_Out = tuple[bytes | None, bytes | None, Headers, int | None]

_decode_alert = msgspec.json.Decoder(DeviceAlert).decode
_encode = msgspec.json.Encoder().encode


def storm_policy_from_config(policy: model.StormPolicy | None) -> StormPolicy:
    """The throttling policy for the configured `alerts.storm-policy` item; with none
    configured, every code gets `throttling.DEFAULT_STORM_PARAMS`."""
    if policy is None:
        return StormPolicy(default=DEFAULT_STORM_PARAMS)

    def params(p: model.StormParams) -> StormParams:
        return StormParams(window_s=p.window_s, max_alerts=p.max_alerts, period_s=p.period_s)

    return StormPolicy(
        default=params(policy.default),
        per_code={code: params(p) for code, p in policy.per_code.items()},
    )


class _Tally:
    """What one batch (or tick) decided, flushed into the metrics after its acks."""

    __slots__ = ("deadlettered", "forwarded", "received", "suppressed")

    def __init__(self) -> None:
        self.received: dict[str, int] = {}
        self.forwarded: dict[str, int] = {}
        self.suppressed: dict[str, int] = {}
        self.deadlettered: dict[str, int] = {}


class AlertMetrics:
    """The alert worker's own metrics, on the shared registry."""

    def __init__(self, common: CommonMetrics) -> None:
        registry = common.registry
        self.common = common
        self.received = Counter(
            "dccgate_alerts_received",
            "Device alerts decoded from dcc.alerts.inbound, by CSP region.",
            ["region"],
            registry=registry,
        )
        self.forwarded = Counter(
            "dccgate_alerts_forwarded",
            "Alert records written to dcc.alerts.outbound (one per recipient, storm copies "
            "included), by CSP region.",
            ["region"],
            registry=registry,
        )
        self.suppressed = Counter(
            "dccgate_alerts_suppressed",
            "Alerts suppressed by storm protection (SECMP0062), by alert code: counted at "
            "the period boundary that forwards the storm's copy with their number.",
            ["alert_code"],
            registry=registry,
        )
        self.active_storms = Gauge(
            "dccgate_alerts_active_storms",
            "(device, alert code) keys in a storm now.",
            registry=registry,
        )
        self.tracked_keys = Gauge(
            "dccgate_alerts_tracked_keys",
            "(device, alert code) keys held by storm protection (open windows and storms).",
            registry=registry,
        )
        self.exclusions = Gauge(
            "dccgate_alerts_exclusions",
            "Alert codes on the exclusion list (never throttled).",
            registry=registry,
        )
        self.exclusions_version = Gauge(
            "dccgate_alerts_exclusions_version",
            "Version of the alerts.exclusions control item in force (0: none configured).",
            registry=registry,
        )


def _add(counts: dict[str, int], label: str, n: int = 1) -> None:
    counts[label] = counts.get(label, 0) + n


class AlertProcessor:
    """Decides every alert of a batch and writes the outputs (no I/O of its own).

    Parameters:
        topics: the topic names.
        metrics: where decisions are counted.
        guard: the storm protection state; default a new `StormGuard` with the default
            policy and no exclusions (configuration comes through `apply`).
    """

    def __init__(
        self,
        *,
        topics: Topics,
        metrics: AlertMetrics,
        guard: StormGuard[DeviceAlert] | None = None,
    ) -> None:
        self._topics = topics
        self._metrics = metrics
        self._guard: StormGuard[DeviceAlert] = guard or StormGuard(
            StormPolicy(default=DEFAULT_STORM_PARAMS)
        )
        self._labels: frozenset[str] = KNOWN_ALERT_CODES | self._guard.exclusions
        self._applied: tuple[int, int] | None = None
        # StormGuard needs a clock that never goes backwards; the loop passes wall-clock ms.
        self._last_s = 0.0
        metrics.active_storms.set_function(lambda: self._guard.active_storms)
        metrics.tracked_keys.set_function(lambda: self._guard.tracked_keys)
        metrics.exclusions.set_function(lambda: len(self._guard.exclusions))

    @property
    def guard(self) -> StormGuard[DeviceAlert]:
        """The storm protection state."""
        return self._guard

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Follow the configuration: `alerts.exclusions` and `alerts.storm-policy` (a
        ControlReader listener). Items absent mean no exclusions and the default policy."""
        ex_item = snapshot.get("alerts.exclusions")
        policy_item = snapshot.get("alerts.storm-policy")
        versions = (
            0 if ex_item is None else ex_item.version,
            0 if policy_item is None else policy_item.version,
        )
        if versions == self._applied:
            return
        self._applied = versions
        exclusions = snapshot.exclusions
        self.set_exclusions(() if exclusions is None else exclusions.alert_codes, versions[0])
        self._guard.set_policy(storm_policy_from_config(snapshot.storm_policy))
        log.info(
            "alert storm protection: %d excluded codes (version %d), storm policy version %d",
            len(self._guard.exclusions),
            versions[0],
            versions[1],
        )

    def set_exclusions(self, codes: Iterable[str], version: int = 0) -> None:
        """Replace the exclusion list (`version`: its control item's, for the metric)."""
        self._guard.set_exclusions(codes)
        self._labels = KNOWN_ALERT_CODES | self._guard.exclusions
        self._metrics.exclusions_version.set(version)

    def _now_s(self, now_ms: int) -> float:
        now_s = now_ms / 1000
        if now_s < self._last_s:  # noqa: PLR1730 - a wall clock stepped back: hold it
            now_s = self._last_s
        self._last_s = now_s
        return now_s

    def process(
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> _Tally:
        """Decide each alert of `batch`, adding forwards, storm copies and dead letters."""
        tally = _Tally()
        now_s = self._now_s(now_ms)
        outbound = out.partition_lists(self._topics.alerts_outbound)
        decide = self._guard.decide
        received, forwarded = tally.received, tally.forwarded
        for records in batch.values():
            for rec in records:
                value = rec.value
                try:
                    if value is None:
                        raise msgspec.DecodeError("the record has no value (a null/tombstone)")
                    alert = _decode_alert(value)
                except msgspec.ValidationError as exc:
                    self._deadletter(out, rec, "invalid_schema", str(exc), now_ms, tally)
                    continue
                except msgspec.DecodeError as exc:
                    self._deadletter(out, rec, "invalid_json", str(exc), now_ms, tally)
                    continue
                region = alert.region or "unknown"
                _add(received, region)
                if not any(alert.recipients):
                    self._deadletter(
                        out, rec, "no_recipients",
                        "the alert has no recipient (recipients is empty or only empty "
                        "strings); the sender must name at least one User ID",
                        now_ms, tally,
                    )  # fmt: skip
                    continue
                if not decide(alert.device_id, alert.alert_code, alert, now_s).forward:
                    # Held back: counted as suppressed when its period boundary decides
                    # whether it goes out as the periodic copy (see _write_copy).
                    continue
                if (
                    alert.throttled_alert_count is not None
                    or alert.throttled_alert_sequence_id is not None
                ):
                    # Only the gateway sets these on the way out.
                    value = _encode(
                        msgspec.structs.replace(
                            alert, throttled_alert_count=None, throttled_alert_sequence_id=None
                        )
                    )
                n = self._write(outbound, alert, value, ())
                _add(forwarded, region, n)
        self._flush(out, now_s, tally)
        return tally

    def tick(self, out: OutputBatch, now_ms: int) -> _Tally | None:
        """Write the storm copies due by now (the loop calls this when no input arrives,
        and between batches); None when there were none."""
        tally = _Tally()
        if not self._flush(out, self._now_s(now_ms), tally):
            return None
        return tally

    def _flush(self, out: OutputBatch, now_s: float, tally: _Tally) -> int:
        copies = self._guard.flush(now_s)
        if not copies:
            return 0
        outbound = out.partition_lists(self._topics.alerts_outbound)
        for copy in copies:
            self._write_copy(outbound, copy, tally)
        return len(copies)

    def _write_copy(
        self, outbound: list[list[_Out]], copy: StormCopy[DeviceAlert], tally: _Tally
    ) -> None:
        # SECMP0062: the copy carries how many alerts were suppressed (since the previous
        # forwarded one; the storm's total on the final copy) and the storm's sequence ID.
        alert = msgspec.structs.replace(
            copy.item,
            throttled_alert_count=copy.throttled_alert_count,
            throttled_alert_sequence_id=copy.throttled_alert_sequence_id,
        )
        if copy.final:
            headers = _FINAL_HEADERS  # a repeat: its count is already accounted for
        else:
            headers = _PERIODIC_HEADERS
            if copy.throttled_alert_count:
                code = copy.alert_code  # canonical already
                label = code if code in self._labels else "other"
                _add(tally.suppressed, label, copy.throttled_alert_count)
        n = self._write(outbound, alert, _encode(alert), headers)
        _add(tally.forwarded, alert.region or "unknown", n)

    @staticmethod
    def _write(
        outbound: list[list[_Out]],
        alert: DeviceAlert,
        value: bytes,
        headers: Headers,
    ) -> int:
        """One record per distinct, non-empty recipient, keyed by its User ID."""
        n_parts = len(outbound)
        recipients = alert.recipients
        if len(recipients) > 1:
            recipients = list(dict.fromkeys(recipients))
        n = 0
        for recipient in recipients:
            if not recipient:
                continue
            key = recipient.encode()
            outbound[partition_for_key(key, n_parts)].append((key, value, headers, None))
            n += 1
        return n

    def _deadletter(
        self, out: OutputBatch, rec: Record, kind: str, reason: str, now_ms: int, tally: _Tally
    ) -> None:
        deadletter(
            out, self._topics.deadletter, rec, service=SERVICE, kind=kind, reason=reason,
            at_ms=now_ms,
        )  # fmt: skip
        _add(tally.deadlettered, kind)

    def after_send(self, report: object, now_ms: int) -> None:
        """Flush a batch's counts into the metrics, now that its outputs are acknowledged."""
        if not isinstance(report, _Tally):
            raise TypeError(f"expected the alert worker's report, got {type(report).__name__}")
        m = self._metrics
        for region, n in report.received.items():
            m.received.labels(region).inc(n)
        for region, n in report.forwarded.items():
            m.forwarded.labels(region).inc(n)
        for code, n in report.suppressed.items():
            m.suppressed.labels(code).inc(n)
        for kind, n in report.deadlettered.items():
            m.common.deadlettered.labels(SERVICE, kind).inc(n)
