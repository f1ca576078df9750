"""The actuals book: what counts, and that counts restored from the state records plus a
replay from the checkpoint equal one uninterrupted count (no double counting, nothing lost)."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.schemas import UserResponse
from workers.admin.actuals import (
    CHECKPOINT_KEY,
    OTHER_SRV,
    ActualsBook,
    ActualsRecord,
    total_sent,
)
from workers.runtime.headers import SRV_HEADER

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-02-00-00"
STRANGER = "90-B3-D5-1F-30-09-00-00"
CATALOGUE = frozenset({"4.1.1", "7.2", "11.3"})
JAN_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z
FEB_MS = 1_801_440_000_000  # 2027-02-01T00:00:00Z


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def answer(
    offset: int,
    *,
    user: str = A,
    outcome: str = "accepted",
    srv: str | None = "4.1.1",
    at_ms: int = JAN_MS + 1000,
    partition: int = 0,
) -> Rec:
    value = msgspec.json.encode(
        UserResponse(
            request_id=f"{user}:00-DB-12-34-56-78-90-A0:{offset}",
            user_id=user,
            response_code="X",
            outcome=outcome,  # type: ignore[arg-type]
            reason="r",
            at_ms=at_ms,
        )
    )
    headers = [] if srv is None else [(SRV_HEADER, srv.encode())]
    return Rec("r", partition, offset, at_ms, user.encode(), value, headers)


def book() -> ActualsBook:
    return ActualsBook(CATALOGUE, lambda u: u in {A, B}, lambda u, m, s: s == "4.1.1")


def test_first_decisions_count_once_per_outcome_by_month_and_srv() -> None:
    b = book()
    b.apply(
        [
            answer(0),
            answer(1, outcome="rejected", srv="7.2"),
            answer(2, outcome="throttled"),
            answer(3, outcome="quarantined", srv="11.3"),
            answer(4, outcome="released", srv=None),  # Q4 follows a quarantined: not again
            answer(5, outcome="deleted", srv=None),
            answer(6, at_ms=FEB_MS + 5),  # the next UTC month
            answer(7, srv="99.9"),  # not in the catalogue
            answer(8, srv=None),  # an answer of an older router: no header
            answer(9, user=STRANGER),  # not registered
        ]
    )
    assert b.of(A, "2027-01") == {
        "4.1.1": {"accepted": 1, "throttled": 1},
        "7.2": {"rejected": 1},
        "11.3": {"quarantined": 1},
        OTHER_SRV: {"accepted": 2},
    }
    assert b.of(A, "2027-02") == {"4.1.1": {"accepted": 1}}
    assert b.month("2027-01").keys() == {A}
    assert total_sent(b.of(A, "2027-01")) == 6
    assert b.ignored == {"later_answer": 2, "unregistered": 1}
    # Counted with no forecast for their SRV (only 4.1.1 is forecast here).
    assert b.unforecast == {A: 4}
    assert b.position == {0: 10}


def test_unreadable_answers_are_ignored_not_fatal() -> None:
    b = book()
    deep = b"[" * 10_000 + b"]" * 10_000
    bad = [
        Rec("r", 0, 0, 0, None, None),
        Rec("r", 0, 1, 0, None, b"\xff\xfe"),
        Rec("r", 0, 2, 0, None, b'{"outcome": "accepted"}'),
        Rec("r", 0, 3, 0, None, deep),
        answer(4, at_ms=10**18),  # beyond any calendar
        Rec("r", 0, 5, 0, None, answer(5).value, [(SRV_HEADER, b"\xff")]),
    ]
    b.apply(bad)
    assert b.ignored == {"unreadable": 5}
    assert b.of(A, "2027-01") == {OTHER_SRV: {"accepted": 1}}


def test_state_records_round_trip_and_bad_ones_are_skipped() -> None:
    b = book()
    b.apply([answer(0), answer(1, user=B, partition=1)])
    records, checkpoint = b.dirty_records(now_ms=5)
    assert not b.dirty
    keys = [k for k, _ in records]
    assert keys == [f"{A}/2027-01".encode(), f"{B}/2027-01".encode()]
    decoded = msgspec.json.decode(records[0][1], type=ActualsRecord)
    assert decoded.through == {0: 1, 1: 2}
    restored = book()
    for key, value in [
        *records,
        (CHECKPOINT_KEY.encode(), checkpoint),
        (b"garbage/2027-01", b"{}"),
        (f"{B}/2027-02".encode(), records[1][1]),  # key and record disagree
        (b"\xff", b"x"),
        (f"{A}/2027-03".encode(), None),  # a tombstone
    ]:
        restored.restore(key, value)
    assert restored.counts == b.counts
    assert restored.position == {0: 1, 1: 2}
    assert restored.skipped_state_records == 3


def _replay(log: list[Rec], flushes: set[int], crash_at: int, lose_checkpoint: bool) -> ActualsBook:
    """Count `log` record by record, writing state after each index in `flushes`, crash after
    `crash_at` (state written since the last flush is lost), restore, and count the rest."""
    first = book()
    topic: list[tuple[bytes, bytes]] = []
    for i, rec in enumerate(log[: crash_at + 1]):
        first.apply([rec])
        if i in flushes:
            records, checkpoint = first.dirty_records(now_ms=i)
            topic.extend(records)
            if not (lose_checkpoint and i == max(f for f in flushes if f <= crash_at)):
                topic.append((CHECKPOINT_KEY.encode(), checkpoint))
    second = book()
    for key, value in topic:
        second.restore(key, value)
    start = {p: o for p, o in second.position.items()}
    rest = [r for r in log if r.offset >= start.get(r.partition, 0)]
    second.apply(rest)
    return second


_answers = st.lists(
    st.tuples(
        st.sampled_from([A, B, STRANGER]),
        st.sampled_from(["accepted", "rejected", "throttled", "quarantined", "released"]),
        st.sampled_from(["4.1.1", "7.2", None]),
        st.sampled_from([JAN_MS + 1, FEB_MS + 1]),
        st.integers(0, 2),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    _answers,
    st.sets(st.integers(0, 59)),
    st.integers(0, 59),
    st.booleans(),
)
def test_a_restart_anywhere_counts_every_answer_exactly_once(
    spec: list[tuple[str, str, str | None, int, int]],
    flushes: set[int],
    crash_at: int,
    lose_checkpoint: bool,
) -> None:
    offsets = {0: 0, 1: 0, 2: 0}
    log = []
    for user, outcome, srv, at_ms, partition in spec:
        log.append(
            answer(offsets[partition], user=user, outcome=outcome, srv=srv, at_ms=at_ms,
                   partition=partition)
        )  # fmt: skip
        offsets[partition] += 1
    once = book()
    once.apply(log)
    crash_at = min(crash_at, len(log) - 1)
    again = _replay(log, flushes, crash_at, lose_checkpoint)
    assert again.counts == once.counts
