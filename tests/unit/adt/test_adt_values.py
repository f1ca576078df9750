"""adt.values: data-value checks on request bodies (SEC G6 (b)(ii), SECMP0007 dates)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from adt.decision import Breach
from adt.values import ValueCheck, format_number

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400

amount = ValueCheck(id="value:2.2:amount", srv="2.2", field="amount", min=0, max=500)
activation = ValueCheck(
    id="value:11.3:activation_datetime",
    srv="11.3",
    field="activation_datetime",
    max_days_ahead=30,
)


@pytest.mark.parametrize("value", [0, 500, 250.5, 1e-9])
def test_values_in_range_pass(value: float) -> None:
    assert amount.evaluate({"amount": value}, NOW) is None


def test_above_max_names_rule_value_and_limit() -> None:
    breach = amount.evaluate({"amount": 1200.5}, NOW)
    assert breach is not None
    assert breach.kind == "data_value"
    assert breach.rule == "value:2.2:amount"
    assert breach.observed == 1200.5
    assert breach.limit == 500
    assert breach.reason == (
        "data-value ADT value:2.2:amount: SRV 2.2 body field amount = 1200.5 is above the "
        "maximum 500"
    )
    assert not breach.shadow


def test_below_min_is_a_breach() -> None:
    breach = amount.evaluate({"amount": -1}, NOW)
    assert breach is not None
    assert breach.limit == 0
    assert "is below the minimum 0" in breach.reason


def test_only_min_or_only_max() -> None:
    floor = ValueCheck(id="f", srv="2.3", field="debt", min=-100)
    assert floor.evaluate({"debt": 1e12}, NOW) is None
    assert floor.evaluate({"debt": -101}, NOW) is not None


@pytest.mark.parametrize("body", [{}, {"amount": None}, {"other": 1}])
def test_a_missing_or_null_field_does_not_apply(body: dict[str, Any]) -> None:
    assert amount.evaluate(body, NOW) is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("12.5", "str '12.5'"),
        (True, "bool True"),
        ([1], "list [1]"),
        ({"a": 1}, "dict {'a': 1}"),
    ],
)
def test_a_wrong_type_is_a_breach_with_a_clear_message(value: object, shown: str) -> None:
    breach = amount.evaluate({"amount": value}, NOW)
    assert breach is not None
    assert breach.limit is None
    assert breach.reason.endswith(f"body field amount must be a number, got {shown}")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_a_breach(value: float) -> None:
    breach = amount.evaluate({"amount": value}, NOW)
    assert breach is not None
    assert "must be a finite number" in breach.reason


def test_long_values_are_cut_in_the_reason() -> None:
    breach = amount.evaluate({"amount": "x" * 1000}, NOW)
    assert breach is not None
    assert len(breach.reason) < 200
    assert "..." in breach.reason


@pytest.mark.parametrize(
    "text",
    [
        "2025-06-01T12:00:00Z",
        "2025-07-01T12:00:00Z",  # exactly 30 days ahead
        "2025-07-01T13:00:00+01:00",  # the same instant in another zone
        "2025-05-01T00:00:00Z",  # in the past: not this rule's business
        "2025-06-20",  # a date alone: midnight UTC
        "2025-06-20T00:00:00",  # no zone: UTC, as DUIS date-times are
    ],
)
def test_dates_up_to_max_days_ahead_pass(text: str) -> None:
    assert activation.evaluate({"activation_datetime": text}, NOW) is None


def test_a_date_too_far_ahead_is_a_breach() -> None:
    breach = activation.evaluate({"activation_datetime": "2025-07-16T12:00:00Z"}, NOW)
    assert breach is not None
    assert breach.observed == 45.0
    assert breach.limit == 30
    assert breach.reason == (
        "data-value ADT value:11.3:activation_datetime: SRV 11.3 body field "
        "activation_datetime = 2025-07-16T12:00:00Z is 45.00 days ahead, more than the "
        "maximum of 30 days"
    )


def test_one_second_past_the_limit_is_a_breach() -> None:
    limit = datetime.fromtimestamp(NOW + 30 * DAY + 1, UTC).isoformat()
    assert activation.evaluate({"activation_datetime": limit}, NOW) is not None


@pytest.mark.parametrize("text", ["tomorrow", "2025-13-01T00:00:00Z", ""])
def test_an_unparseable_date_is_a_breach(text: str) -> None:
    breach = activation.evaluate({"activation_datetime": text}, NOW)
    assert breach is not None
    assert "is not an ISO-8601 date-time" in breach.reason


def test_a_non_string_date_is_a_breach() -> None:
    breach = activation.evaluate({"activation_datetime": 1750000000}, NOW)
    assert breach is not None
    assert "must be an ISO-8601 date-time string, got int 1750000000" in breach.reason


def test_shadow_breaches_say_so() -> None:
    shadow = ValueCheck(id="s", srv="2.2", field="amount", max=1, shadow=True)
    breach = shadow.evaluate({"amount": 2}, NOW)
    assert breach is not None
    assert breach.shadow
    assert breach.reason.endswith("(shadow mode: not enforced)")


def test_format_number() -> None:
    assert format_number(500.0) == "500"
    assert format_number(0.1) == "0.1"
    assert format_number(7) == "7"


# --- numbers a rule cannot compare, and values costly to show (issue #12) ---------------------


def _deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10**400, "an integer of 401 digits"),  # 401 digits: math.isfinite overflowed
        (-(10**400), "a negative integer of 401 digits"),
        (10**5000 - 1, "an integer of 5000 digits"),  # past str()'s limit of 4,300 digits
        (2 * 10**308, "an integer of 309 digits"),  # just past the largest float
    ],
    ids=["401 digits", "-401 digits", "5000 digits", "2e308"],
)
def test_an_integer_beyond_a_float_is_a_breach_not_an_exception(value: int, shown: str) -> None:
    for rule in (amount, ValueCheck(id="f", srv="2.2", field="amount", min=0)):
        breach = rule.evaluate({"amount": value}, NOW)
        assert breach is not None
        assert breach.observed == shown
        assert breach.limit is None
        assert breach.reason.endswith(
            f"must be a number within a float's range (about 1.8e308), got {shown}"
        )


def test_a_large_integer_within_a_float_is_compared_exactly_and_shown_by_size() -> None:
    breach = amount.evaluate({"amount": 10**308}, NOW)
    assert breach is not None
    assert breach.observed == 10**308
    assert breach.reason.endswith("= an integer of 309 digits is above the maximum 500")
    assert msgspec.json.decode(msgspec.json.encode(breach), type=Breach) == breach
    # Exact: converted to a float, the integer just above the limit would equal it.
    at_limit = ValueCheck(id="f", srv="2.2", field="n", max=1e308)
    assert at_limit.evaluate({"n": int(1e308)}, NOW) is None
    assert at_limit.evaluate({"n": int(1e308) + 1}, NOW) is not None


@pytest.mark.parametrize("text", ['{"amount": 1e400}', '{"amount": -1e400}'])
def test_a_float_beyond_range_from_another_decoder_is_a_breach(text: str) -> None:
    value = json.loads(text)["amount"]  # the json module makes it an infinity
    breach = amount.evaluate({"amount": value}, NOW)
    assert breach is not None
    assert "must be a finite number, got" in breach.reason


@pytest.mark.parametrize("text", ["NaN", "nan", "Infinity", "-Infinity", "1e400", "-0"])
def test_number_lookalike_strings_are_a_breach(text: str) -> None:
    breach = amount.evaluate({"amount": text}, NOW)
    assert breach is not None
    assert breach.reason.endswith(f"must be a number, got str {text!r}")


@pytest.mark.parametrize(
    "value", [0, -0.0, msgspec.json.decode(b"-0"), msgspec.json.decode(b"-0.0")]
)
def test_minus_zero_is_zero(value: float) -> None:
    assert amount.evaluate({"amount": value}, NOW) is None
    breach = ValueCheck(id="f", srv="2.2", field="amount", min=1).evaluate({"amount": value}, NOW)
    assert breach is not None
    assert "= 0 is below the minimum 1" in breach.reason


@pytest.mark.parametrize(
    "value",
    [
        "x" * 10_000_000,
        ["x" * 1_000_000] * 1000,
        {str(i): i for i in range(100_000)},
        _deeply_nested(100_000),  # repr() of it raised RecursionError
        [10**5000],  # repr() of it raised ValueError (int-to-str limit)
    ],
    ids=["10MB string", "big list", "big dict", "deep list", "huge int in a list"],
)
def test_huge_values_are_a_breach_with_a_short_reason(value: object) -> None:
    for rule in (amount, activation):
        breach = rule.evaluate({"amount": value, "activation_datetime": value}, NOW)
        assert breach is not None
        assert len(breach.reason) < 300
        assert isinstance(breach.observed, str)
        assert len(breach.observed) <= 80


def test_a_huge_integer_for_a_date_rule_is_a_breach() -> None:
    breach = activation.evaluate({"activation_datetime": 10**5000}, NOW)
    assert breach is not None
    assert breach.reason.endswith(
        "must be an ISO-8601 date-time string, got an integer of 5001 digits"
    )


def test_an_unreadable_body_breaches_with_the_decoders_reason() -> None:
    breach = amount.unreadable("Number out of range - at `$.amount`")
    assert breach.observed == "unreadable body"
    assert breach.limit is None
    assert breach.reason == (
        "data-value ADT value:2.2:amount: SRV 2.2 body field amount cannot be checked: the "
        "body cannot be decoded (Number out of range - at `$.amount`)"
    )
    odd = amount.unreadable("lone \ud800 " + "x" * 1000)  # a foreign message, not UTF-8-able
    assert "lone \\ud800 x" in odd.reason
    assert len(odd.reason) < 250
    odd.reason.encode()


def test_format_number_never_prints_a_huge_integer() -> None:
    assert format_number(10**30 - 1) == "9" * 30
    assert format_number(10**30) == "an integer of 31 digits"
    assert format_number(-(10**400)) == "a negative integer of 401 digits"
    assert format_number(10**5000) == "an integer of 5001 digits"
    assert format_number(-0.0) == "0"
