"""The alert worker's decisions: device alerts from `dcc.alerts.inbound` to their recipients.
docs/alerts.md describes it for operators.

Per alert, in this order:
1. decode: not JSON, or the wrong shape -> `dcc.deadletter` (`invalid_json`,
   `invalid_schema`); no recipient -> `dcc.deadletter` (`no_recipients`);
2. storm protection (`throttling.StormGuard`, per device ID and alert code, SECMP0062):
   forward at once, or suppress (only counted; a periodic copy of the storm may go out
   later);
3. the MP102 rule and regional capacity (`workers.alerts.holds.Outlet`, both off unless
   configured): a forwarded alert may be held there, its input offset held back from the
   commit until it goes out;
4. a forwarded alert is written once per recipient to `dcc.alerts.outbound` (key: the
   recipient's User ID).

Storm copies come from `StormGuard.flush`, called after every batch and by the loop's `tick`
when no input arrives, so a storm's copies go out on time in a quiet system too. They bypass
the MP102 rule and regional capacity: at most one per storm and period, they are the
summary the recipients need. With the changelog on (`set_changelog`), running storms are
snapshotted to `dcc.state.alerts` after their batch's outputs are acknowledged
(workers/alerts/storm_changelog.py explains the order that keeps counts exact across a crash).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeVar

import msgspec

from broker.consumer import Record, TopicPartition
from broker.producer import Headers, OutputBatch, partition_for_key
from broker.schemas import DeviceAlert, StormCopyRecord
from broker.topics import Topics
from broker.wire_guard import record_problem
from throttling import (
    CorrelationPolicy,
    RegionalPolicy,
    RegionCapacity,
    StormCopy,
    StormGuard,
    StormParams,
    StormPolicy,
    normalize_alert_code,
)
from workers.alerts.holds import Outlet, Pending
from workers.alerts.metrics import AlertMetrics, CounterChildren, LaneGauges
from workers.alerts.storm_changelog import FORWARD, SKIP, StormBook
from workers.config import model
from workers.config.defaults import (
    DEFAULT_MP102,
    DEFAULT_REGIONAL_CAPACITY,
    DEFAULT_STORM_POLICY,
)
from workers.config.snapshot import ConfigSnapshot
from workers.runtime.deadletter import deadletter, processing_error

__all__ = [
    "BOUNDARY_HEADER",
    "KNOWN_ALERT_CODES",
    "SERVICE",
    "STORM_HEADER",
    "AlertProcessor",
    "AlertReport",
    "correlation_policy_from_config",
    "device_key",
    "regional_policy_from_config",
    "storm_policy_from_config",
]

log = logging.getLogger(__name__)

SERVICE = "alerts"

STORM_HEADER: Final = "dccgate-storm-copy"
"""Header on a storm copy on `dcc.alerts.outbound`: `periodic` or `final`."""
BOUNDARY_HEADER: Final = "dccgate-storm-boundary-ms"
"""Header on a storm copy: its period boundary in epoch ms. With the sequence ID it names
the copy, so a copy sent again after a crash is recognised as a repeat."""
_PERIODIC: Final = b"periodic"
_FINAL: Final = b"final"

# Well-known GBCS codes (DOMAIN.md section 4) get their own `alert_code` label; others are
# `other` unless on the exclusion list or the high-priority set, so the label stays bounded.
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
# Per-code answers cached by the code as seen on the wire; bounded, devices send any string.
_CODE_CACHE_MAX: Final = 4096
# Only codes this long are cached: 4,096 codes of a record's 256 KiB each would be 1 GiB.
_CODE_CACHE_CHARS: Final = 32
# Recipient lists cached with their output partitions (AlertProcessor._routes).
_ROUTE_CACHE_MAX: Final = 4096
_ROUTE_CACHE_CHARS: Final = 256

# One record for OutputBatch.partition_lists: (key, value, headers, timestamp_ms).
_Out = tuple[bytes | None, bytes | None, Headers, int | None]
# One follow-up record: (topic, partition, key, value, headers).
_StageRecord = tuple[str, int, bytes, bytes | None, Headers]

_decode_alert = msgspec.json.Decoder(DeviceAlert).decode
_encode = msgspec.json.Encoder().encode
_NO_VALUE = "the record has no value (a null/tombstone)"


def storm_policy_from_config(policy: model.StormPolicy | None) -> StormPolicy:
    """The throttling policy for the configured `alerts.storm-policy` item; with none
    configured, the built-in one (`workers.config.defaults`: every code gets
    `throttling.DEFAULT_STORM_PARAMS`)."""
    if policy is None:
        policy = DEFAULT_STORM_POLICY

    def params(p: model.StormParams) -> StormParams:
        return StormParams(window_s=p.window_s, max_alerts=p.max_alerts, period_s=p.period_s)

    return StormPolicy(
        default=params(policy.default),
        per_code={code: params(p) for code, p in policy.per_code.items()},
    )


def regional_policy_from_config(item: model.RegionalCapacity | None) -> RegionalPolicy:
    """The regional gate's policy for the `alerts.regional-capacity` item; none configured:
    the built-in one (`workers.config.defaults`: no region is limited)."""
    if item is None:
        item = DEFAULT_REGIONAL_CAPACITY
    return RegionalPolicy(
        regions={
            name: RegionCapacity(
                rate_per_s=c.rate_per_s,
                burst=c.burst,
                max_queued=c.max_queued,
                max_priority_queued=c.max_priority_queued,
            )
            for name, c in item.regions.items()
        },
        unknown_region=item.unknown_region,
        high_priority_codes=frozenset(item.high_priority_codes),
    )


def correlation_policy_from_config(item: model.Mp102Rule | None) -> CorrelationPolicy:
    """The MP102 rule's policy for the `alerts.mp102` item; none configured: the built-in
    rule (`workers.config.defaults`: off)."""
    if item is None:
        item = DEFAULT_MP102
    return CorrelationPolicy(
        enabled=item.enabled,
        watch_s=item.watch_s,
        hold_s=item.hold_s,
        outage_codes=frozenset(item.outage_codes),
        restore_codes=frozenset(item.restore_codes),
        max_watched=item.max_watched,
        max_held=item.max_held,
    )


def device_key(device_id: str) -> str:
    """A device ID in the form DUIS writes it (the TARGET of a RequestID): upper-case hex
    octets joined by hyphens, whatever separators or case it came with."""
    if _CANONICAL_DEVICE(device_id) is not None:
        # Already in that form, as devices send it: the steps below would return it unchanged
        # at four times the cost (tests/unit/workers/alerts/test_device_key.py).
        return device_id
    raw = device_id.strip().upper().replace("-", "").replace(":", "")
    if len(raw) != 16:
        return device_id.strip().upper()
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


# An EUI-64 as DUIS writes it; only ASCII hex digits (`[0-9A-F]`, not `\d`, which is Unicode).
_CANONICAL_DEVICE: Final = re.compile(r"[0-9A-F]{2}(?:-[0-9A-F]{2}){7}").fullmatch


class _Tally:
    """What one batch (or tick) decided: counts for the metrics once its outputs are
    acknowledged, and the records of its follow-up stages."""

    __slots__ = (
        "deadlettered",
        "delays",
        "forwarded",
        "mp102_dropped",
        "mp102_released",
        "passed",
        "received",
        "stages",
        "suppressed",
    )

    def __init__(self) -> None:
        self.received: dict[tuple[str, str], int] = {}
        self.forwarded: dict[tuple[str, str], int] = {}
        self.suppressed: dict[str, int] = {}
        self.deadlettered: dict[str, int] = {}
        self.delays: dict[str, list[float]] = {}
        self.passed: dict[str, int] = {}  # per lane: let through at once, no delay
        self.mp102_dropped = 0
        self.mp102_released = 0
        self.stages: list[list[_StageRecord]] = []


AlertReport = _Tally
"""What `AlertProcessor.process` and `tick` return for `follow_up` and `after_send` (opaque
outside this module)."""

K = TypeVar("K")


def _add(counts: dict[K, int], label: K, n: int = 1) -> None:
    counts[label] = counts.get(label, 0) + n


class AlertProcessor:
    """Decides every alert of a batch and writes the outputs (no I/O of its own).

    Parameters:
        topics: the topic names.
        metrics: where decisions are counted.
        guard: the storm protection state; default a new `StormGuard` with the default
            policy and no exclusions (configuration comes through `apply`).
        on_mp102_change: called when the MP102 rule is turned on or off or its watch time
            changes (the service then follows `dcc.sr.outbound` accordingly).
    """

    def __init__(
        self,
        *,
        topics: Topics,
        metrics: AlertMetrics,
        guard: StormGuard[DeviceAlert] | None = None,
        on_mp102_change: Callable[[], None] | None = None,
    ) -> None:
        self._topics = topics
        self._metrics = metrics
        self._received = CounterChildren(metrics.received)
        self._forwarded = CounterChildren(metrics.forwarded)
        self._suppressed = CounterChildren(metrics.suppressed)
        self._deadlettered = CounterChildren(metrics.common.deadlettered)
        self._guard: StormGuard[DeviceAlert] = guard or StormGuard(storm_policy_from_config(None))
        self._outlet = Outlet()
        self._book = StormBook(topics.alerts_inbound)
        self._changelog: str | None = None
        self._on_mp102_change = on_mp102_change
        self._high_priority: frozenset[str] = frozenset()
        self._labels: frozenset[str] = KNOWN_ALERT_CODES | self._guard.exclusions
        # Wire code -> (metric label, priority, whether the MP102 rule looks at it, canonical
        # code): one look-up per alert instead of four (see `_code_info`).
        self._codes: dict[str, tuple[str, bool, bool, str]] = {}
        # Distinct non-empty recipients -> their (key, partition) on dcc.alerts.outbound,
        # for `_routes_parts` partitions (see `_routes`).
        self._routes_cache: dict[tuple[str, ...], tuple[tuple[bytes, int], ...]] = {}
        self._routes_parts = 0
        self._gate_on = False  # regional capacity configured
        self._applied: tuple[int, ...] | None = None
        # Storm copies restored from the changelog, to send again at the next step.
        self._again: list[tuple[TopicPartition, StormCopyRecord]] = []
        # StormGuard needs a clock that never goes backwards; the loop passes wall-clock ms.
        self._last_s = 0.0
        outlet, guard_ = self._outlet, self._guard
        metrics.active_storms.set_function(lambda: guard_.active_storms)
        metrics.tracked_keys.set_function(lambda: guard_.tracked_keys)
        metrics.exclusions.set_function(lambda: len(guard_.exclusions))
        metrics.held.set_function(outlet.depth)
        metrics.input_paused.set_function(lambda: 0 if outlet.wants_input() else 1)
        metrics.mp102_held.set_function(lambda: outlet.rule.stats().held_now)
        metrics.mp102_watched.set_function(lambda: outlet.rule.stats().watched_now)
        LaneGauges(self._lanes, metrics.registry)

    @property
    def guard(self) -> StormGuard[DeviceAlert]:
        """The storm protection state."""
        return self._guard

    @property
    def outlet(self) -> Outlet:
        """The MP102 rule and regional capacity, with what they hold."""
        return self._outlet

    @property
    def mp102_watch_s(self) -> int | None:
        """The MP102 rule's watch time while it is on, else None."""
        return self._outlet.rule.policy.watch_s if self._outlet.rule_on else None

    # --- configuration ----------------------------------------------------------------------

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Follow the configuration (a ControlReader listener): `alerts.exclusions`,
        `alerts.storm-policy`, `alerts.regional-capacity` and `alerts.mp102`. Items absent
        mean no exclusions, the default storm policy, no regional limit and no MP102 rule."""
        keys = ("alerts.exclusions", "alerts.storm-policy", "alerts.regional-capacity",
                "alerts.mp102")  # fmt: skip
        items = [snapshot.get(k) for k in keys]
        versions = tuple(0 if item is None else item.version for item in items)
        if versions == self._applied:
            return
        self._applied = versions
        exclusions, storm, regional, mp102 = (None if i is None else i.body for i in items)
        self._guard.set_policy(storm_policy_from_config(storm))
        self.set_capacity(regional_policy_from_config(regional))
        self.set_exclusions(() if exclusions is None else exclusions.alert_codes, versions[0])
        self.set_mp102(correlation_policy_from_config(mp102))
        log.info(
            "alerts: %d excluded codes (version %d), storm policy version %d, regional "
            "capacity version %d, MP102 rule version %d (%s)",
            len(self._guard.exclusions), *versions, "on" if self._outlet.rule_on else "off",
        )  # fmt: skip

    def set_exclusions(self, codes: Iterable[str], version: int = 0) -> None:
        """Replace the exclusion list (`version`: its control item's, for the metric)."""
        self._guard.set_exclusions(codes)
        self._codes_changed()
        self._metrics.exclusions_version.set(version)

    def set_capacity(self, policy: RegionalPolicy) -> None:
        """Replace the regional capacities and the high-priority codes."""
        self._outlet.set_capacity(policy)
        self._gate_on = bool(policy.regions)
        self._high_priority = frozenset(normalize_alert_code(c) for c in policy.high_priority_codes)
        self._codes_changed()

    def set_mp102(self, policy: CorrelationPolicy) -> None:
        """Replace the MP102 rule's settings."""
        before = self.mp102_watch_s
        self._outlet.set_rule(policy)
        self._codes = {}
        if self.mp102_watch_s != before and self._on_mp102_change is not None:
            self._on_mp102_change()

    def note_firmware_activation(self, device_id: str, at_s: float) -> None:
        """An 11.3 Activate Firmware was forwarded to `device_id` at `at_s` (MP102)."""
        self._outlet.rule.note_firmware_activation(device_key(device_id), at_s)

    def set_changelog(self, topic: str | None) -> None:
        """Snapshot running storms to `topic` (dcc.state.alerts), or stop (None)."""
        self._changelog = topic

    def _codes_changed(self) -> None:
        self._labels = KNOWN_ALERT_CODES | self._guard.exclusions | self._high_priority
        self._codes = {}

    def _label(self, code: str) -> str:
        """The `alert_code` metric label of a wire code: its canonical form when that is
        well known, excluded or high-priority, else `other` (bounded)."""
        canonical = normalize_alert_code(code)
        return canonical if canonical in self._labels else "other"

    def _priority(self, code: str) -> bool:
        # Regional capacity serves the exclusion list and the high-priority codes first.
        return self._guard.is_excluded(code) or normalize_alert_code(code) in self._high_priority

    def _mp102_code(self, code: str) -> bool:
        # Only outage and restore codes concern the MP102 rule; it releases every other
        # alert at once, so those need neither its device key nor its bookkeeping.
        policy = self._outlet.rule.policy
        canonical = normalize_alert_code(code)
        return any(
            canonical == normalize_alert_code(c)
            for c in (*policy.outage_codes, *policy.restore_codes)
        )

    def _code_info(self, code: str) -> tuple[str, bool, bool, str]:
        """(label, priority, MP102 code, canonical code) of a wire code, cached per code as
        seen on the wire until the exclusions, the high-priority codes or the MP102 rule
        change; bounded in number and length, as devices send any string (an uncached code
        is worked out again for each alert)."""
        info = self._codes.get(code)
        if info is None:
            info = (
                self._label(code),
                self._priority(code),
                self._mp102_code(code),
                normalize_alert_code(code),
            )
            if len(self._codes) < _CODE_CACHE_MAX and len(code) <= _CODE_CACHE_CHARS:
                self._codes[code] = info
        return info

    def _route_cache(self, n_parts: int) -> dict[tuple[str, ...], tuple[tuple[bytes, int], ...]]:
        """The recipient lists cached for `n_parts` partitions of dcc.alerts.outbound (emptied
        when the topic's partition count changes)."""
        if n_parts != self._routes_parts:
            self._routes_cache = {}
            self._routes_parts = n_parts
        return self._routes_cache

    def _routes(self, names: tuple[str, ...], n_parts: int) -> tuple[tuple[bytes, int], ...]:
        """(key, partition) among `n_parts` of each distinct, non-empty recipient of `names`,
        in order: where an alert's copies go. Cached per recipient list (a device's supplier
        and network operator: few distinct lists); bounded in number and, at 256 characters
        a list (a handful of User IDs), in size, as devices send any list."""
        cache = self._route_cache(n_parts)
        routes = cache.get(names)
        if routes is None:
            routes = tuple(
                (key, partition_for_key(key, n_parts))
                for key in (r.encode() for r in dict.fromkeys(names) if r)
            )
            if len(cache) < _ROUTE_CACHE_MAX and sum(map(len, names)) <= _ROUTE_CACHE_CHARS:
                cache[names] = routes
        return routes

    def _now_s(self, now_ms: int) -> float:
        now_s = now_ms / 1000
        if now_s < self._last_s:  # noqa: PLR1730 - a wall clock stepped back: hold it
            now_s = self._last_s
        self._last_s = now_s
        return now_s

    # --- partitions -------------------------------------------------------------------------

    def restore(self, records: Iterable[Record], now_ms: int) -> int:
        """Take back the running storms of newly assigned partitions from their changelog
        records (dcc.state.alerts, oldest first) at wall-clock `now_ms`; return how many
        storms came back. Copies a snapshot still carried are sent again at the next step
        (repeats, see state.py)."""
        before = self._guard.active_storms
        self._again.extend(self._book.restore(records, self._guard, self._now_s(now_ms)))
        restored = self._guard.active_storms - before
        self._metrics.storms_restored.inc(restored)
        return restored

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the storms and the held alerts of `partitions`: another worker owns them
        now, continues the storms from the changelog and reads the held alerts again."""
        gone = frozenset(partitions)
        self._book.revoke(gone, self._guard)
        self._outlet.discard(gone)
        self._again = [(tp, c) for tp, c in self._again if tp not in gone]

    def held_floor(self) -> Mapping[TopicPartition, int]:
        """Per partition, the lowest input offset still held (see `HoldingProcessor`)."""
        return self._outlet.held.floor()

    def wants_input(self) -> bool:
        """False while a full regional queue waits for room (the loop pauses its input)."""
        return self._outlet.wants_input()

    # --- the hot path -----------------------------------------------------------------------

    def process(  # noqa: PLR0915 - one hot loop; helpers would cost a call per record
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> _Tally:
        """Decide each alert of `batch`, adding forwards, storm copies and dead letters."""
        tally = _Tally()
        now_s = self._now_s(now_ms)
        outbound = out.partition_lists(self._topics.alerts_outbound)
        n_parts = len(outbound)
        route_cache = self._route_cache(n_parts)
        code_cache = self._codes
        decide = self._guard.decide
        book = self._book
        outlet = self._outlet
        # Read once a batch: the configuration changes only between batches (`apply`).
        rule_on, gate_on = outlet.rule_on, self._gate_on
        take = outlet.take
        changelog = self._changelog is not None
        received, forwarded, passed = tally.received, tally.forwarded, tally.passed
        # The hot loop counts into the tally's dicts inline (`d[k] = d.get(k, 0) + 1`) and
        # looks the per-code and per-recipient-list answers up in their caches itself: a
        # helper call per alert and count costs as much as the look-up it wraps.
        for tp, records in batch.items():
            for rec in records:
                stage = "decode"
                try:
                    value = rec.value
                    if value is None:
                        self._deadletter(out, rec, "invalid_json", _NO_VALUE, now_ms, tally)
                        continue
                    refused = record_problem(value)
                    if refused is not None:
                        self._deadletter(out, rec, *refused, now_ms, tally)
                        continue
                    try:
                        alert = _decode_alert(value)
                    except msgspec.DecodeError as exc:
                        self._undecodable(out, rec, exc, now_ms, tally)
                        continue
                    code = alert.alert_code
                    info = code_cache.get(code)
                    if info is None:
                        info = self._code_info(code)
                    label, priority, mp102, canonical = info
                    labels = (alert.region or "unknown", label)
                    received[labels] = received.get(labels, 0) + 1
                    if not any(alert.recipients):
                        self._deadletter(
                            out, rec, "no_recipients",
                            "the alert has no recipient (recipients is empty or only empty "
                            "strings); the sender must name at least one User ID",
                            now_ms, tally,
                        )  # fmt: skip
                        continue
                    stage = "storm"
                    replay = 0
                    if book.replaying:
                        device = book.replaying.get(alert.device_id)
                        if device is not None:
                            replay = book.replayed(device, alert.device_id, code, rec.offset)
                    if replay == SKIP:
                        continue  # a restored storm counted it already
                    if replay != FORWARD:
                        decision = decide(alert.device_id, code, alert, now_s)
                        if not decision.forward:
                            # Held back: counted as suppressed when its period boundary decides
                            # whether it goes out as the periodic copy (see _copy).
                            if changelog:
                                started = decision.reason == "storm_started"
                                book.counted(alert.device_id, code, tp, rec.offset, started=started)
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
                    stage = "outlet"  # MP102 and regional capacity
                    if rule_on and mp102:
                        # The rule may hold it (then regional capacity after the hold).
                        lane = outlet.offer(
                            Pending(
                                alert, value, tp, rec.offset, region=labels[0], label=label,
                                priority=priority, since_s=now_s,
                                device_key=device_key(alert.device_id),
                                code=canonical,
                            ),
                            now_s,
                        )  # fmt: skip
                        if lane is None:
                            continue
                    elif gate_on:
                        # The fast path while the region is under its capacity: nothing held.
                        lane = take(alert.region, priority, now_s)
                        if lane is None:
                            outlet.wait(
                                Pending(
                                    alert, value, tp, rec.offset, region=labels[0],
                                    label=label, priority=priority, since_s=now_s,
                                ),
                                now_s,
                            )  # fmt: skip
                            continue
                    else:
                        lane = ""  # neither configured, or the rule on and a code it ignores
                    if lane:
                        passed[lane] = passed.get(lane, 0) + 1
                    stage = "forward"
                    names = tuple(alert.recipients)
                    routes = route_cache.get(names)
                    if routes is None:
                        routes = self._routes(names, n_parts)
                    # One record per distinct, non-empty recipient, keyed by its User ID.
                    for key, partition in routes:
                        outbound[partition].append((key, value, (), None))
                    forwarded[labels] = forwarded.get(labels, 0) + len(routes)
                except Exception as exc:  # no record may stop the alert worker
                    # Per-record isolation: the alert is dead-lettered with the stage and
                    # the error, and the batch goes on (docs/contract.md).
                    self._deadletter(
                        out, rec, "processing_error", processing_error(stage, exc), now_ms, tally
                    )
        self._step(out, now_s, now_ms, tally)
        return tally

    def tick(self, out: OutputBatch, now_ms: int) -> _Tally | None:
        """What is due by now with no input (the loop calls this when no input arrives,
        and between batches): storm copies, alerts whose hold or wait ended, copies to send
        again after a restore. None when there was nothing."""
        tally = _Tally()
        if not self._step(out, self._now_s(now_ms), now_ms, tally):
            return None
        return tally

    def _step(self, out: OutputBatch, now_s: float, now_ms: int, tally: _Tally) -> bool:
        """The end of every batch and tick: storm copies, held alerts due, snapshots.
        Returns whether anything was written or released."""
        outbound = out.partition_lists(self._topics.alerts_outbound)
        ready, dropped, late = self._outlet.due(now_s, tally.delays)
        for item in ready:
            n = self._write(outbound, item.alert, item.value, ())
            _add(tally.forwarded, (item.region, item.label), n)
        for held in dropped:
            # MP102: the supply came back within the hold, so the outage alert was the
            # meter cutting the hub's power to activate firmware. Logged, never silent.
            log.info(
                "MP102: %s from %s dropped as a false alarm: %s followed %.0f s later",
                held.alert_code, held.device_id, held.restore_code,
                (held.restored_at_s or now_s) - held.held_at_s,
            )  # fmt: skip
        tally.mp102_dropped = len(dropped)
        tally.mp102_released = late
        copies = self._guard.flush(now_s)
        changelog = self._changelog
        if changelog is None:
            self._again = []
            for copy in copies:
                alert, headers = self._copy(copy, tally)
                n = self._write(outbound, alert, _encode(alert), headers)
                _add(tally.forwarded, (alert.region or "unknown", self._label(alert.alert_code)), n)
            return bool(ready or dropped or copies)
        if not (copies or self._again or self._book.dirty):
            return bool(ready or dropped)
        self._stage(changelog, copies, now_ms, tally)
        return True

    def _stage(
        self, changelog: str, copies: list[StormCopy[DeviceAlert]], now_ms: int, tally: _Tally
    ) -> None:
        """With the changelog: snapshots of the devices changed in this step (stage 0, the
        step's copies embedded), the copies (stage 1), then the snapshots again without the
        copies (stage 2). See workers/alerts/storm_changelog.py."""
        book, guard = self._book, self._guard
        by_device: dict[str, list[StormCopyRecord]] = {}
        for copy in copies:
            alert, _ = self._copy(copy, tally)
            boundary_ms = round(copy.at_s * 1000)
            record = StormCopyRecord(alert=alert, final=copy.final, boundary_ms=boundary_ms)
            by_device.setdefault(copy.device_id, []).append(record)
            ended = copy.final and guard.storm_state(copy.device_id, copy.alert_code) is None
            book.copied(copy.device_id, copy.alert_code, ended=ended)
        for _, record in self._again:
            # Sent again after a restore: its device's snapshot is written again with it.
            by_device.setdefault(record.alert.device_id, []).append(record)
            book.dirty.add(record.alert.device_id)
            _add(
                tally.forwarded,
                (record.alert.region or "unknown", self._label(record.alert.alert_code)),
                len(dict.fromkeys(r for r in record.alert.recipients if r)),
            )
        self._again = []
        with_copies: list[_StageRecord] = []
        bare: list[_StageRecord] = []
        for device_id in book.dirty:
            if device_id not in book.devices:
                continue
            embedded = by_device.get(device_id, ())
            tp, value, without = book.snapshot(device_id, self._guard, embedded, now_ms)
            key = device_id.encode()
            with_copies.append((changelog, tp.partition, key, value, ()))
            if embedded:
                bare.append((changelog, tp.partition, key, without, ()))
        book.dirty.clear()
        written: list[_StageRecord] = []
        outbound = self._topics.alerts_outbound
        for records in by_device.values():
            for record in records:
                alert = record.alert
                headers = _copy_headers(record.final, record.boundary_ms)
                value = _encode(alert)
                for recipient in dict.fromkeys(alert.recipients):
                    if recipient:
                        key = recipient.encode()
                        written.append((outbound, -1, key, value, headers))
        tally.stages = [s for s in (with_copies, written, bare) if s]

    def _copy(self, copy: StormCopy[DeviceAlert], tally: _Tally) -> tuple[DeviceAlert, Headers]:
        """The alert a storm copy writes, and its headers; counts it."""
        # SECMP0062: the copy carries how many alerts were suppressed (since the previous
        # forwarded one; the storm's total on the final copy) and the storm's sequence ID.
        alert = msgspec.structs.replace(
            copy.item,
            throttled_alert_count=copy.throttled_alert_count,
            throttled_alert_sequence_id=copy.throttled_alert_sequence_id,
        )
        if not copy.final and copy.throttled_alert_count:
            # A final copy is a repeat: its count is already accounted for.
            code = copy.alert_code  # canonical already
            label = code if code in self._labels else "other"
            _add(tally.suppressed, label, copy.throttled_alert_count)
        if self._changelog is not None:
            recipients = len(dict.fromkeys(r for r in alert.recipients if r))
            _add(tally.forwarded, (alert.region or "unknown", self._label(alert.alert_code)),
                 recipients)  # fmt: skip
        return alert, _copy_headers(copy.final, round(copy.at_s * 1000))

    def _write(
        self,
        outbound: list[list[_Out]],
        alert: DeviceAlert,
        value: bytes,
        headers: Headers,
    ) -> int:
        """One record per distinct, non-empty recipient, keyed by its User ID."""
        routes = self._routes(tuple(alert.recipients), len(outbound))
        for key, partition in routes:
            outbound[partition].append((key, value, headers, None))
        return len(routes)

    def _undecodable(
        self, out: OutputBatch, rec: Record, exc: Exception, now_ms: int, tally: _Tally
    ) -> None:
        if isinstance(exc, msgspec.ValidationError):
            self._deadletter(out, rec, "invalid_schema", str(exc), now_ms, tally)
        else:
            self._deadletter(out, rec, "invalid_json", str(exc), now_ms, tally)

    def _deadletter(
        self, out: OutputBatch, rec: Record, kind: str, reason: str, now_ms: int, tally: _Tally
    ) -> None:
        deadletter(
            out, self._topics.deadletter, rec, service=SERVICE, kind=kind, reason=reason,
            at_ms=now_ms,
        )  # fmt: skip
        _add(tally.deadlettered, kind)

    # --- after the acknowledgements --------------------------------------------------------

    def follow_up(self, tally: _Tally, stage: int, out: OutputBatch) -> bool:
        """The records of follow-up `stage` (workers.runtime.loop.StagedProcessor): the changelog
        and the storm copies, in the order workers/alerts/storm_changelog.py explains."""
        if stage >= len(tally.stages):
            return False
        for topic, partition, key, value, headers in tally.stages[stage]:
            out.add(topic, key, value, headers, partition=None if partition < 0 else partition)
            if topic == self._changelog:
                self._metrics.state_records.inc()
        return True

    def after_send(self, tally: _Tally, now_ms: int) -> None:
        """Flush a batch's counts into the metrics, now that its outputs are acknowledged."""
        m = self._metrics
        self._received.add(tally.received.items())
        self._forwarded.add(tally.forwarded.items())
        if tally.suppressed:
            self._suppressed.add(((code,), n) for code, n in tally.suppressed.items())
        if tally.deadlettered:
            self._deadlettered.add(((SERVICE, kind), n) for kind, n in tally.deadlettered.items())
        for lane, delays in tally.delays.items():
            m.regional_delay.observe_many(lane, delays)
        for lane, n in tally.passed.items():
            m.regional_delay.observe_zeros(lane, n)
        if tally.mp102_dropped:
            m.mp102_dropped.inc(tally.mp102_dropped)
        if tally.mp102_released:
            m.mp102_released.inc(tally.mp102_released)

    def _lanes(self) -> list[tuple[str, int, float]]:
        gate = self._outlet.gate
        now_s = self._last_s
        return [
            (name, gate.depth(name), gate.oldest_delay_s(name, now_s))
            for name in (*gate.regions(), "unlimited")
        ]


def _copy_headers(final: bool, boundary_ms: int) -> Headers:
    return (
        (STORM_HEADER, _FINAL if final else _PERIODIC),
        (BOUNDARY_HEADER, str(boundary_ms).encode()),
    )
