"""throttling.regional: per-region token buckets, priority first, bounded queues, no loss."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from throttling.regional import RegionalGate, RegionalPolicy, RegionCapacity, ReleasedAlert

REGIONS = ("north", "central", "south")


def gate(
    rate_per_s: float = 1.0,
    burst: int = 2,
    *,
    max_queued: int = 100,
    max_priority_queued: int = 100,
    unknown_region: str | None = None,
    high_priority: frozenset[str] = frozenset(),
) -> RegionalGate[str]:
    capacity = RegionCapacity(
        rate_per_s=rate_per_s,
        burst=burst,
        max_queued=max_queued,
        max_priority_queued=max_priority_queued,
    )
    return RegionalGate(
        RegionalPolicy(
            regions=dict.fromkeys(REGIONS, capacity),
            unknown_region=unknown_region,
            high_priority_codes=high_priority,
        )
    )


def items(released: list[ReleasedAlert[str]]) -> list[str]:
    return [r.item for r in released]


def test_under_capacity_alerts_go_at_once() -> None:
    g = gate(burst=2)
    assert g.offer("north", "a", False, 0.0)
    assert g.offer("north", "b", False, 0.0)
    assert g.poll(0.0) == [ReleasedAlert("a", 0.0, "north"), ReleasedAlert("b", 0.0, "north")]


def test_above_capacity_alerts_wait_and_their_delay_is_measured() -> None:
    g = gate(rate_per_s=2.0, burst=1)
    for name in "abc":
        g.offer("south", name, False, 0.0)
    assert items(g.poll(0.0)) == ["a"]
    assert g.depth("south") == 2
    assert g.oldest_delay_s("south", 0.4) == pytest.approx(0.4)
    assert g.next_release_s(0.0) == pytest.approx(0.5)
    assert g.poll(0.4) == []
    assert g.poll(0.5) == [ReleasedAlert("b", 0.5, "south")]
    assert g.poll(1.0) == [ReleasedAlert("c", 1.0, "south")]
    assert g.depth("south") == 0
    assert g.oldest_delay_s("south", 5.0) == 0.0
    assert g.next_release_s(5.0) is None


@pytest.mark.parametrize("start_s", [0.0, 100.0, 1_800_000_000.0])
@pytest.mark.parametrize("rate_per_s", [3.3, 7.0, 1000.0])
def test_a_poll_at_next_release_s_releases_something(start_s: float, rate_per_s: float) -> None:
    # Regression (issue #12): now_s + wait rounded to just before the token was whole; a poll
    # there released nothing and the gate named the same time again, for ever on a
    # simulated clock.
    g = gate(rate_per_s=rate_per_s, burst=2, max_queued=100)
    for n in range(100):
        assert g.offer("north", str(n), False, start_s)
    released = len(g.poll(start_s))
    now_s = start_s
    while (at_s := g.next_release_s(now_s)) is not None:
        assert at_s >= now_s
        batch = g.poll(at_s)
        assert batch, f"nothing released at next_release_s = {at_s!r}"
        released += len(batch)
        now_s = at_s
    assert released == 100


def test_priority_alerts_go_first() -> None:
    g = gate(rate_per_s=1.0, burst=1)
    g.offer("central", "n1", False, 0.0)
    g.offer("central", "n2", False, 0.0)
    g.offer("central", "p1", True, 0.5)
    g.offer("central", "p2", True, 0.6)
    assert items(g.poll(1.0)) == ["p1"]
    assert items(g.poll(2.0)) == ["p2"]
    assert items(g.poll(3.0)) == ["n1"]
    assert items(g.poll(4.0)) == ["n2"]


def test_regions_have_separate_capacity() -> None:
    g = gate(rate_per_s=1.0, burst=1)
    for region in REGIONS:
        g.offer(region, f"{region}-1", False, 0.0)
        g.offer(region, f"{region}-2", False, 0.0)
    assert sorted(items(g.poll(0.0))) == ["central-1", "north-1", "south-1"]


def test_a_full_queue_refuses_and_keeps_nothing() -> None:
    g = gate(rate_per_s=1.0, burst=1, max_queued=2, max_priority_queued=1)
    assert g.offer("north", "a", False, 0.0)
    assert g.offer("north", "b", False, 0.0)
    assert not g.offer("north", "c", False, 0.0)
    assert g.depth("north") == 2
    assert g.refused == 1
    # The priority queue has its own bound: a full normal queue does not block it.
    assert g.offer("north", "p", True, 0.0)
    assert not g.offer("north", "q", True, 0.0)
    assert items(g.poll(0.0)) == ["p"]
    # Backpressure contract: poll frees room, then the refused alert is offered again.
    assert g.offer("north", "q", True, 0.5)
    assert items(g.poll(1.0)) == ["q"]
    assert items(g.poll(2.0)) == ["a"]
    assert g.offer("north", "c", False, 2.0)


def test_take_passes_at_once_while_a_token_is_free_and_nothing_of_its_rank_waits() -> None:
    g = gate(rate_per_s=1.0, burst=2)
    assert g.take("north", False, 0.0) == "north"
    assert g.take("north", False, 0.0) == "north"
    assert g.take("north", False, 0.0) is None  # no token left: offer it
    g.offer("north", "n", False, 0.0)
    assert g.take("north", False, 5.0) is None  # a normal alert waits: no overtaking
    assert g.take("north", True, 5.0) == "north"  # a priority alert may overtake it
    g.offer("north", "p", True, 5.0)
    assert g.take("north", True, 5.0) is None  # a priority alert waits
    assert g.take(None, False, 0.0) == "unlimited"
    assert items(g.poll(6.0)) == ["p", "n"]


def test_discard_removes_queued_items_of_another_owner() -> None:
    g = gate(rate_per_s=1.0, burst=1)
    for name in ("p0-a", "p1-b", "p0-c"):
        g.offer("north", name, False, 0.0)
    g.offer("south", "p1-d", True, 0.0)
    g.offer(None, "p1-e", False, 0.0)
    assert g.discard(lambda item: item.startswith("p0")) == 3
    assert (g.depth("north"), g.depth("south"), g.depth(None)) == (2, 0, 0)
    assert items(g.poll(0.0)) == ["p0-a"]
    assert items(g.poll(1.0)) == ["p0-c"]


def test_alerts_with_no_region_use_the_unlimited_lane_by_default() -> None:
    g = gate(rate_per_s=1.0, burst=1)
    for n in range(50):
        assert g.offer(None, f"x{n}", False, 0.0)
    g.offer("elsewhere", "y", True, 0.0)
    released = g.poll(0.25)
    assert items(released) == ["y"] + [f"x{n}" for n in range(50)]
    assert {r.region for r in released} == {"unlimited"}
    assert released[0].delay_s == 0.25


def test_alerts_with_no_region_can_be_charged_to_a_region() -> None:
    g = gate(rate_per_s=1.0, burst=1, unknown_region="central")
    g.offer(None, "a", False, 0.0)
    g.offer("atlantis", "b", False, 0.0)
    assert g.depth(None) == g.depth("central") == 2
    assert g.poll(0.0) == [ReleasedAlert("a", 0.0, "central")]


def test_set_policy_keeps_queued_alerts() -> None:
    g = gate(rate_per_s=1.0, burst=1)
    for name in "abc":
        g.offer("north", name, False, 0.0)
        g.offer("south", name.upper(), False, 0.0)
    g.poll(0.0)
    faster = RegionCapacity(rate_per_s=100.0, burst=10)
    # north is faster now; south is gone, its alerts go to the unlimited lane.
    g.set_policy(RegionalPolicy(regions={"north": faster, "central": faster}))
    assert g.policy.regions["north"] is faster
    released = g.poll(1.0)
    assert sorted((r.region, r.item) for r in released) == [
        ("north", "b"),
        ("north", "c"),
        ("unlimited", "B"),
        ("unlimited", "C"),
    ]
    assert all(r.delay_s == 1.0 for r in released)


def test_high_priority_codes_are_compared_in_canonical_form() -> None:
    g = gate(high_priority=frozenset({"0x8f3f"}))
    assert g.is_high_priority("8F3F")
    assert not g.is_high_priority("8F35")


def test_time_going_back_adds_no_capacity() -> None:
    g = gate(rate_per_s=1.0, burst=1)
    for name in "abc":
        g.offer("north", name, False, 10.0)
    assert items(g.poll(10.0)) == ["a"]
    assert g.poll(5.0) == []
    assert items(g.poll(11.0)) == ["b"]


def test_policy_validation_names_the_setting() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        RegionCapacity(rate_per_s=0.0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        RegionCapacity(rate_per_s=1.0, burst=0)
    with pytest.raises(ValueError, match="max_queued"):
        RegionCapacity(rate_per_s=1.0, burst=1, max_queued=0)
    with pytest.raises(ValueError, match="unknown_region"):
        RegionalPolicy(regions={}, unknown_region="north")
    with pytest.raises(ValueError, match="unlimited"):
        RegionalPolicy(regions={"unlimited": RegionCapacity(rate_per_s=1.0, burst=1)})


# --- properties ------------------------------------------------------------------------------

# (what, gap s, region index (3: no region), priority); a poll ignores the last two.
Op = tuple[str, float, int, bool]
_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("offer"),
            st.sampled_from([0.0, 0.0, 0.1, 0.3]),
            st.integers(0, 3),
            st.booleans(),
        ),
        st.tuples(
            st.just("poll"), st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5]), st.just(0), st.just(False)
        ),
    ),
    max_size=120,
)
_capacity = st.builds(
    RegionCapacity,
    rate_per_s=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    burst=st.integers(1, 4),
    max_queued=st.integers(1, 6),
    max_priority_queued=st.integers(1, 6),
)


class _Trace:
    """Replays ops against a gate, re-offering refused alerts after each poll
    (the backpressure contract), then drains; records every release."""

    def __init__(self, g: RegionalGate[int], ops: list[Op], *, take: bool = False) -> None:
        # take: try `take` first for every alert, as the worker does, and `offer` only if
        # it does not pass (a pass counts as a release by a poll at the same time).
        self._take = take
        self.offered: dict[int, tuple[str | None, bool]] = {}
        self.accepted_at: dict[int, float] = {}
        # Steps order offers and polls that share a timestamp.
        self.accepted_step: dict[int, int] = {}
        self.poll_steps: list[int] = []
        self.polls: list[tuple[float, list[ReleasedAlert[int]]]] = []
        waiting: list[int] = []  # refused, to be offered again, in order
        t = 0.0
        for what, gap_s, region_index, priority in ops:
            t += gap_s
            if what == "offer":
                n = len(self.offered)
                region = REGIONS[region_index] if region_index < len(REGIONS) else None
                self.offered[n] = (region, priority)
                if waiting or not self._offer(g, n, t):
                    waiting.append(n)  # behind earlier refused ones: the consumer stopped
            else:
                self._poll(g, t)
                waiting = self._retry(g, waiting, t)
        for _ in range(10_000):
            if not waiting and all(g.depth(r) == 0 for r in (*REGIONS, None)):
                break
            t += 0.5
            self._poll(g, t)
            waiting = self._retry(g, waiting, t)
        self.end_s = t

    def _offer(self, g: RegionalGate[int], n: int, t: float) -> bool:
        region, priority = self.offered[n]
        lane = g.take(region, priority, t) if self._take else None
        if lane is not None:
            self.accepted_at[n] = t
            self.accepted_step[n] = len(self.accepted_step) + len(self.poll_steps)
            self.poll_steps.append(len(self.accepted_step) + len(self.poll_steps))
            self.polls.append((t, [ReleasedAlert(n, 0.0, lane)]))
            return True
        if g.offer(region, n, priority, t):
            self.accepted_at[n] = t
            self.accepted_step[n] = len(self.accepted_step) + len(self.poll_steps)
            return True
        return False

    def _retry(self, g: RegionalGate[int], waiting: list[int], t: float) -> list[int]:
        for i, n in enumerate(waiting):
            if not self._offer(g, n, t):
                return waiting[i:]
        return []

    def _poll(self, g: RegionalGate[int], t: float) -> None:
        self.poll_steps.append(len(self.accepted_step) + len(self.poll_steps))
        self.polls.append((t, g.poll(t)))


@settings(max_examples=300, deadline=None)
@given(_ops, _capacity, st.booleans())
def test_nothing_offered_is_lost(ops: list[Op], capacity: RegionCapacity, take: bool) -> None:
    g: RegionalGate[int] = RegionalGate(RegionalPolicy(regions=dict.fromkeys(REGIONS, capacity)))
    trace = _Trace(g, ops, take=take)
    released = [r.item for _, batch in trace.polls for r in batch]
    assert sorted(released) == list(range(len(trace.offered)))
    for t, batch in trace.polls:
        for r in batch:
            assert r.delay_s == pytest.approx(t - trace.accepted_at[r.item])


@settings(max_examples=300, deadline=None)
@given(_ops, _capacity, st.booleans())
def test_priority_alerts_never_wait_behind_normal_ones(
    ops: list[Op], capacity: RegionCapacity, take: bool
) -> None:
    g: RegionalGate[int] = RegionalGate(RegionalPolicy(regions=dict.fromkeys(REGIONS, capacity)))
    trace = _Trace(g, ops, take=take)
    order = {r.item: i for i, r in enumerate(r for _, batch in trace.polls for r in batch)}
    for step, (_, batch) in zip(trace.poll_steps, trace.polls, strict=True):
        for r in batch:
            region, priority = trace.offered[r.item]
            if priority:
                continue
            # Every priority alert of the region queued before this poll went out before it.
            for n, (other_region, other_priority) in trace.offered.items():
                if other_priority and other_region == region and trace.accepted_step[n] < step:
                    assert order[n] < order[r.item]
    # And each queue keeps its arrival order.
    lanes: dict[tuple[str | None, bool], list[int]] = defaultdict(list)
    for _, batch in trace.polls:
        for r in batch:
            lanes[trace.offered[r.item]].append(r.item)
    for lane in lanes.values():
        assert lane == sorted(lane, key=lambda n: trace.accepted_step[n])


@settings(max_examples=300, deadline=None)
@given(_ops, _capacity, st.booleans())
def test_released_rate_stays_within_rate_times_t_plus_burst(
    ops: list[Op], capacity: RegionCapacity, take: bool
) -> None:
    g: RegionalGate[int] = RegionalGate(RegionalPolicy(regions=dict.fromkeys(REGIONS, capacity)))
    trace = _Trace(g, ops, take=take)
    for region in REGIONS:
        counts = [(t, sum(1 for r in batch if r.region == region)) for t, batch in trace.polls]
        for i, (start, _) in enumerate(counts):
            total = 0
            for end, n in counts[i:]:
                total += n
                assert total <= capacity.rate_per_s * (end - start) + capacity.burst + 1e-9


def _take_straightforward(
    g: RegionalGate[int], region: str | None, priority: bool, now_s: float
) -> str | None:
    # `RegionalGate.take` as first written, refilling on every call: the reference for its
    # shortcut of skipping `refill` when the time has not moved on.
    lane = g._lanes.get(region) if region is not None else None
    if lane is None:
        lane = g._fallback
    if lane.priority or (lane.normal and not priority):
        return None
    if lane is not g._unlimited:
        lane.refill(now_s)
        if lane.tokens < 1.0:
            return None
        lane.tokens -= 1.0
    return lane.name


@settings(max_examples=300, deadline=None)
@given(_ops, _capacity)
def test_take_answers_as_if_it_refilled_every_time(ops: list[Op], capacity: RegionCapacity) -> None:
    policy = RegionalPolicy(regions=dict.fromkeys(REGIONS, capacity))
    fast: RegionalGate[int] = RegionalGate(policy)
    reference: RegionalGate[int] = RegionalGate(policy)
    t = 0.0
    for n, (what, gap_s, region_index, priority) in enumerate(ops):
        t += gap_s
        region = REGIONS[region_index] if region_index < len(REGIONS) else None
        if what == "offer":
            answer = fast.take(region, priority, t)
            assert answer == _take_straightforward(reference, region, priority, t)
            if answer is None:
                assert fast.offer(region, n, priority, t) == reference.offer(region, n, priority, t)
        else:
            assert fast.poll(t) == reference.poll(t)
        for name in REGIONS:
            mine, theirs = fast._lanes[name], reference._lanes[name]
            assert (mine.tokens, mine.last_s) == (theirs.tokens, theirs.last_s)
