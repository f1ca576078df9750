"""Traffic generation and the network model: seeded, deterministic, at the configured rates."""

from __future__ import annotations

import math

from workers.tools.loadtest.generator import (
    AlertEvent,
    FlowStart,
    RequestEvent,
    RequestIds,
    Shard,
    Traffic,
    fleet_device,
    site_device,
)
from workers.tools.loadtest.network import NetworkModel, Timeline, per_command_failure
from workers.tools.loadtest.scenario import load_scenario


def _events(name: str, seed: int, scale: float = 1.0, duration_s: float = 5.0) -> list[object]:
    return list(Traffic(load_scenario(name), seed=seed, scale=scale, duration_s=duration_s))


def test_same_seed_gives_identical_traffic() -> None:
    for name in ("install-day", "alert-storm", "runaway-user", "firmware-campaign"):
        assert _events(name, 42) == _events(name, 42)


def test_shards_together_give_the_single_process_traffic_event_for_event() -> None:
    for name in ("install-day", "alert-storm", "runaway-user", "noisy-neighbour"):
        scenario = load_scenario(name)
        whole = list(Traffic(scenario, seed=5, scale=1.0, duration_s=4.0))
        for count in (2, 3):
            shards = [Shard(index=i, count=count, partitions=6) for i in range(count)]
            parts = [
                list(Traffic(scenario, seed=5, scale=1.0, duration_s=4.0, shard=shard))
                for shard in shards
            ]
            assert sorted(map(repr, (e for part in parts for e in part))) == sorted(
                map(repr, whole)
            )
            assert all(part for part in parts) or name != "install-day"


def test_a_user_belongs_to_one_shard_and_its_partition_decides_which() -> None:
    from broker.producer import partition_for_key

    shards = [Shard(index=i, count=3, partitions=6) for i in range(3)]
    for n in range(50):
        user = f"90-B3-D5-1F-30-{n:02X}-00-00"
        owners = [s.index for s in shards if s.owns_user(user)]
        assert len(owners) == 1
        p = partition_for_key(user.encode(), 6)
        assert p in shards[owners[0]].response_partitions
    assert sorted(p for s in shards for p in s.response_partitions) == list(range(6))


def test_a_shard_needs_a_partition_of_its_own() -> None:
    import pytest

    with pytest.raises(ValueError, match="count <= partitions"):
        Shard(index=0, count=4, partitions=3)


def test_different_seed_gives_different_traffic() -> None:
    assert _events("install-day", 1) != _events("install-day", 2)


def test_events_come_in_time_order_and_within_the_duration() -> None:
    events = _events("install-day", 7, duration_s=4.0)
    times = [e.t_s for e in events]  # type: ignore[attr-defined]
    assert times == sorted(times)
    assert times[0] >= 0
    assert times[-1] < 4.0


def test_due_hands_out_each_event_once() -> None:
    scenario = load_scenario("runaway-user")
    traffic = Traffic(scenario, seed=3, scale=1.0, duration_s=3.0)
    out = []
    t = 0.0
    while traffic.next_t_s is not None:
        t += 0.01
        out += traffic.due(t)
    assert out == _events("runaway-user", 3, duration_s=3.0)


def test_rates_follow_the_scenario_and_scale() -> None:
    events = _events("runaway-user", 3, scale=2.0, duration_s=10.0)
    runaway = [e for e in events if isinstance(e, RequestEvent) and e.source == "runaway"]
    reads = [e for e in events if isinstance(e, RequestEvent) and e.source == "read"]
    # 300/s from t=0.5 and 150/s, both doubled, over 10 s: Poisson, so within 5 sigma
    assert abs(len(runaway) - 5700) < 5 * math.sqrt(5700)
    assert abs(len(reads) - 3000) < 5 * math.sqrt(3000)
    assert {e.srv for e in runaway} == {"7.2"}
    assert {e.command_variant for e in runaway} == {4}
    # two readers share the rate: each a Poisson stream of half of it
    users = [e.user_id for e in reads]
    for user in set(users):
        assert abs(users.count(user) - 1500) < 5 * math.sqrt(1500)


def test_installs_start_per_region_and_storms_come_from_rogue_devices() -> None:
    events = _events("install-day", 7, duration_s=10.0)
    starts = [e for e in events if isinstance(e, FlowStart)]
    assert {e.region for e in starts} == {"north", "central", "south"}
    storm = [
        e for e in _events("alert-storm", 11) if isinstance(e, AlertEvent) and e.source == "storm"
    ]
    assert len({e.device_id for e in storm}) == 5
    assert all(1.0 <= e.t_s < 5.0 and e.alert_code == "8F1F" for e in storm)


def test_profile_reads_come_in_bursts() -> None:
    events = _events("install-day", 7, duration_s=40.0)
    profile = [e.t_s for e in events if isinstance(e, RequestEvent) and e.source == "profile"]
    # 1000 per burst at t = 2 s and 32 s (a half hour compressed 60 times), 1 s each
    assert len(profile) == 2000
    assert all(2 <= t < 3 or 32 <= t < 33 for t in profile)


def test_request_ids_increase_per_pair_and_recognise_the_run() -> None:
    ids = RequestIds.for_run(1_800_000_000)
    a1 = ids.next("90-B3-D5-1F-30-01-00-00", "00-DB-01-00-00-00-01-00")
    a2 = ids.next("90-B3-D5-1F-30-01-00-00", "00-DB-01-00-00-00-01-00")
    b1 = ids.next("90-B3-D5-1F-30-01-00-00", "00-DB-01-00-00-00-02-00")
    assert int(a2.rpartition(":")[2]) == int(a1.rpartition(":")[2]) + 1
    assert (ids.seq_of(a1), ids.seq_of(b1), ids.seq_of(a2)) == (1, 1, 2)
    later = RequestIds.for_run(1_800_000_001)
    assert later.seq_of(a1) is None
    later_rid = later.next("90-B3-D5-1F-30-01-00-00", "00-DB-01-00-00-00-01-00")
    assert int(later_rid.rpartition(":")[2]) > int(a2.rpartition(":")[2])


def test_device_ids_are_eui64_and_distinct() -> None:
    from workers.duis.request_id import split_request_id

    ids = {
        fleet_device("north", 5),
        fleet_device("south", 5),
        site_device("north", 5, "esme"),
        site_device("north", 5, "gsme"),
    }
    assert len(ids) == 4
    for d in ids:
        assert split_request_id(f"90-B3-D5-1F-30-01-00-00:{d}:1") is not None


def test_network_answers_depend_on_seed_and_key_not_on_order() -> None:
    model = NetworkModel(load_scenario("install-day"), seed=7)
    keys = [f"dev{n}:8.11:1:1" for n in range(200)]
    first = [model.answer(k, "north", 1) for k in keys]
    again = [model.answer(k, "north", 1) for k in reversed(keys)][::-1]
    assert first == again
    other = NetworkModel(load_scenario("install-day"), seed=8)
    assert [other.answer(k, "north", 1) for k in keys] != first


def test_network_failure_rate_per_install() -> None:
    scenario = load_scenario("install-day")
    model = NetworkModel(scenario, seed=7)
    p = model.failure_probability("north")
    assert math.isclose(1 - (1 - p) ** 13, 0.1667, rel_tol=1e-9)
    assert per_command_failure(0.0) == 0.0
    # transform (CV 4) and the DCC's own service (CV 8) never fail, and answer quickly
    answers = [model.answer(f"k{n}", "north", cv) for n in range(500) for cv in (4, 8)]
    assert all(a.ok and a.delay_s < 1.0 for a in answers)
    device = [model.answer(f"k{n}", "north", 1) for n in range(20_000)]
    failures = sum(not a.ok for a in device)
    assert abs(failures - 20_000 * p) < 5 * math.sqrt(20_000 * p)
    delays = sorted(a.delay_s for a in device)
    assert 0.2 < delays[len(delays) // 2] < 0.3  # median 250 ms
    assert 0.9 < delays[int(len(delays) * 0.99)] < 1.5  # p99 1200 ms


def test_timeline_hands_out_due_items_in_order() -> None:
    tl: Timeline[str] = Timeline()
    tl.add(2.0, "b")
    tl.add(1.0, "a")
    tl.add(3.0, "c")
    assert tl.due(2.5) == [(1.0, "a"), (2.0, "b")]
    assert len(tl) == 1
