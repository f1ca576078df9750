"""The answers kept per request: bounded by count, age, answers per request and size."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.schemas import UserResponse
from workers.admin.decisions import (
    MAX_ANSWER_BYTES,
    MAX_REQUEST_ID_CHARS,
    PER_REQUEST,
    AnswerIndex,
)

USER = "90-B3-D5-1F-30-01-00-00"
NOW_S = 1_800_000_000.0


def rid(n: int) -> str:
    return f"{USER}:00-DB-00-00-00-00-00-01:{n}"


def answer(
    n: int, *, at_s: float = NOW_S, outcome: str = "rejected", reason: str = "r", **extra: object
) -> bytes:
    return msgspec.json.encode(
        UserResponse(
            request_id=extra.pop("request_id", rid(n)),  # type: ignore[arg-type]
            user_id=USER,
            response_code="E102",
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            rule="duis.replayed_counter",
            at_ms=int(at_s * 1000),
            **extra,  # type: ignore[arg-type]
        )
    )


def test_every_answer_of_a_request_is_kept_in_order() -> None:
    index = AnswerIndex()
    assert index.add(answer(1, outcome="quarantined", observed=4, limit=3), NOW_S)
    assert index.add(answer(1, outcome="released", at_s=NOW_S + 5), NOW_S + 5)
    kept = index.get(rid(1))
    assert kept is not None
    assert [(a.outcome, a.observed, a.limit) for a in kept.answers] == [
        ("quarantined", 4, 3),
        ("released", None, None),
    ]
    assert (len(index), index.requests, index.get(rid(2))) == (2, 1, None)


def test_past_max_answers_the_least_recently_answered_request_goes_whole() -> None:
    index = AnswerIndex(max_answers=4)
    for n in (1, 2, 3):
        index.add(answer(n), NOW_S)
    index.add(answer(1), NOW_S + 1)  # 1 answered again: now the most recent
    index.add(answer(4), NOW_S + 2)  # 5 answers > 4: request 2 (the least recent) goes
    assert index.get(rid(2)) is None
    assert [index.get(rid(n)) is not None for n in (1, 3, 4)] == [True, True, True]
    assert len(index) == 4


def test_answers_older_than_max_age_are_forgotten() -> None:
    index = AnswerIndex(max_age_s=60)
    index.add(answer(1, at_s=NOW_S), NOW_S)
    index.add(answer(2, at_s=NOW_S + 30), NOW_S + 30)
    assert index.prune(NOW_S + 61) == 1
    assert index.get(rid(1)) is None
    assert index.get(rid(2)) is not None
    assert index.oldest_s == NOW_S + 30


def test_an_answer_dated_in_the_future_counts_as_given_now() -> None:
    index = AnswerIndex(max_age_s=60)
    index.add(answer(1, at_s=NOW_S + 10**6), NOW_S)  # a skewed clock cannot keep it longer
    assert index.prune(NOW_S + 61) == 1


def test_a_request_answered_again_and_again_keeps_its_first_and_latest_answers() -> None:
    index = AnswerIndex()
    for k in range(PER_REQUEST + 10):
        index.add(answer(1, reason=f"try {k}"), NOW_S)
    kept = index.get(rid(1))
    assert kept is not None
    assert len(kept.answers) == PER_REQUEST
    assert kept.omitted == 10
    assert kept.answers[0].reason == "try 0"
    assert kept.answers[-1].reason == f"try {PER_REQUEST + 9}"
    assert len(index) == PER_REQUEST


@pytest.mark.parametrize(
    "value",
    [b"", b"\xff\xfe", b"[]", b'{"request_id": 1}', b"null", b'{"request_id":"a"' * 3],
)
def test_what_is_not_an_answer_is_refused_and_counted(value: bytes) -> None:
    index = AnswerIndex()
    assert not index.add(value, NOW_S)
    assert (len(index), index.refused) == (0, 1)


def test_a_request_id_too_long_is_not_kept() -> None:
    index = AnswerIndex()
    assert not index.add(answer(1, request_id="X" * (MAX_REQUEST_ID_CHARS + 1)), NOW_S)
    assert index.requests == 0


def test_a_huge_answer_is_kept_with_its_reason_cut() -> None:
    index = AnswerIndex()
    assert index.add(answer(1, reason="x" * 200_000, observed="y" * 50_000), NOW_S)
    kept = index.get(rid(1))
    assert kept is not None
    [one] = kept.answers
    assert one.reason.endswith("[cut]")
    assert len(msgspec.json.encode(one)) <= MAX_ANSWER_BYTES


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_answers"):
        AnswerIndex(max_answers=0)
    with pytest.raises(ValueError, match="max_age_s"):
        AnswerIndex(max_age_s=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.floats(0, 500)), max_size=200),
    st.integers(1, 40),
)
def test_never_more_than_max_answers_nor_older_than_max_age(
    events: list[tuple[int, float]], max_answers: int
) -> None:
    index = AnswerIndex(max_answers=max_answers, max_age_s=100)
    now = NOW_S
    for n, step in events:
        now += step
        index.add(answer(n, at_s=now), now)
        assert len(index) <= max_answers
        oldest = index.oldest_s
        assert oldest is None or oldest >= now - 100
