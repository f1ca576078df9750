"""workers.deliver.ledger: the commit floor per partition."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.deliver.ledger import OffsetLedger


def test_the_floor_is_the_lowest_offset_not_released() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    for offset in (3, 4, 7, 9):
        ledger.hold("p0", offset)
    ledger.hold("p1", 0)
    assert ledger.floors() == {"p0": 3, "p1": 0}
    assert ledger.release("p0", 7)
    assert ledger.floors()["p0"] == 3  # 7 done, but 3 is not: no commit past 3
    assert ledger.release("p0", 3)
    assert ledger.floors()["p0"] == 4
    assert ledger.release("p0", 4)
    assert ledger.floors()["p0"] == 9  # 7 was released earlier
    assert ledger.count() == 2
    assert ledger.release("p0", 9)
    assert ledger.release("p1", 0)
    assert ledger.floors() == {}
    assert ledger.count() == 0


def test_releasing_twice_or_something_never_held_is_refused() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.hold("p", 5)
    ledger.hold("p", 6)
    assert ledger.release("p", 6)
    assert not ledger.release("p", 6)
    assert not ledger.release("p", 4)
    assert not ledger.release("q", 5)
    assert ledger.floors() == {"p": 5}


def test_offsets_must_be_held_in_increasing_order() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.hold("p", 5)
    with pytest.raises(ValueError, match="increasing order"):
        ledger.hold("p", 5)


def test_dropped_partitions_are_forgotten() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.hold("p", 1)
    ledger.hold("q", 1)
    ledger.drop(["p"])
    assert ledger.floors() == {"q": 1}
    assert not ledger.release("p", 1)
    ledger.hold("p", 0)  # a new assignment starts afresh, even lower
    assert ledger.floors() == {"p": 0, "q": 1}


@given(st.lists(st.integers(1, 5), min_size=1, max_size=200), st.randoms())
def test_the_floor_never_passes_an_unreleased_offset(gaps: list[int], rnd: random.Random) -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    offsets, at = [], 0
    for gap in gaps:
        at += gap
        offsets.append(at)
        ledger.hold("p", at)
    order = offsets[:]
    rnd.shuffle(order)
    released: set[int] = set()
    for offset in order:
        assert ledger.release("p", offset)
        released.add(offset)
        pending = [o for o in offsets if o not in released]
        floor = ledger.floors().get("p")
        assert floor == (min(pending) if pending else None)
        assert ledger.count() == len(pending)
