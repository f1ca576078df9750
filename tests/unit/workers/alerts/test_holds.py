"""workers.alerts.holds: the offsets held alerts keep from the commit, and the outlet."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.consumer import TopicPartition
from broker.schemas import DeviceAlert, Region
from throttling import CorrelationPolicy, RegionalPolicy, RegionCapacity
from workers.alerts.holds import HeldOffsets, Outlet, Pending

P0 = TopicPartition("in", 0)
P1 = TopicPartition("in", 1)
METER = "00-DB-12-34-56-78-90-A0"


def test_the_floor_is_the_lowest_offset_still_held_per_partition() -> None:
    held = HeldOffsets()
    assert held.floor() == {}
    for offset in (3, 5, 9):
        held.hold(P0, offset)
    held.hold(P1, 4)
    assert held.floor() == {P0: 3, P1: 4}
    held.release(P0, 5)  # released out of order: the floor stays
    assert held.floor() == {P0: 3, P1: 4}
    held.release(P0, 3)  # 3 and the already released 5 go
    assert held.floor() == {P0: 9, P1: 4}
    held.drop([P1])
    assert (held.floor(), held.held) == ({P0: 9}, 1)
    held.release(P1, 4)  # of a dropped partition: ignored
    held.release(P0, 9)
    assert (held.floor(), held.held) == ({}, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=60), st.randoms(use_true_random=False))
def test_the_floor_matches_a_naive_minimum(gaps: list[int], rnd: random.Random) -> None:
    held = HeldOffsets()
    offsets, offset = [], 0
    for gap in gaps:
        offset += gap + 1
        held.hold(P0, offset)
        offsets.append(offset)
    order = list(offsets)
    rnd.shuffle(order)
    remaining = set(offsets)
    for offset in order:
        assert held.floor().get(P0) == (min(remaining) if remaining else None)
        held.release(P0, offset)
        remaining.discard(offset)
    assert held.floor() == {}
    assert held.held == 0


def _item(
    offset: int,
    *,
    code: str = "8F1F",
    region: Region | None = "north",
    priority: bool = False,
    tp: TopicPartition = P0,
    since_s: float = 0.0,
) -> Pending:
    alert = DeviceAlert(
        device_id=METER, alert_code=code, recipients=["u"], region=region, raised_at_ms=0
    )
    return Pending(
        alert,
        b"v",
        tp,
        offset,
        region=region or "unknown",
        label=code,
        priority=priority,
        since_s=since_s,
        device_key=METER,
        code=code,
    )


def _capacity(rate: float = 1.0, burst: int = 1, max_queued: int = 10) -> RegionalPolicy:
    capacity = RegionCapacity(rate_per_s=rate, burst=burst, max_queued=max_queued)
    return RegionalPolicy(regions={"north": capacity})


def test_with_nothing_configured_every_alert_goes_at_once() -> None:
    outlet = Outlet()
    assert not outlet.active
    assert outlet.offer(_item(1), 0.0) == ""
    assert outlet.held.floor() == {}


def test_regional_capacity_delays_holds_and_releases_priority_first() -> None:
    outlet = Outlet()
    outlet.set_capacity(_capacity(rate=1.0, burst=1))
    assert outlet.offer(_item(1), 0.0) == "north"  # under capacity: passes at once
    assert outlet.offer(_item(2), 0.0) is None
    assert outlet.offer(_item(3), 0.0) is None
    assert outlet.offer(_item(4, priority=True), 0.0) is None
    delays: dict[str, list[float]] = {}
    ready, dropped, late = outlet.due(0.0, delays)
    assert (ready, dropped, late) == ([], [], 0)
    assert outlet.held.floor() == {P0: 2}
    ready, _, _ = outlet.due(1.0, delays)
    assert [i.offset for i in ready] == [4]  # the priority alert first
    assert outlet.held.floor() == {P0: 2}
    ready, _, _ = outlet.due(2.0, delays)
    assert [i.offset for i in ready] == [2]
    assert outlet.held.floor() == {P0: 3}
    ready, _, _ = outlet.due(3.0, delays)
    assert [i.offset for i in ready] == [3]
    assert outlet.held.floor() == {}
    assert delays == {"north": [1.0, 2.0, 3.0]}


def test_a_full_queue_overflows_and_stops_the_input_until_there_is_room() -> None:
    outlet = Outlet()
    outlet.set_capacity(_capacity(rate=1.0, burst=1, max_queued=1))
    released = [1] if outlet.offer(_item(1), 0.0) else []
    for offset in range(2, 6):
        outlet.offer(_item(offset), 0.0)
    assert not outlet.wants_input()
    for t in range(10):
        ready, _, _ = outlet.due(float(t), {})
        released += [i.offset for i in ready]
    assert released == [1, 2, 3, 4, 5]  # in order, none lost
    assert outlet.wants_input()
    assert outlet.held.held == 0


def test_the_mp102_rule_holds_an_outage_and_a_restore_drops_it() -> None:
    outlet = Outlet()
    outlet.set_rule(CorrelationPolicy(enabled=True, watch_s=100, hold_s=50))
    outlet.rule.note_firmware_activation(METER, 0.0)
    assert outlet.offer(_item(7, code="AD1"), 10.0) is None
    assert outlet.held.floor() == {P0: 7}
    assert outlet.offer(_item(8, code="8F35"), 20.0) == ""  # the restore goes on at once
    ready, dropped, late = outlet.due(21.0, {})
    assert (ready, [h.item.offset for h in dropped], late) == ([], [7], 0)
    assert outlet.held.floor() == {}


def test_a_held_outage_without_restore_goes_to_the_regional_queue_when_its_hold_ends() -> None:
    outlet = Outlet()
    outlet.set_rule(CorrelationPolicy(enabled=True, watch_s=100, hold_s=50))
    outlet.set_capacity(_capacity(rate=1.0, burst=1))
    outlet.rule.note_firmware_activation(METER, 0.0)
    outlet.offer(_item(6), 0.0)  # takes the token
    assert outlet.offer(_item(7, code="AD1", since_s=10.0), 10.0) is None
    delays: dict[str, list[float]] = {}
    ready, _, late = outlet.due(60.0, delays)
    assert ([i.offset for i in ready], late) == ([7], 1)  # a token came back meanwhile
    assert delays == {"north": [50.0]}  # the MP102 hold counts in the delay


def test_discard_forgets_what_another_worker_owns_now() -> None:
    outlet = Outlet()
    outlet.set_capacity(_capacity(rate=1.0, burst=1, max_queued=1))
    outlet.set_rule(CorrelationPolicy(enabled=True))
    outlet.rule.note_firmware_activation(METER, 0.0)
    outlet.offer(_item(1, tp=P1), 0.0)
    outlet.offer(_item(2, tp=P1), 0.0)  # overflow
    outlet.offer(_item(3, code="AD1", tp=P1), 0.0)  # MP102
    outlet.offer(_item(4, tp=P0), 0.0)
    outlet.discard([P1])
    assert outlet.held.floor() == {P0: 4}
    ready: list[int] = []
    for t in range(5):
        ready += [i.offset for i in outlet.due(float(t), {})[0]]
    assert ready == [4]
    assert outlet.wants_input()


def test_a_priority_alert_overtakes_normal_alerts_waiting_in_the_overflow() -> None:
    outlet = Outlet()
    outlet.set_capacity(_capacity(rate=1.0, burst=1, max_queued=1))
    for offset in (0, 1, 2, 3):
        outlet.offer(_item(offset), 0.0)  # 0 passes, 1 queued, 2 and 3 in the overflow
    outlet.offer(_item(4, priority=True), 0.0)
    released: list[int] = []
    for t in range(6):
        released += [i.offset for i in outlet.due(float(t), {})[0]]
    assert released == [4, 1, 2, 3]
