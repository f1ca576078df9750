"""Alerts that storm protection forwarded but that may not go out yet, and the offsets they
hold back.

After storm protection (SECMP0062) a forwarded alert passes two optional stages before it is
written to `dcc.alerts.outbound`:

1. the MP102 rule (`throttling.FirmwareActivationRule`): a power-outage alert from a device
   that was just sent an 11.3 Activate Firmware is held, and dropped if its restore alert
   follows;
2. regional capacity (`throttling.RegionalGate`): per CSP region at most `rate_per_s`
   alerts a second; above it, excluded and high-priority codes first, the rest delayed.

`Outlet` chains them. Every alert it holds keeps its input offset in `HeldOffsets`, and the
loop commits no offset past the lowest one held (`workers.runtime.loop.HoldingProcessor`): a crash
or a rebalance redelivers every alert that was still waiting (at-least-once), never loses
one. When a region's queue is full the alert waits in an overflow list and `wants_input`
turns False, so the loop pauses its partitions until the queue has room: backpressure into
Kafka, nothing dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from broker.consumer import TopicPartition
from broker.schemas import DeviceAlert
from throttling import (
    CorrelationPolicy,
    FirmwareActivationRule,
    HeldAlert,
    RegionalGate,
    RegionalPolicy,
)

__all__ = ["HeldOffsets", "Outlet", "Pending"]


class Pending:
    """A forwarded alert on its way out: what to write, where it was read, how it ranks.

    device_key and code: canonical device ID and alert code for the MP102 rule (set only
    when the rule is on). since_s: when it was forwarded by storm protection.
    """

    __slots__ = (
        "alert",
        "code",
        "device_key",
        "label",
        "offset",
        "priority",
        "region",
        "since_s",
        "tp",
        "value",
    )

    def __init__(
        self,
        alert: DeviceAlert,
        value: bytes,
        tp: TopicPartition,
        offset: int,
        *,
        region: str,
        label: str,
        priority: bool,
        since_s: float,
        device_key: str = "",
        code: str = "",
    ) -> None:
        self.alert = alert
        self.value = value
        self.tp = tp
        self.offset = offset
        self.region = region
        self.label = label
        self.priority = priority
        self.since_s = since_s
        self.device_key = device_key
        self.code = code


class HeldOffsets:
    """Input offsets still held, per partition; `floor()` is what the loop commits up to.

    Offsets of a partition are held in increasing order (a partition's records are decided
    in order), and released in any order: each partition keeps a FIFO of its held offsets
    and a set of those released but not yet at the front, so every call is O(1) amortised.
    """

    __slots__ = ("_queues", "_released", "held")

    def __init__(self) -> None:
        self._queues: dict[TopicPartition, deque[int]] = {}
        self._released: dict[TopicPartition, set[int]] = {}
        self.held = 0
        """How many offsets are held now."""

    def hold(self, tp: TopicPartition, offset: int) -> None:
        """Hold `offset` of `tp` (each record at most once, in increasing offset order)."""
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
            self._released[tp] = set()
        queue.append(offset)
        self.held += 1

    def release(self, tp: TopicPartition, offset: int) -> None:
        """The record at `offset` of `tp` is written (or dropped by a rule): held no more."""
        queue = self._queues.get(tp)
        if queue is None:
            return  # its partition was dropped meanwhile
        self.held -= 1
        if queue[0] == offset:
            queue.popleft()
            released = self._released[tp]
            while queue and queue[0] in released:
                released.remove(queue.popleft())
        else:
            self._released[tp].add(offset)

    def floor(self) -> dict[TopicPartition, int]:
        """Per partition, the lowest offset still held; partitions with none are absent."""
        return {tp: queue[0] for tp, queue in self._queues.items() if queue}

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget everything held for `partitions` (they are another worker's now)."""
        for tp in partitions:
            queue = self._queues.pop(tp, None)
            released = self._released.pop(tp, set())
            if queue is not None:
                self.held -= len(queue) - len(released)


class Outlet:
    """The MP102 rule, then regional capacity, for alerts storm protection forwarded.

    Both are off until configured (`set_rule`, `set_capacity`); while both are off, `offer`
    answers True at once and holds nothing. See the module docstring.
    """

    __slots__ = ("_gate_on", "_overflow", "_priority_overflow", "_rule_on", "gate", "held", "rule")

    def __init__(self) -> None:
        self.rule: FirmwareActivationRule[Pending] = FirmwareActivationRule()
        self.gate: RegionalGate[Pending] = RegionalGate(RegionalPolicy())
        self.held = HeldOffsets()
        self._overflow: deque[Pending] = deque()
        self._priority_overflow = 0  # priority alerts in the overflow
        self._rule_on = False
        self._gate_on = False

    @property
    def active(self) -> bool:
        """Whether a new alert may be held (the rule or regional capacity is on)."""
        return self._rule_on or self._gate_on

    @property
    def rule_on(self) -> bool:
        """Whether the MP102 rule is on."""
        return self._rule_on

    def set_rule(self, policy: CorrelationPolicy) -> None:
        """Replace the MP102 rule's settings (off: its held alerts go on at the next `due`)."""
        self.rule.set_policy(policy)
        self._rule_on = policy.enabled

    def set_capacity(self, policy: RegionalPolicy) -> None:
        """Replace the regional capacities; none configured: new alerts are not limited,
        and those waiting go at the next `due`."""
        self.gate.set_policy(policy)
        self._gate_on = bool(policy.regions)

    def wants_input(self) -> bool:
        """False while alerts wait for room in a full regional queue (backpressure)."""
        return not self._overflow

    def offer(self, item: Pending, now_s: float) -> str | None:
        """Where `item` goes: None, it is held and comes back from `due` (or is dropped
        there as an MP102 false alarm); otherwise write it now: "" with no regional
        capacity configured, else the name of the regional lane that let it pass."""
        if self._rule_on and self.rule.offer(item.device_key, item.code, item, now_s) == "held":
            self.held.hold(item.tp, item.offset)
            return None
        if not self._gate_on:
            return ""
        lane = self.take(item.alert.region, item.priority, now_s)
        if lane is None:
            self.wait(item, now_s)
        return lane

    def take(self, region: str | None, priority: bool, now_s: float) -> str | None:
        """The regional lane that lets an alert pass at once, or None (then `wait` it):
        the fast path while its region is under capacity. Regional capacity must be on."""
        if self._overflow and (not priority or self._priority_overflow):
            return None  # it would overtake an alert of its rank waiting in the overflow
        return self.gate.take(region, priority, now_s)

    def wait(self, item: Pending, now_s: float) -> None:
        """Queue `item` for its region's capacity (it comes back from `due`)."""
        self.held.hold(item.tp, item.offset)
        self._enqueue(item, now_s)

    def _enqueue(self, item: Pending, now_s: float) -> None:
        # An alert refused by a full queue waits in the overflow, and so does every alert
        # of its rank after it, so none overtakes another of its queue; a priority alert
        # still overtakes normal alerts waiting in the overflow.
        overflow = self._overflow
        if overflow and (not item.priority or self._priority_overflow):
            overflow.append(item)
        elif not self.gate.offer(item.alert.region, item, item.priority, now_s):
            overflow.append(item)
            self._priority_overflow += item.priority

    def due(
        self, now_s: float, delays: dict[str, list[float]]
    ) -> tuple[list[Pending], list[HeldAlert[Pending]], int]:
        """The alerts to write now, those the MP102 rule dropped as false alarms, and how
        many the MP102 rule released late (now written, or queued for regional capacity).

        `delays[lane]` gets, for each alert the regional gate releases, the seconds it
        waited since storm protection forwarded it (MP102 hold and overflow included).
        """
        ready: list[Pending] = []
        correlated = self.rule.release_due(now_s)
        for held in correlated.released:
            item = held.item
            if self._gate_on:
                self._enqueue(item, now_s)  # still held: its offset stays in `held`
            else:
                ready.append(item)
                self.held.release(item.tp, item.offset)
        for held in correlated.dropped:
            self.held.release(held.item.tp, held.item.offset)
        overflow = self._overflow
        for released in self.gate.poll(now_s):
            item = released.item
            ready.append(item)
            self.held.release(item.tp, item.offset)
            lane = delays.get(released.region)
            if lane is None:
                lane = delays[released.region] = []
            lane.append(now_s - item.since_s)
        if overflow:
            gate = self.gate
            while overflow and gate.offer(
                overflow[0].alert.region, overflow[0], overflow[0].priority, now_s
            ):
                self._priority_overflow -= overflow.popleft().priority
        return ready, correlated.dropped, len(correlated.released)

    def discard(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the held alerts of `partitions` (another worker owns them now and reads
        them again from the last committed offset)."""
        gone = frozenset(partitions)

        def keep(item: Pending) -> bool:
            return item.tp not in gone

        self.gate.discard(keep)
        self.rule.discard(keep)
        self._overflow = deque(item for item in self._overflow if keep(item))
        self._priority_overflow = sum(item.priority for item in self._overflow)
        self.held.drop(gone)

    def depth(self) -> int:
        """Alerts held now: by the MP102 rule, in regional queues and in the overflow."""
        return self.held.held
