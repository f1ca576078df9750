"""Alert-storm protection per (device, alert code), SECMP0062. Pure: no I/O and no clock.

SECMP0062 (DOMAIN.md section 7): the DCC counts the alerts a device sends within a time
window; when the same alert comes more often than a threshold, the excess is discarded and
one copy of it is forwarded per designated period. Alert codes on the exclusion list (the
Traffic Management Mechanism Document's list) are never throttled. The numbers are not
public; they are configuration (`StormParams` per code, with a default).

The rules, per key (device ID, alert code), exactly as `StormGuard` applies them:

1. **Window.** The first alert of a key opens a window of `window_s` seconds. The first
   `max_alerts` alerts in the window are forwarded at once; an alert after the window has
   ended opens a new window. (A fixed window anchored on its first alert, so one key costs
   one integer: a burst straddling two windows can pass up to 2 x `max_alerts` in
   `window_s` seconds before it is caught.)
2. **Storm start.** The next alert within the window, number `max_alerts + 1`, starts a
   storm at its arrival time `t0` and is suppressed. The storm's sequence ID is
   `"{device_id}:{alert_code}:{t0 in integer ms}"` (after an optional prefix): stable for
   the storm, unique per key as long as time does not go backwards.
3. **Periods.** Every alert of the key during the storm is suppressed and remembered as the
   storm's latest alert. At each period boundary `t0 + k * period_s` (k >= 1; an alert
   exactly on a boundary belongs to the period it opens): if alerts arrived in the period
   just ended, the *latest* of them is forwarded as a periodic copy (it counts as
   forwarded, not suppressed), carrying `throttled_alert_count` = how many other alerts of
   the key arrived since the previous forwarded one (all suppressed).
4. **Storm end.** At the first boundary where no alert arrived in the period just ended,
   the storm is over: more than `period_s` and at most `2 * period_s` after its last
   alert. A final copy is emitted: the storm's latest alert again, carrying
   `throttled_alert_count` = the storm's total suppressed. It is always a repeat (the end
   is known only after a quiet period, by when the last periodic copy has taken the latest
   alert); recipients recognise it by the sequence ID and `raised_at_ms` of the copy
   before. The key is then forgotten: its next alert opens a fresh window.

Accounting, per key, once its storms have ended: every alert received was either forwarded
(at once, or as a periodic copy) or suppressed, and the suppressed ones are exactly the sum of
the periodic copies' `throttled_alert_count`, which the final copy repeats as its total. A
final copy is a repeat and counts as neither. During a storm the alerts of the current period
are suppressed until its boundary decides which of them goes out.

Copies are computed as if `flush` ran exactly at every boundary: a `decide` that arrives
after a boundary its storm has not yet passed settles the boundary first (the copy waits
for the next `flush`), so the outputs do not depend on how often `flush` is called, only
their latency does. The one exception is a storm cut short by the key cap (`StormGuard`).

State across restarts: `storm_state` exports a running storm and `restore_storm` puts it
back into another guard (a restarted worker, or the new owner of a partition), which then
continues it under the same sequence ID, boundaries and counts. Windows are not exported:
a key in a window starts afresh, at most `max_alerts` more alerts forwarded, like a burst
straddling two windows. How a caller makes the export durable and consistent with its input
is the caller's business (workers/alerts/processor.py, docs/alerts.md).

Alert codes are compared in canonical form (`normalize_alert_code`: upper case, no `0x`);
codes with no parameters of their own get the default, so unknown codes (MP090's
non-mandated alerts) pass through and are protected like any other.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from typing import Final, Generic, Literal, NamedTuple, TypeVar

import msgspec

__all__ = [
    "DEFAULT_STORM_PARAMS",
    "StormCopy",
    "StormDecision",
    "StormGuard",
    "StormParams",
    "StormPolicy",
    "StormReason",
    "StormState",
    "StormStats",
    "normalize_alert_code",
]

T = TypeVar("T")

StormReason = Literal["excluded", "under_threshold", "storm_started", "suppressed"]

# A window's state is one int: its end in integer ms shifted left, its count in the low bits.
# One int per key instead of a list or an object keeps a tracked key at about 150 bytes with
# its key string (tests/bench/bench_storm.py); a list [end, count] would cost 100 more.
_COUNT_BITS: Final = 20
_COUNT_MASK: Final = (1 << _COUNT_BITS) - 1
_MAX_ALERTS_LIMIT: Final = _COUNT_MASK

# Evict this fraction of max_keys at once when full. Evicting one key at a time with
# `next(iter(d))` is quadratic: a dict keeps deleted slots at the front of its entry table
# until it resizes, and each walk passes over them again (workers/duis/validate.py).
_EVICT_FRACTION: Final = 64

# Resolved rules are cached per alert code as seen on the wire; a bound, because the codes
# come from devices (unknown ones included) and a device could send any string.
_RULE_CACHE_MAX: Final = 4096
# ... and only codes this long: 4,096 codes of a record's 256 KiB each would hold 1 GiB.
_RULE_CACHE_CHARS: Final = 32


class StormParams(msgspec.Struct, frozen=True, kw_only=True):
    """Storm parameters for one alert code (or a group of codes sharing them).

    window_s: the counting window in seconds (>= 1). max_alerts: alerts forwarded per window
    before a storm starts (1 to 1_048_575). period_s: seconds between forwarded copies
    during a storm (>= 1); also the quiet time that ends a storm.
    """

    window_s: int
    max_alerts: int
    period_s: int

    def __post_init__(self) -> None:
        if self.window_s < 1:
            raise ValueError(f"StormParams.window_s must be at least 1 second, got {self.window_s}")
        if not 1 <= self.max_alerts <= _MAX_ALERTS_LIMIT:
            raise ValueError(
                f"StormParams.max_alerts must be between 1 and {_MAX_ALERTS_LIMIT}, "
                f"got {self.max_alerts}"
            )
        if self.period_s < 1:
            raise ValueError(f"StormParams.period_s must be at least 1 second, got {self.period_s}")


# Placeholder values: the real ones are in the TMMD, which is not public (DOMAIN.md section
# 7). Ten identical alerts in ten minutes from one device is a storm; then one copy every
# ten minutes.
DEFAULT_STORM_PARAMS: Final = StormParams(window_s=600, max_alerts=10, period_s=600)


class StormPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Storm parameters per alert code, with a default for every other code.

    default: for codes not in per_code (including unknown codes). per_code: alert code ->
    parameters; a code group is its codes listed with the same StormParams. Codes may be
    written `8F35`, `8f35` or `0x8F35`.
    """

    default: StormParams = DEFAULT_STORM_PARAMS
    per_code: Mapping[str, StormParams] = msgspec.field(default_factory=dict)


class StormDecision(msgspec.Struct, frozen=True):
    """What to do with one alert now: forward it, or not (a copy may go out later).

    reason: `excluded` (on the exclusion list: always forwarded), `under_threshold`
    (forwarded), `storm_started` (this alert started a storm: suppressed), `suppressed`
    (during a storm).
    """

    forward: bool
    reason: StormReason


# The four answers are shared constants: the hot path allocates nothing for them.
_FORWARD_EXCLUDED: Final = StormDecision(True, "excluded")
_FORWARD: Final = StormDecision(True, "under_threshold")
_STORM_STARTED: Final = StormDecision(False, "storm_started")
_SUPPRESSED: Final = StormDecision(False, "suppressed")


class StormCopy(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """An alert to forward for a storm: a periodic copy, or the final copy when it ends.

    item: the caller's own alert object, as passed to `StormGuard.decide` (for a periodic
    copy, the latest alert of the period; for the final copy, the storm's latest alert,
    which went out with the last periodic copy). throttled_alert_count: for a periodic copy,
    the alerts suppressed since the previous forwarded one; for the final copy, the storm's
    total suppressed. suppressed_total: the storm's suppressed alerts so far (equal to
    throttled_alert_count on the final copy). at_s: the period boundary this copy belongs to.
    """

    device_id: str
    alert_code: str
    item: T
    throttled_alert_count: int
    throttled_alert_sequence_id: str
    final: bool
    suppressed_total: int
    at_s: float


class StormState(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A running storm as `StormGuard.storm_state` exports it and `restore_storm` takes it
    back, so that another guard continues it.

    device_id and alert_code (canonical) name the key. sequence_id: the storm's. due_s: its
    next period boundary. pending: alerts since the previous boundary, all held until
    `due_s` decides (>= 0). suppressed: the storm's suppressed alerts so far (>= 0).
    latest: the storm's latest alert, the caller's object.
    """

    device_id: str
    alert_code: str
    sequence_id: str
    due_s: float
    pending: int
    suppressed: int
    latest: T


class StormStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters since the guard was built, for metrics; all are totals except the first two."""

    tracked_keys: int
    active_storms: int
    storms_started: int
    storms_ended: int
    periodic_copies: int
    final_copies: int
    expired_keys: int
    evicted_keys: int
    storms_cut_short: int


class _Rule(NamedTuple):
    code: str
    excluded: bool
    window_ms: int
    max_alerts: int
    period_s: int


class _Storm(Generic[T]):
    """One active storm; mutable, only StormGuard touches it."""

    __slots__ = (
        "alert_code",
        "device_id",
        "due_s",
        "key",
        "latest",
        "pending",
        "sequence_id",
        "suppressed",
    )

    def __init__(
        self, key: str, device_id: str, alert_code: str, item: T, sequence_id: str, due_s: float
    ) -> None:
        self.key = key
        self.device_id = device_id
        self.alert_code = alert_code
        self.sequence_id = sequence_id
        self.latest = item
        # Alerts received since the last boundary; all suppressed until that boundary.
        self.pending = 1
        # Alerts of this storm that will never be forwarded.
        self.suppressed = 0
        self.due_s = due_s


def _canonical_params(policy: StormPolicy) -> dict[str, StormParams]:
    return {normalize_alert_code(code): params for code, params in policy.per_code.items()}


def normalize_alert_code(code: str) -> str:
    """The canonical form of an alert code: stripped, upper case, without a `0x` prefix.

    `0x8f35`, `8f35` and `8F35` all become `8F35`; DCC alert codes such as `AD1` or `N24`
    keep their letters.
    """
    code = code.strip().upper()
    if code.startswith("0X"):
        code = code[2:]
    return code


class StormGuard(Generic[T]):
    """Decides, per (device ID, alert code), whether an alert is forwarded or suppressed.

    policy: parameters per alert code. exclusions: alert codes never throttled (the TMMD
    exclusion list; default empty, the real list is configuration). max_keys: the most keys
    (open windows plus storms) held, default 1_000_000 (about 150 bytes a key in a window
    and 470 in a storm with 23-character device IDs, measured by tests/bench/bench_storm.py).
    sequence_prefix: put before every sequence ID, default "" (see below). T: the caller's
    alert type, kept as the copy to forward.

    Sequence IDs carry the storm's start on the clock now_s comes from. With a monotonic
    clock they are unique within one process; pass a sequence_prefix unique per process
    (e.g. the worker's start time) to keep them unique across restarts and rebalances.

    Call `flush(now_s)` regularly (about once a second): it returns the copies due and drops
    idle keys. now_s must not go backwards (a monotonic clock): if it does, no window or
    period is shortened, but idle keys may be dropped later than they could be.

    Memory is bounded. A key costs memory only while its window is open or it is in a
    storm: `flush` drops a window at its end (held at most the longest window_s in the
    policy). When max_keys are held and a new key comes, the oldest windows go, 1/64 of
    max_keys at once: a dropped key's next alert opens a fresh window, so a storm from it is
    caught up to max_alerts later. Only when every held key is a storm is the oldest storm
    cut short: its pending alert goes out as a periodic copy and its final copy follows, both
    with the next `flush`, and nothing is lost from the accounting.
    """

    __slots__ = (
        "_cut_short",
        "_cut_starts",
        "_ended",
        "_evict_count",
        "_evicted",
        "_excluded",
        "_expired",
        "_finals",
        "_heap",
        "_max_keys",
        "_outbox",
        "_params",
        "_periodics",
        "_policy",
        "_rules",
        "_seq",
        "_sequence_prefix",
        "_started",
        "_storms",
        "_windows",
    )

    def __init__(
        self,
        policy: StormPolicy,
        *,
        exclusions: Iterable[str] = (),
        max_keys: int = 1_000_000,
        sequence_prefix: str = "",
    ) -> None:
        if max_keys < 1:
            raise ValueError(
                f"max_keys must be at least 1, got {max_keys}; it is the number of "
                "(device, alert code) keys whose window or storm is remembered"
            )
        self._max_keys = max_keys
        self._sequence_prefix = sequence_prefix
        self._evict_count = max(1, max_keys // _EVICT_FRACTION)
        self._policy = policy
        self._params = _canonical_params(policy)
        self._excluded = frozenset(normalize_alert_code(c) for c in exclusions)
        self._rules: dict[str, _Rule] = {}
        # "device|code" -> window end in ms << _COUNT_BITS | count; ordered by window start.
        self._windows: dict[str, int] = {}
        # "device|code" -> storm; ordered by storm start.
        self._storms: dict[str, _Storm[T]] = {}
        # (boundary s, tie-breaker, storm): at most one live entry per storm; an entry whose
        # storm has ended or moved on is skipped (or re-pushed at the storm's due time).
        self._heap: list[tuple[float, int, _Storm[T]]] = []
        self._seq = itertools.count()
        self._outbox: list[StormCopy[T]] = []
        # key -> start ms of a storm cut short in the last millisecond (see _make_room).
        self._cut_starts: dict[str, int] = {}
        self._started = 0
        self._ended = 0
        self._periodics = 0
        self._finals = 0
        self._expired = 0
        self._evicted = 0
        self._cut_short = 0

    # --- configuration ----------------------------------------------------------------------

    @property
    def policy(self) -> StormPolicy:
        """The policy in force."""
        return self._policy

    @property
    def exclusions(self) -> frozenset[str]:
        """The alert codes never throttled, in canonical form."""
        return self._excluded

    def set_policy(self, policy: StormPolicy) -> None:
        """Replace the whole parameter table at once.

        Open windows keep the end they were opened with and are counted against the new
        max_alerts; a running storm keeps the boundary already scheduled and spaces the
        following ones by the new period_s.
        """
        self._policy = policy
        self._params = _canonical_params(policy)
        self._rules = {}

    def set_exclusions(self, codes: Iterable[str]) -> None:
        """Replace the whole exclusion list at once (it changes: 0x8F75 was proposed for
        removal in 2023, DOMAIN.md section 7).

        A code newly excluded is forwarded from its next alert on; a storm of it then sees
        no more alerts and ends at its next quiet boundary with its final copy. A code newly
        removed is counted from its next alert on, in a fresh window.
        """
        self._excluded = frozenset(normalize_alert_code(c) for c in codes)
        self._rules = {}

    def is_excluded(self, alert_code: str) -> bool:
        """Whether alert_code is on the exclusion list."""
        return self._rule(alert_code).excluded

    # --- the hot path -----------------------------------------------------------------------

    def decide(self, device_id: str, alert_code: str, item: T, now_s: float) -> StormDecision:
        """Forward or suppress one alert from device_id with alert_code, raised now.

        item: the caller's alert object, kept (the latest per storm) to be forwarded later as
        a periodic copy. now_s: seconds on a monotonic clock. Returns a shared constant.
        """
        rule = self._rules.get(alert_code)
        if rule is None:
            rule = self._rule(alert_code)
        # One unpack instead of four attribute reads (NamedTuple fields are descriptors).
        code, excluded, window_ms, max_alerts, period_s = rule
        if excluded:
            # SECMP0062: codes on the TMMD exclusion list are never throttled.
            return _FORWARD_EXCLUDED
        # "|" is in neither an EUI-64 nor an alert code: two real keys cannot collide.
        key = f"{device_id}|{code}"
        storms = self._storms
        if storms:
            storm = storms.get(key)
            if storm is not None:
                if now_s >= storm.due_s:
                    self._settle(storm, now_s, self._outbox)
                if storms.get(key) is storm:
                    storm.pending += 1
                    storm.latest = item
                    return _SUPPRESSED
        windows = self._windows
        now_ms = int(now_s * 1000)
        state = windows.get(key)
        if state is None or (state >> _COUNT_BITS) <= now_ms:
            if state is not None:
                # Re-insert so the dict stays ordered by window start (expiry walks it).
                del windows[key]
            elif len(windows) + len(storms) >= self._max_keys:
                self._make_room(now_s)
            windows[key] = ((now_ms + window_ms) << _COUNT_BITS) | 1
            return _FORWARD
        if (state & _COUNT_MASK) < max_alerts:
            windows[key] = state + 1
            return _FORWARD
        # SECMP0062: more than the threshold within the window; the excess is discarded and
        # one copy per period goes out instead.
        del windows[key]
        start_ms = now_ms
        if self._cut_starts:
            previous_ms = self._cut_starts.pop(key, None)
            if previous_ms is not None and previous_ms >= start_ms:
                start_ms = previous_ms + 1
        sequence_id = f"{self._sequence_prefix}{device_id}:{code}:{start_ms}"
        storm = _Storm(key, device_id, code, item, sequence_id, now_s + period_s)
        storms[key] = storm
        heapq.heappush(self._heap, (storm.due_s, next(self._seq), storm))
        self._started += 1
        return _STORM_STARTED

    # --- periodic work ----------------------------------------------------------------------

    def flush(self, now_s: float) -> list[StormCopy[T]]:
        """The copies due by now_s, in boundary order, and drop the keys whose window ended.

        Returns periodic copies and final copies (see the module docstring), including those
        settled by `decide` or cut short by eviction since the last call.
        """
        out = self._outbox
        self._outbox = []
        heap = self._heap
        storms = self._storms
        while heap and heap[0][0] <= now_s:
            storm = heapq.heappop(heap)[2]
            if storms.get(storm.key) is not storm:
                continue  # ended or cut short meanwhile
            if storm.due_s <= now_s:
                self._settle(storm, now_s, out)
            if storms.get(storm.key) is storm:
                heapq.heappush(heap, (storm.due_s, next(self._seq), storm))
        self._expire(now_s)
        if self._cut_starts:
            now_ms = int(now_s * 1000)
            self._cut_starts = {k: ms for k, ms in self._cut_starts.items() if ms >= now_ms}
        return out

    @property
    def tracked_keys(self) -> int:
        """Keys held: open windows plus active storms."""
        return len(self._windows) + len(self._storms)

    @property
    def active_storms(self) -> int:
        """Keys in a storm now."""
        return len(self._storms)

    def stats(self) -> StormStats:
        """A snapshot of the counters."""
        return StormStats(
            tracked_keys=self.tracked_keys,
            active_storms=len(self._storms),
            storms_started=self._started,
            storms_ended=self._ended,
            periodic_copies=self._periodics,
            final_copies=self._finals,
            expired_keys=self._expired,
            evicted_keys=self._evicted,
            storms_cut_short=self._cut_short,
        )

    # --- state across restarts ------------------------------------------------------------

    def storm_state(self, device_id: str, alert_code: str) -> StormState[T] | None:
        """The storm of (device_id, alert_code) as it is now, or None if the key is not in
        a storm. alert_code in any form (it is normalised)."""
        storm = self._storms.get(f"{device_id}|{normalize_alert_code(alert_code)}")
        if storm is None:
            return None
        return StormState(
            device_id=storm.device_id,
            alert_code=storm.alert_code,
            sequence_id=storm.sequence_id,
            due_s=storm.due_s,
            pending=storm.pending,
            suppressed=storm.suppressed,
            latest=storm.latest,
        )

    def restore_storm(self, state: StormState[T], now_s: float) -> None:
        """Continue a storm exported by `storm_state` (of this or another guard): same
        sequence ID, next boundary and counts. A window or storm of the key held now is
        replaced.

        If its next boundary passed while no guard held the storm (`state.due_s` <= now_s,
        e.g. during a restart), that boundary moves to now_s + period_s: the alerts of the
        time in between are still to be decided (they wait in Kafka), and deciding the
        boundary before they are counted would end the storm for want of alerts, and
        forward its next alerts afresh. Copies stay at least period_s apart."""
        if state.pending < 0 or state.suppressed < 0:
            raise ValueError(
                f"a storm's pending and suppressed counts cannot be negative, got "
                f"{state.pending} and {state.suppressed} for {state.sequence_id}"
            )
        code = normalize_alert_code(state.alert_code)
        key = f"{state.device_id}|{code}"
        new_key = self._windows.pop(key, None) is None and key not in self._storms
        if new_key and len(self._windows) + len(self._storms) >= self._max_keys:
            self._make_room(now_s)
        due_s = state.due_s if state.due_s > now_s else now_s + self._rule(code).period_s
        storm = _Storm(key, state.device_id, code, state.latest, state.sequence_id, due_s)
        storm.pending = state.pending
        storm.suppressed = state.suppressed
        self._storms[key] = storm
        heapq.heappush(self._heap, (storm.due_s, next(self._seq), storm))

    def forget_storm(self, device_id: str, alert_code: str) -> None:
        """Drop the storm of (device_id, alert_code) without any copy: another guard owns
        it now (its state was handed over with `storm_state`)."""
        self._storms.pop(f"{device_id}|{normalize_alert_code(alert_code)}", None)

    def clear_windows(self) -> None:
        """Forget every open window (their keys start afresh); storms are kept."""
        self._windows.clear()

    # --- internals --------------------------------------------------------------------------

    def _rule(self, alert_code: str) -> _Rule:
        rule = self._rules.get(alert_code)
        if rule is not None:
            return rule
        code = normalize_alert_code(alert_code)
        params = self._params.get(code, self._policy.default)
        rule = _Rule(
            code=code,
            excluded=code in self._excluded,
            window_ms=params.window_s * 1000,
            max_alerts=params.max_alerts,
            period_s=params.period_s,
        )
        if len(self._rules) < _RULE_CACHE_MAX and len(alert_code) <= _RULE_CACHE_CHARS:
            self._rules[alert_code] = rule
        return rule

    def _settle(self, storm: _Storm[T], now_s: float, out: list[StormCopy[T]]) -> None:
        """Pass every boundary of storm at or before now_s, appending the copies to out."""
        while storm.due_s <= now_s:
            at_s = storm.due_s
            if storm.pending == 0:
                # A whole period without an alert: the storm is over.
                out.append(self._final(storm, at_s))
                del self._storms[storm.key]
                self._ended += 1
                return
            out.append(self._periodic(storm, at_s))
            storm.due_s = at_s + self._rule(storm.alert_code).period_s

    def _periodic(self, storm: _Storm[T], at_s: float) -> StormCopy[T]:
        # The latest alert of the period goes out; the others of the period are suppressed.
        dropped = storm.pending - 1
        storm.suppressed += dropped
        storm.pending = 0
        self._periodics += 1
        return StormCopy(
            device_id=storm.device_id,
            alert_code=storm.alert_code,
            item=storm.latest,
            throttled_alert_count=dropped,
            throttled_alert_sequence_id=storm.sequence_id,
            final=False,
            suppressed_total=storm.suppressed,
            at_s=at_s,
        )

    def _final(self, storm: _Storm[T], at_s: float) -> StormCopy[T]:
        # A repeat of the storm's latest alert (already forwarded) with the storm's total.
        self._finals += 1
        return StormCopy(
            device_id=storm.device_id,
            alert_code=storm.alert_code,
            item=storm.latest,
            throttled_alert_count=storm.suppressed,
            throttled_alert_sequence_id=storm.sequence_id,
            final=True,
            suppressed_total=storm.suppressed,
            at_s=at_s,
        )

    def _make_room(self, now_s: float) -> None:
        windows = self._windows
        if windows:
            victims = list(itertools.islice(windows, self._evict_count))
            for key in victims:
                del windows[key]
            self._evicted += len(victims)
            return
        # Every held key is a storm: cut the oldest short rather than exceed max_keys.
        storm = next(iter(self._storms.values()))
        # A storm ends normally at least period_s after it starts, so the key's next storm
        # starts later and gets a new sequence ID; one cut short may restart in the same
        # millisecond: remember its start until then.
        self._cut_starts[storm.key] = int(storm.sequence_id.rsplit(":", 1)[1])
        if storm.pending:
            self._outbox.append(self._periodic(storm, now_s))
        self._outbox.append(self._final(storm, now_s))
        del self._storms[storm.key]
        self._ended += 1
        self._cut_short += 1

    def _expire(self, now_s: float) -> None:
        # Windows are ordered by start, not by end (window_s differs per code), so the walk
        # stops at the first open window: a shorter window behind it goes at most the
        # longest window_s late. One walk per flush, as in MemoryGcraStore.expire.
        windows = self._windows
        now_ms = int(now_s * 1000)
        ended: list[str] = []
        for key, state in windows.items():
            if (state >> _COUNT_BITS) > now_ms:
                break
            ended.append(key)
        for key in ended:
            del windows[key]
        self._expired += len(ended)
