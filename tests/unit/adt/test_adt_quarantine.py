"""adt.quarantine: pending -> released | deleted | expired, final, rebuilt from its log."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adt import (
    AlreadyDecidedError,
    Breach,
    Deleted,
    DuplicateEntryError,
    Expired,
    QuarantineBook,
    Quarantined,
    QuarantineEvent,
    Released,
    UnknownEntryError,
)

T0 = 1_700_000_000.0
USER = "90-B3-D5-1F-30-01-00-00"
DAY = 86_400.0

BREACH = Breach(
    kind="user_adt",
    rule=f"user:{USER}:7.2:3600",
    observed=101,
    limit=100,
    reason="User ADT ...: this would be request 101 ...; the limit is 100",
)
VALUE_BREACH = Breach(
    kind="data_value", rule="value:2.2:amount", observed=900, limit=500, reason="..."
)


def book_with(*ids: str, at_s: float = T0) -> QuarantineBook:
    book = QuarantineBook(pending_max_s=7 * DAY, retention_s=30 * DAY)
    for entry_id in ids:
        book.quarantine(entry_id, USER, "7.2", BREACH, at_s)
    return book


def test_a_quarantined_request_is_pending() -> None:
    book = QuarantineBook()
    event = book.quarantine("rid-1", USER, "7.2", BREACH, T0)
    assert event == Quarantined(
        id="rid-1",
        user_id=USER,
        srv="7.2",
        kind="user_adt",
        rule=BREACH.rule,
        reason=BREACH.reason,
        at_s=T0,
    )
    entry = book.get("rid-1")
    assert entry is not None
    assert (entry.state, entry.rule, entry.at_s) == ("pending", BREACH.rule, T0)
    assert len(book) == 1
    assert book.counts() == {"pending": 1, "released": 0, "deleted": 0, "expired": 0}


def test_release_and_delete_decide_once() -> None:
    book = book_with("a", "b")
    released = book.release("a", "alice", T0 + 10)
    assert released == Released(id="a", by="alice", at_s=T0 + 10, user_id=USER, srv="7.2")
    assert book.delete("b", "op:bob", T0 + 20, "not ours") == Deleted(
        id="b", by="op:bob", at_s=T0 + 20, note="not ours"
    )
    a, b = book.get("a"), book.get("b")
    assert a is not None
    assert (a.state, a.decided_by, a.decided_at_s) == (
        "released",
        "alice",
        T0 + 10,
    )
    assert b is not None
    assert (b.state, b.note) == ("deleted", "not ours")


def test_deciding_twice_is_refused_naming_the_current_state() -> None:
    book = book_with("a")
    book.release("a", "alice", T0 + 10)
    with pytest.raises(
        AlreadyDecidedError,
        match=r"it was already released by alice at 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ;",
    ) as info:
        book.delete("a", "bob", T0 + 20)
    assert info.value.state == "released"
    assert "cannot delete request a" in str(info.value)
    with pytest.raises(AlreadyDecidedError, match="already released"):
        book.release("a", "alice", T0 + 30)
    entry = book.get("a")
    assert entry is not None
    assert entry.decided_at_s == T0 + 10


def test_unknown_ids_are_refused() -> None:
    book = QuarantineBook()
    with pytest.raises(UnknownEntryError, match="cannot release request x: it is not in"):
        book.release("x", "alice", T0)
    with pytest.raises(UnknownEntryError, match="cannot delete request x"):
        book.delete("x", "alice", T0)


def test_quarantining_an_id_twice_is_refused() -> None:
    book = book_with("a")
    with pytest.raises(DuplicateEntryError, match="request a is already in quarantine"):
        book.quarantine("a", USER, "7.2", BREACH, T0 + 1)


def test_pending_requests_expire_after_pending_max_s() -> None:
    book = book_with("old", at_s=T0)
    book.quarantine("new", USER, "7.2", BREACH, T0 + DAY)
    book.quarantine("decided", USER, "7.2", BREACH, T0)
    book.release("decided", "alice", T0 + 1)
    assert book.expire_due(T0 + 7 * DAY - 1) == []
    (expired,) = book.expire_due(T0 + 7 * DAY)
    assert expired.id == "old"
    assert expired.note.startswith(
        "expired: no release or delete decision within 7 days of quarantine; deleted"
    )
    entry = book.get("old")
    assert entry is not None
    assert entry.state == "expired"
    assert book.expire_due(T0 + 7 * DAY) == []
    with pytest.raises(AlreadyDecidedError, match="already expired") as info:
        book.release("old", "alice", T0 + 8 * DAY)
    assert info.value.state == "expired"
    assert [e.id for e in book.expire_due(T0 + 9 * DAY)] == ["new"]


def test_decided_entries_are_forgotten_after_retention() -> None:
    book = book_with("a", "b", "c")
    book.release("a", "alice", T0 + DAY)
    book.delete("b", "alice", T0 + 2 * DAY)
    assert book.prune(T0 + 31 * DAY - 1) == 0
    assert book.prune(T0 + 31 * DAY) == 1
    assert book.get("a") is None
    assert book.prune(T0 + 32 * DAY) == 1
    assert book.get("c") is not None  # pending: expiry, not retention, ends it
    with pytest.raises(UnknownEntryError, match="decided more than 30 days ago"):
        book.release("a", "alice", T0 + 40 * DAY)


def test_select_by_rule_user_kind_state_and_time_range() -> None:
    book = QuarantineBook()
    for i in range(5):
        book.quarantine(f"u{i}", USER, "7.2", BREACH, T0 + i)
    book.quarantine("v", "other", "2.2", VALUE_BREACH, T0 + 2.5)
    book.release("u1", "alice", T0 + 10)
    assert [e.id for e in book.select()] == ["u0", "u2", "v", "u3", "u4"]
    assert [e.id for e in book.select(rule=BREACH.rule)] == ["u0", "u2", "u3", "u4"]
    assert [e.id for e in book.select(from_s=T0 + 2, until_s=T0 + 4)] == ["u2", "v", "u3"]
    assert [e.id for e in book.select(kind="data_value")] == ["v"]
    assert [e.id for e in book.select(user_id="other")] == ["v"]
    assert [e.id for e in book.select(state="released")] == ["u1"]
    assert len(book.select(state=None)) == 6


def test_pending_count_and_oldest_pending_follow_every_change() -> None:
    book = book_with("a", at_s=T0)
    book.quarantine("b", USER, "7.2", BREACH, T0 + 5)
    book.quarantine("c", USER, "7.2", BREACH, T0 + 9)
    assert (book.pending_count, book.oldest_pending_at_s()) == (3, T0)
    book.release("a", "alice", T0 + 10)
    assert (book.pending_count, book.oldest_pending_at_s()) == (2, T0 + 5)
    book.delete("c", "alice", T0 + 11)
    book.expire_due(T0 + 5 + 7 * DAY)
    assert (book.pending_count, book.oldest_pending_at_s()) == (0, None)
    book.prune(T0 + 60 * DAY)  # forgetting decided entries changes nothing pending
    assert (book.pending_count, len(book)) == (0, 0)


def test_bulk_release_of_a_selection_reports_what_it_refused() -> None:
    book = book_with("a", "b", "c")
    book.delete("b", "alice", T0 + 1)
    result = book.release_many(["a", "b", "c", "zz"], "op:carol", T0 + 2)
    assert [e.id for e in result.events] == ["a", "c"]
    assert [entry_id for entry_id, _ in result.refused] == ["b", "zz"]
    assert "already deleted by alice" in result.refused[0][1]
    result = book.delete_many([e.id for e in book.select(state="released")], "op", T0 + 3)
    assert result.events == ()
    assert len(result.refused) == 2


def test_events_travel_as_tagged_json() -> None:
    events: list[QuarantineEvent] = [
        Quarantined(
            id="a", user_id=USER, srv="7.2", kind="user_adt", rule="r", reason="x", at_s=T0
        ),
        Released(id="a", by="alice", at_s=T0),
        Deleted(id="a", by="alice", at_s=T0, note="n"),
        Expired(id="a", at_s=T0, note="expired"),
    ]
    data = msgspec.json.encode(events)
    assert b'"event":"released"' in data
    assert msgspec.json.decode(data, type=list[QuarantineEvent]) == events


def test_apply_is_tolerant_first_decision_wins() -> None:
    book = QuarantineBook()
    q = Quarantined(id="a", user_id=USER, srv="7.2", kind="user_adt", rule="r", reason="x", at_s=T0)
    assert book.apply(q)
    assert not book.apply(q)  # delivered twice
    assert book.apply(Released(id="a", by="alice", at_s=T0 + 1))
    assert not book.apply(Deleted(id="a", by="bob", at_s=T0 + 2))  # too late
    assert not book.apply(Released(id="zz", by="alice", at_s=T0))  # unknown
    entry = book.get("a")
    assert entry is not None
    assert (entry.state, entry.decided_by) == ("released", "alice")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="pending_max_s must be > 0"):
        QuarantineBook(pending_max_s=0)


# --- properties: random command sequences ----------------------------------------------------

commands = st.lists(
    st.tuples(
        st.sampled_from(["quarantine", "release", "delete", "expire", "prune"]),
        st.integers(min_value=0, max_value=7),  # which id
        st.integers(min_value=0, max_value=3 * 86_400),  # seconds to move time on by
    ),
    max_size=80,
)


def drive(
    book: QuarantineBook, steps: list[tuple[str, int, int]]
) -> tuple[list[QuarantineEvent], dict[str, int]]:
    """Run commands as a service would; return the published log and refusals per id."""
    log: list[QuarantineEvent] = []
    refused: dict[str, int] = {}
    now = T0
    for command, n, dt in steps:
        now += dt
        entry_id = f"rid-{n}"
        try:
            if command == "quarantine":
                log.append(book.quarantine(entry_id, USER, "7.2", BREACH, now))
            elif command == "release":
                log.append(book.release(entry_id, "alice", now))
            elif command == "delete":
                log.append(book.delete(entry_id, "bob", now))
            elif command == "expire":
                log.extend(book.expire_due(now))
            else:
                book.prune(now)
        except (AlreadyDecidedError, UnknownEntryError, DuplicateEntryError):
            refused[entry_id] = refused.get(entry_id, 0) + 1
    return log, refused


@settings(max_examples=300, deadline=None)
@given(steps=commands)
def test_a_request_is_never_decided_twice(steps: list[tuple[str, int, int]]) -> None:
    book = QuarantineBook(pending_max_s=2 * 86_400, retention_s=4 * 86_400)
    log, _ = drive(book, steps)
    # Between two Quarantined events for one id (an id may come back once forgotten), at
    # most one decision.
    decisions: dict[str, int] = {}
    for event in log:
        if isinstance(event, Quarantined):
            decisions[event.id] = 0
        else:
            decisions[event.id] += 1
            assert decisions[event.id] == 1, event
    for entry in book.select(state=None):
        assert (entry.state == "pending") is (entry.decided_at_s is None)
    pending = book.select()
    assert book.pending_count == len(pending)
    assert book.oldest_pending_at_s() == (pending[0].at_s if pending else None)


@settings(max_examples=300, deadline=None)
@given(steps=commands)
def test_replaying_the_log_rebuilds_the_same_state(steps: list[tuple[str, int, int]]) -> None:
    live = QuarantineBook(pending_max_s=2 * 86_400, retention_s=10**9)
    log, _ = drive(live, [s for s in steps if s[0] != "prune"])
    restored = QuarantineBook(pending_max_s=2 * 86_400, retention_s=10**9)
    for event in log:
        restored.apply(event)
    assert restored.select(state=None) == live.select(state=None)
    # At-least-once delivery: every event twice gives the same state.
    twice = QuarantineBook(pending_max_s=2 * 86_400, retention_s=10**9)
    for event in log:
        twice.apply(event)
        twice.apply(event)
    assert twice.select(state=None) == live.select(state=None)
