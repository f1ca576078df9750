"""Correlation rule for power-outage alerts caused by firmware activation (SEC MP102A/B).

Pure: no I/O and no clock. Some electricity meters cut the Communications Hub's power while
they activate an over-the-air firmware update, and the hub then raises AD1 (Power Outage
Alert), which the DCC forwards to the network operator as if the supply had failed (DOMAIN.md
section 4). MP102A fixed new meters; MP102B, the fix for installed meters, was still in
refinement and its mechanism is not known. This rule is a broker-side mitigation, off by
default:

1. `note_firmware_activation(device, now)` when an 11.3 Activate Firmware was forwarded to
   the device: for `watch_s` seconds, its outage alerts are suspect.
2. A suspect outage alert (code in `outage_codes`) is held for `hold_s` seconds.
3. If a restore alert (code in `restore_codes`) from the same device arrives while it is
   held, the held outage alert is dropped as a false alarm (reported by `release_due`, so
   the caller can log or audit it: never dropped silently). Otherwise `release_due`
   releases it when its hold ends, late but unchanged. The restore alert itself is always
   forwarded.

Uncertain, and therefore configuration:

- **Codes.** The defaults are AD1 (DCC-defined, from the hub) for the outage and GBCS
  0x8F35 / 0x8F36 (supply outage restored, from the meter) for the restore. Whether a meter
  that cut only the hub's power raises 0x8F35/0x8F36 at all is not confirmed: its own
  supply never failed. 0x8F43 (change in executing firmware) may be the better evidence of
  an activation; add it to `restore_codes` if the deployment confirms it.
- **Device ID.** AD1 names the hub, 11.3 and 0x8F35 name the meter. The rule matches on
  the `device_id` it is given: the caller passes a key common to both (the premises, or the
  hub's ID through an inventory). With raw device IDs and no inventory, hub and meter
  alerts never match and the rule holds nothing back except by delay.
- **Order.** Only a restore *after* the outage alert drops it; an outage alert arriving
  after its restore is forwarded (after its hold), because dropping a real outage is
  worse than forwarding a false one.

Memory is bounded: at most `max_watched` activations (the oldest are forgotten first: their
outage alerts then pass unheld) and `max_held` held alerts (when full, a suspect alert is
forwarded at once instead of being held). Both fail open: towards forwarding.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, Literal, TypeVar

import msgspec

from throttling.storm import normalize_alert_code

__all__ = [
    "CorrelationOutcome",
    "CorrelationPolicy",
    "CorrelationRelease",
    "CorrelationStats",
    "FirmwareActivationRule",
    "HeldAlert",
]

T = TypeVar("T")

CorrelationOutcome = Literal["release", "held"]

# Evict this fraction of max_watched at once when full (see workers/duis/validate.py).
_EVICT_FRACTION: Final = 64


class CorrelationPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The MP102 firmware-activation rule's settings; off by default.

    enabled: default False. watch_s: seconds after an activation during which the device's
    outage alerts are held, default 1800. hold_s: seconds an outage alert is held waiting
    for a restore, default 600. outage_codes: default {"AD1"}. restore_codes: default
    {"8F35", "8F36"}. max_watched: activations remembered, default 100_000. max_held:
    alerts held at once, default 100_000. The durations are placeholders: an activation
    outage lasts over 3 minutes (AD1's threshold); how much longer is not published.
    """

    enabled: bool = False
    watch_s: int = 1800
    hold_s: int = 600
    outage_codes: frozenset[str] = frozenset({"AD1"})
    restore_codes: frozenset[str] = frozenset({"8F35", "8F36"})
    max_watched: int = 100_000
    max_held: int = 100_000

    def __post_init__(self) -> None:
        if self.watch_s < 1 or self.hold_s < 1:
            raise ValueError(
                "CorrelationPolicy.watch_s and hold_s must be at least 1 second, got "
                f"{self.watch_s} and {self.hold_s}"
            )
        if self.max_watched < 1 or self.max_held < 1:
            raise ValueError(
                "CorrelationPolicy.max_watched and max_held must be at least 1, got "
                f"{self.max_watched} and {self.max_held}"
            )
        both = {normalize_alert_code(c) for c in self.outage_codes} & {
            normalize_alert_code(c) for c in self.restore_codes
        }
        if both:
            raise ValueError(
                f"CorrelationPolicy: codes {sorted(both)} are both outage and restore codes; "
                "remove them from one of the two sets"
            )


class HeldAlert(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """An outage alert the rule held, as `release_due` hands it back.

    item: the caller's alert object. held_at_s: when it was offered. restore_code and
    restored_at_s: the restore alert that dropped it (None if it was released).
    """

    device_id: str
    alert_code: str
    item: T
    held_at_s: float
    restore_code: str | None = None
    restored_at_s: float | None = None


class CorrelationRelease(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """What `release_due` returns: alerts to forward now (their hold ended without a
    restore), and alerts dropped as false alarms since the last call (to log, not forward)."""

    released: list[HeldAlert[T]]
    dropped: list[HeldAlert[T]]


class CorrelationStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters for metrics. held_now and watched_now are current; the rest are totals since
    the rule was built: outage alerts held, released late, dropped as false alarms, and
    forwarded unheld because max_held alerts were held already."""

    held_now: int
    watched_now: int
    held: int
    released_late: int
    dropped: int
    not_held_full: int


class _Held(Generic[T]):
    """One held outage alert; mutable, only FirmwareActivationRule touches it."""

    __slots__ = ("alert_code", "device_id", "due_s", "held_at_s", "item", "settled")

    def __init__(
        self, device_id: str, alert_code: str, item: T, now_s: float, due_s: float
    ) -> None:
        self.device_id = device_id
        self.alert_code = alert_code
        self.item = item
        self.held_at_s = now_s
        self.due_s = due_s
        # True once dropped by a restore: the entry stays in the queue until its due time.
        self.settled = False


class FirmwareActivationRule(Generic[T]):
    """Holds outage alerts that follow a firmware activation, and drops the false ones.

    policy: see CorrelationPolicy (and the module docstring). T: the caller's alert type.
    Call `release_due(now_s)` about once a second; now_s on a monotonic clock.
    """

    __slots__ = (
        "_by_device",
        "_dropped",
        "_held",
        "_live",
        "_n_dropped",
        "_n_full",
        "_n_held",
        "_n_released",
        "_outage",
        "_policy",
        "_restore",
        "_watch",
    )

    def __init__(self, policy: CorrelationPolicy | None = None) -> None:
        policy = policy or CorrelationPolicy()
        self._policy = policy
        self._outage: frozenset[str] = frozenset()
        self._restore: frozenset[str] = frozenset()
        # device -> end of its watch, ordered by activation (expiry walks it from the front).
        self._watch: dict[str, float] = {}
        # Held alerts in arrival order, dropped ones included until their due time.
        self._held: deque[_Held[T]] = deque()
        # device -> its alerts still held (not dropped), oldest first.
        self._by_device: dict[str, list[_Held[T]]] = {}
        self._dropped: list[HeldAlert[T]] = []
        self._live = 0
        self._n_held = 0
        self._n_released = 0
        self._n_dropped = 0
        self._n_full = 0
        self.set_policy(policy)

    @property
    def policy(self) -> CorrelationPolicy:
        """The policy in force."""
        return self._policy

    def set_policy(self, policy: CorrelationPolicy) -> None:
        """Replace the settings at once.

        Alerts already held keep their due time and leave in arrival order (one held under a
        shorter hold_s may wait behind one held under a longer). Turning the rule off
        forgets the activations and releases every held alert at the next `release_due`.
        """
        self._policy = policy
        self._outage = frozenset(normalize_alert_code(c) for c in policy.outage_codes)
        self._restore = frozenset(normalize_alert_code(c) for c in policy.restore_codes)
        if not policy.enabled:
            self._watch.clear()

    def note_firmware_activation(self, device_id: str, now_s: float) -> None:
        """An 11.3 Activate Firmware was forwarded to device_id at now_s (MP102)."""
        policy = self._policy
        if not policy.enabled:
            return
        watch = self._watch
        if watch.pop(device_id, None) is None and len(watch) >= policy.max_watched:
            batch = max(1, policy.max_watched // _EVICT_FRACTION)
            for device in list(itertools.islice(watch, batch)):
                del watch[device]
        watch[device_id] = now_s + policy.watch_s

    def offer(self, device_id: str, alert_code: str, item: T, now_s: float) -> CorrelationOutcome:
        """ "release" to forward the alert now, or "held" (it comes back from `release_due`).

        A restore alert is always released, and drops the device's held outage alerts.
        """
        if not self._policy.enabled:
            return "release"
        code = normalize_alert_code(alert_code)
        if code in self._outage:
            end_s = self._watch.get(device_id)
            if end_s is None or now_s >= end_s:
                return "release"
            if len(self._held) >= self._policy.max_held:
                self._n_full += 1  # fail open: forward rather than grow
                return "release"
            held = _Held(device_id, code, item, now_s, now_s + self._policy.hold_s)
            self._held.append(held)
            self._by_device.setdefault(device_id, []).append(held)
            self._live += 1
            self._n_held += 1
            return "held"
        if code in self._restore:
            waiting = self._by_device.pop(device_id, None)
            if waiting:
                # MP102: the supply came back within the hold, so the outage was the meter
                # cutting the hub's power to activate firmware, not a supply failure.
                for held in waiting:
                    held.settled = True
                    self._dropped.append(_out(held, code, now_s))
                self._live -= len(waiting)
                self._n_dropped += len(waiting)
        return "release"

    def release_due(self, now_s: float) -> CorrelationRelease[T]:
        """Held alerts whose hold ended by now_s (to forward, late), and those dropped by a
        restore since the last call (to log). Also forgets activations whose watch ended."""
        released: list[HeldAlert[T]] = []
        queue = self._held
        everything = not self._policy.enabled
        while queue and (everything or queue[0].due_s <= now_s):
            held = queue.popleft()
            if held.settled:
                continue
            waiting = self._by_device[held.device_id]
            waiting.remove(held)
            if not waiting:
                del self._by_device[held.device_id]
            released.append(_out(held, None, None))
        self._live -= len(released)
        self._n_released += len(released)
        self._expire(now_s)
        dropped = self._dropped
        self._dropped = []
        return CorrelationRelease(released=released, dropped=dropped)

    def discard(self, keep: Callable[[T], bool]) -> int:
        """Forget every held alert for which keep(item) is False, without releasing or
        dropping it (it is another owner's now, e.g. after a Kafka rebalance); return how
        many went. A pass over every held alert: for rare events."""
        gone = 0
        for held in self._held:
            if not held.settled and not keep(held.item):
                held.settled = True
                waiting = self._by_device[held.device_id]
                waiting.remove(held)
                if not waiting:
                    del self._by_device[held.device_id]
                gone += 1
        self._live -= gone
        return gone

    def stats(self) -> CorrelationStats:
        """A snapshot of the counters."""
        return CorrelationStats(
            held_now=self._live,
            watched_now=len(self._watch),
            held=self._n_held,
            released_late=self._n_released,
            dropped=self._n_dropped,
            not_held_full=self._n_full,
        )

    def _expire(self, now_s: float) -> None:
        watch = self._watch
        ended: list[str] = []
        for device, end_s in watch.items():
            if end_s > now_s:
                break
            ended.append(device)
        for device in ended:
            del watch[device]


def _out(held: _Held[T], restore_code: str | None, restored_at_s: float | None) -> HeldAlert[T]:
    return HeldAlert(
        device_id=held.device_id,
        alert_code=held.alert_code,
        item=held.item,
        held_at_s=held.held_at_s,
        restore_code=restore_code,
        restored_at_s=restored_at_s,
    )
