"""throttling.mp102: the MP102 firmware-activation rule for power-outage alerts."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from throttling.mp102 import CorrelationPolicy, FirmwareActivationRule

METER = "00-DB-12-34-56-78-90-A0"
OTHER = "00-DB-12-34-56-78-90-A1"


def rule(**overrides: object) -> FirmwareActivationRule[str]:
    policy = CorrelationPolicy(enabled=True, watch_s=1800, hold_s=600)
    return FirmwareActivationRule(msgspec.structs.replace(policy, **overrides))


def test_off_by_default() -> None:
    r: FirmwareActivationRule[str] = FirmwareActivationRule()
    assert not r.policy.enabled
    r.note_firmware_activation(METER, 0.0)
    assert r.offer(METER, "AD1", "outage", 1.0) == "release"
    assert r.stats().watched_now == 0
    out = r.release_due(10_000.0)
    assert out.released == []
    assert out.dropped == []


def test_default_codes() -> None:
    policy = CorrelationPolicy()
    assert policy.outage_codes == {"AD1"}
    assert policy.restore_codes == {"8F35", "8F36"}


def test_outage_after_activation_is_held_and_dropped_by_a_restore() -> None:
    r = rule()
    r.note_firmware_activation(METER, 0.0)
    assert r.offer(METER, "AD1", "outage", 200.0) == "held"
    assert r.stats().held_now == 1
    assert r.release_due(300.0).released == []
    # The restore alert itself is forwarded; the held outage is a false alarm.
    assert r.offer(METER, "0x8f36", "restored", 400.0) == "release"
    out = r.release_due(401.0)
    assert out.released == []
    (dropped,) = out.dropped
    assert (dropped.item, dropped.alert_code, dropped.held_at_s) == ("outage", "AD1", 200.0)
    assert (dropped.restore_code, dropped.restored_at_s) == ("8F36", 400.0)
    assert r.release_due(10_000.0).released == []
    assert r.stats().dropped == 1
    assert r.stats().held_now == 0


def test_a_held_outage_without_restore_is_released_late_and_unchanged() -> None:
    r = rule(hold_s=600)
    r.note_firmware_activation(METER, 0.0)
    assert r.offer(METER, "AD1", "outage", 100.0) == "held"
    assert r.release_due(699.0).released == []
    (released,) = r.release_due(700.0).released
    assert (released.item, released.held_at_s, released.restore_code) == ("outage", 100.0, None)
    assert r.stats().released_late == 1


def test_outages_outside_a_watch_pass_at_once() -> None:
    r = rule(watch_s=1800)
    assert r.offer(METER, "AD1", "no activation", 0.0) == "release"
    r.note_firmware_activation(METER, 0.0)
    assert r.offer(OTHER, "AD1", "other device", 1.0) == "release"
    assert r.offer(METER, "8F3F", "not an outage code", 1.0) == "release"
    assert r.offer(METER, "AD1", "after the watch", 1800.0) == "release"


def test_a_restore_from_another_device_or_before_the_outage_drops_nothing() -> None:
    r = rule()
    r.note_firmware_activation(METER, 0.0)
    assert r.offer(METER, "8F35", "restored first", 10.0) == "release"
    assert r.offer(METER, "AD1", "outage", 20.0) == "held"
    assert r.offer(OTHER, "8F35", "other restore", 30.0) == "release"
    out = r.release_due(620.0)
    assert [h.item for h in out.released] == ["outage"]
    assert out.dropped == []


def test_every_held_outage_of_the_device_is_dropped_by_one_restore() -> None:
    r = rule()
    r.note_firmware_activation(METER, 0.0)
    r.note_firmware_activation(OTHER, 0.0)
    for n in range(3):
        assert r.offer(METER, "AD1", f"m{n}", float(n)) == "held"
    assert r.offer(OTHER, "AD1", "o", 1.0) == "held"
    r.offer(METER, "8F35", "restored", 5.0)
    out = r.release_due(1000.0)
    assert [h.item for h in out.dropped] == ["m0", "m1", "m2"]
    assert [h.item for h in out.released] == ["o"]


def test_when_full_it_forwards_instead_of_holding() -> None:
    r = rule(max_held=2)
    r.note_firmware_activation(METER, 0.0)
    assert [r.offer(METER, "AD1", str(n), 1.0) for n in range(3)] == ["held", "held", "release"]
    assert r.stats().not_held_full == 1


def test_watches_are_bounded_and_expire() -> None:
    r = rule(max_watched=128, watch_s=100)
    for n in range(129):
        r.note_firmware_activation(f"dev-{n}", float(n) / 10)
    assert r.stats().watched_now == 127  # 128 // 64 = 2 oldest forgotten
    assert r.offer("dev-0", "AD1", "forgotten", 20.0) == "release"
    assert r.offer("dev-2", "AD1", "watched", 20.0) == "held"
    r.release_due(100.45)  # watches that began at 0.2 .. 0.4 have ended
    assert r.stats().watched_now == 124
    r.release_due(200.0)
    assert r.stats().watched_now == 0


def test_discard_forgets_held_alerts_without_releasing_or_dropping_them() -> None:
    r = rule()
    r.note_firmware_activation(METER, 0.0)
    r.note_firmware_activation(OTHER, 0.0)
    r.offer(METER, "AD1", "keep", 1.0)
    r.offer(OTHER, "AD1", "gone-1", 1.0)
    r.offer(OTHER, "AD1", "gone-2", 2.0)
    assert r.discard(lambda item: item == "keep") == 2
    assert r.stats().held_now == 1
    assert r.offer(OTHER, "8F35", "restored", 3.0) == "release"
    out = r.release_due(10_000.0)
    assert ([h.item for h in out.released], out.dropped) == (["keep"], [])
    assert r.stats().held_now == 0


def test_turning_the_rule_off_releases_everything_held() -> None:
    r = rule()
    r.note_firmware_activation(METER, 0.0)
    r.offer(METER, "AD1", "outage", 1.0)
    r.set_policy(CorrelationPolicy(enabled=False))
    assert [h.item for h in r.release_due(2.0).released] == ["outage"]
    assert r.stats().watched_now == 0
    assert r.offer(METER, "AD1", "again", 3.0) == "release"


def test_codes_are_configuration() -> None:
    r = rule(outage_codes=frozenset({"AD1"}), restore_codes=frozenset({"0x8F43"}))
    r.note_firmware_activation(METER, 0.0)
    r.offer(METER, "AD1", "outage", 1.0)
    r.offer(METER, "8F35", "not a restore here", 2.0)
    r.offer(METER, "8f43", "firmware changed", 3.0)
    assert [h.restore_code for h in r.release_due(4.0).dropped] == ["8F43"]


def test_policy_validation_names_the_setting() -> None:
    with pytest.raises(ValueError, match="hold_s"):
        CorrelationPolicy(hold_s=0)
    with pytest.raises(ValueError, match="max_held"):
        CorrelationPolicy(max_held=0)
    with pytest.raises(ValueError, match="both outage and restore"):
        CorrelationPolicy(outage_codes=frozenset({"AD1"}), restore_codes=frozenset({"ad1"}))


# (gap s, device index, what: activation, outage or restore)
_events = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 5.0, 30.0]),
        st.integers(0, 2),
        st.sampled_from(["activation", "AD1", "8F35", "8F3F"]),
    ),
    max_size=100,
)


@settings(max_examples=300, deadline=None)
@given(_events, st.integers(1, 60), st.integers(1, 60), st.integers(1, 5))
def test_every_outage_alert_is_released_or_dropped_exactly_once(
    events: list[tuple[float, int, str]], watch_s: int, hold_s: int, max_held: int
) -> None:
    r: FirmwareActivationRule[int] = FirmwareActivationRule(
        CorrelationPolicy(enabled=True, watch_s=watch_s, hold_s=hold_s, max_held=max_held)
    )
    now: list[int] = []
    later: list[int] = []
    dropped: list[int] = []
    held_at: dict[int, tuple[int, float]] = {}
    restores: list[tuple[int, float]] = []
    t = 0.0
    for n, (gap, dev, what) in enumerate(events):
        t += gap
        out = r.release_due(t)
        later.extend(h.item for h in out.released)
        dropped.extend(h.item for h in out.dropped)
        device = f"dev-{dev}"
        if what == "activation":
            r.note_firmware_activation(device, t)
            continue
        if what == "8F35":
            restores.append((dev, t))
        if r.offer(device, what, n, t) == "release":
            now.append(n)
        else:
            assert what == "AD1"
            held_at[n] = (dev, t)
    out = r.release_due(t + 10_000.0)
    later.extend(h.item for h in out.released)
    dropped.extend(h.item for h in out.dropped)
    offered = [n for n, (_, _, what) in enumerate(events) if what != "activation"]
    assert sorted(now + later + dropped) == offered
    assert set(later) | set(dropped) == set(held_at)
    # Dropped only by a restore from the same device within the hold.
    for n in dropped:
        dev, t_held = held_at[n]
        assert any(d == dev and t_held <= t_r < t_held + hold_s for d, t_r in restores)
    assert r.stats().held_now == 0
