"""adt.exception_windows: declared exception windows raise named thresholds for a while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adt import (
    AdtConfigError,
    AdtEngine,
    AdtTable,
    AdtValues,
    ExceptionWindow,
    Threshold,
    ValueRule,
    active_exceptions,
    drop_ended,
)

USER = "90-B3-D5-1F-30-01-00-00"
START = datetime(2025, 6, 1, tzinfo=UTC)
T_START = START.timestamp()
RULE = f"user:{USER}:11.1:3600"


def window(exc_id: str, start: datetime, days: float, raised: dict[str, int]) -> ExceptionWindow:
    return ExceptionWindow(
        id=exc_id, start=start, end=start + timedelta(days=days), thresholds=raised
    )


def values(*exceptions: ExceptionWindow) -> AdtValues:
    return AdtValues(
        thresholds=(Threshold(srv="11.1", window_s=3600, max=2),),
        value_rules=(ValueRule(srv="2.2", field="amount", max=1),),
        exceptions=exceptions,
    )


def admitted(engine: AdtEngine, n: int, now_s: float) -> int:
    ok = 0
    for _ in range(n):
        if not engine.check(USER, "11.1", dict, now_s).quarantined:
            engine.record_processed(USER, "11.1", now_s)
            ok += 1
    return ok


def test_a_threshold_is_raised_only_while_the_window_is_open() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, values(window("fw", START, 1, {RULE: 5})))
    assert admitted(engine, 10, T_START - 7200) == 2  # before: the plain max
    assert admitted(engine, 10, T_START) == 5  # at start: raised
    assert admitted(engine, 10, T_START + 86400 - 7200) == 5  # last hour inside
    assert admitted(engine, 10, T_START + 86400 + 3600) == 2  # ended by itself


def test_the_reason_names_the_exception() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, values(window("fw", START, 1, {RULE: 3})))
    admitted(engine, 3, T_START)
    decision = engine.check(USER, "11.1", dict, T_START)
    assert decision.breach is not None
    assert decision.breach.limit == 3
    assert decision.breach.reason.endswith("the limit is 3 (raised from 2 by exception fw)")
    (usage,) = engine.usage(USER, T_START)
    assert usage.exception_id == "fw"
    assert usage.max == 3


def test_the_highest_active_exception_applies() -> None:
    table = AdtTable.for_user(
        USER,
        values(
            window("a", START, 2, {RULE: 10}),
            window("b", START + timedelta(days=1), 2, {RULE: 20}),
        ),
    )
    (rule,) = table.count_rules
    assert rule.limit_at(T_START) == (10, "a")
    assert rule.limit_at(T_START + 1.5 * 86400) == (20, "b")
    assert rule.limit_at(T_START + 3.5 * 86400) == (2, None)


def test_an_exception_must_name_a_threshold_of_the_same_values() -> None:
    with pytest.raises(AdtConfigError, match=r"names threshold nope, which these values"):
        AdtTable.for_user(USER, values(window("x", START, 1, {"nope": 5})))


def test_an_exception_may_not_name_a_value_rule() -> None:
    with pytest.raises(AdtConfigError, match="a value rule; exceptions raise count thresholds"):
        AdtTable.for_user(USER, values(window("x", START, 1, {f"user:{USER}:value:2.2:amount": 5})))


def test_an_exception_may_not_lower_a_threshold() -> None:
    with pytest.raises(AdtConfigError, match="below its max 2"):
        AdtTable.for_user(USER, values(window("x", START, 1, {RULE: 1})))


def test_exception_ids_are_unique() -> None:
    with pytest.raises(AdtConfigError, match="two exceptions have the id x"):
        values(window("x", START, 1, {RULE: 5}), window("x", START, 2, {RULE: 6}))


def test_a_refused_exception_leaves_the_old_values_in_force() -> None:
    engine = AdtEngine()
    engine.set_user_values(USER, values())
    with pytest.raises(AdtConfigError):
        engine.set_user_values(USER, values(window("x", START, 1, {RULE: 1})))
    table = engine.user_table(USER)
    assert table is not None
    assert table.values == values()


def test_active_exceptions_and_drop_ended() -> None:
    early = window("early", START, 1, {RULE: 5})
    late = window("late", START + timedelta(days=5), 1, {RULE: 5})
    both = values(early, late)
    assert active_exceptions(both, T_START + 10) == (early,)
    assert active_exceptions(both, T_START + 3 * 86400) == ()
    assert drop_ended(both, T_START + 10) is both
    assert drop_ended(both, T_START + 86400).exceptions == (late,)


def test_dcc_values_take_exceptions_too() -> None:
    dcc = AdtValues(
        thresholds=(Threshold(srv="11.1", window_s=3600, max=1),),
        exceptions=(window("national", START, 1, {"dcc:11.1:3600": 4}),),
    )
    engine = AdtEngine(dcc_values=dcc)
    assert admitted(engine, 10, T_START) == 4
