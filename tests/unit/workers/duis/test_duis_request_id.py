"""workers.duis.request_id: parsing `USER:TARGET:COUNTER`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.duis.request_id import (
    MAX_COUNTER,
    PAIR_CHARS,
    InvalidRequestIdError,
    RequestId,
    parse_request_id,
    shorten,
    split_request_id,
)

USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"

eui64 = st.lists(st.integers(0, 255), min_size=8, max_size=8).map(
    lambda octets: "-".join(f"{o:02X}" for o in octets)
)
counters = st.integers(0, MAX_COUNTER)
valid_ids = st.builds(lambda u, t, c: f"{u}:{t}:{c}", eui64, eui64, counters)


def refusal(text: str) -> str:
    with pytest.raises(InvalidRequestIdError) as info:
        parse_request_id(text)
    assert str(info.value) == info.value.reason
    return info.value.reason


def test_parses_the_template_example() -> None:
    assert parse_request_id(f"{USER}:{DEVICE}:1000") == RequestId(USER, DEVICE, 1000)


def test_parses_an_epoch_millis_counter_and_the_limits() -> None:
    assert parse_request_id(f"{USER}:{DEVICE}:1660286628923").counter == 1660286628923
    assert parse_request_id(f"{USER}:{DEVICE}:0").counter == 0
    assert parse_request_id(f"{USER}:{DEVICE}:{MAX_COUNTER}").counter == MAX_COUNTER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "request_id is empty; expected USER:TARGET:COUNTER"),
        (
            f"{USER}:{DEVICE}",
            f"request_id '{USER}:{DEVICE}' has 2 colon-separated part(s); "
            "expected 3: USER:TARGET:COUNTER",
        ),
        (f"{USER}:{DEVICE}:1:2", "has 4 colon-separated part(s)"),
        (
            f"90-b3-d5-1f-30-01-00-00:{DEVICE}:1",
            "request_id USER part '90-b3-d5-1f-30-01-00-00' is not an EUI-64 "
            "(lower-case hex is not accepted); expected 8 hyphen-separated upper-case hex "
            "octets like 90-B3-D5-1F-30-01-00-00",
        ),
        (f"{USER}:00-DB-12-34-56-78-90:1", "request_id TARGET part '00-DB-12-34-56-78-90'"),
        (f"{USER}:00DB1234567890A0:1", "TARGET part '00DB1234567890A0' is not an EUI-64;"),
        (f"{USER}:00-DB-12-34-56-78-90-AG:1", "TARGET part '00-DB-12-34-56-78-90-AG'"),
        (
            f"{USER}:{DEVICE}:-5",
            "request_id COUNTER part '-5' is not a non-negative decimal integer; "
            "expected digits 0-9 only",
        ),
        (f"{USER}:{DEVICE}:", "COUNTER part '' is not a non-negative decimal integer"),
        (f"{USER}:{DEVICE}:1.5", "COUNTER part '1.5' is not"),
        (f"{USER}:{DEVICE}: 7", "COUNTER part ' 7' is not"),
        (f"{USER}:{DEVICE}:7\n", "COUNTER part '7\\n' is not"),
        (f"{USER}:{DEVICE}:\u0661\u0662", "COUNTER part '\u0661\u0662' is not"),
        (
            f"{USER}:{DEVICE}:007",
            "request_id COUNTER part '007' has a leading zero; "
            "write the number without leading zeros",
        ),
        (
            f"{USER}:{DEVICE}:{MAX_COUNTER + 1}",
            f"request_id COUNTER part '{MAX_COUNTER + 1}' exceeds the maximum {MAX_COUNTER} "
            "(2**64 - 1)",
        ),
        (
            f"{USER}:{DEVICE}:{'9' * 25}",
            f"request_id COUNTER part '{'9' * 25}' exceeds the maximum {MAX_COUNTER}",
        ),
    ],
)
def test_refusal_says_what_is_wrong(text: str, expected: str) -> None:
    assert expected in refusal(text)


def test_huge_input_is_refused_quickly_with_a_short_reason() -> None:
    reason = refusal(f"{USER}:{DEVICE}:" + "9" * 1_000_000)
    assert len(reason) < 200
    assert "..." in reason


def test_shorten_bounds_the_shown_value() -> None:
    assert shorten("abc") == "'abc'"
    assert len(shorten("x" * 10_000)) <= 84
    assert len(shorten("\x00" * 80)) <= 84


@given(eui64, eui64, counters)
@settings(database=None, deadline=None)
def test_round_trips_any_valid_id(user: str, target: str, counter: int) -> None:
    assert parse_request_id(f"{user}:{target}:{counter}") == RequestId(user, target, counter)


@given(eui64, eui64, counters)
@settings(database=None, deadline=None)
def test_a_valid_id_cut_at_pair_chars_is_its_pair_and_counter(
    user: str, target: str, counter: int
) -> None:
    # The router writes the replay changelog from the RequestID's bytes cut at PAIR_CHARS.
    text = f"{user}:{target}:{counter}"
    parts = split_request_id(text)
    assert parts is not None
    pair, _, _, parsed = parts
    raw = text.encode()
    assert (raw[:PAIR_CHARS], raw[PAIR_CHARS + 1 :]) == (pair.encode(), b"%d" % parsed)


def _mutate(text: str, position: int, char: str, how: int) -> str:
    position %= len(text) + 1
    if how == 0:
        return text[:position] + char + text[position:]
    if how == 1:
        return text[:position] + text[position + 1 :]
    return text[:position] + char + text[position + 1 :]


@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(
            _mutate,
            valid_ids,
            st.integers(0, 100),
            st.sampled_from("0123456789ABCDEFabcdef-: \n\u0661x"),
            st.integers(0, 2),
        ),
    )
)
@settings(database=None, deadline=None)
def test_anything_else_is_refused_with_invalid_request_id_error(text: str) -> None:
    # Either the text is exactly in the canonical format (it round-trips character for
    # character), or it is refused with InvalidRequestIdError and never anything else.
    outcome = _parse_or_error(text)
    if isinstance(outcome, InvalidRequestIdError):
        assert outcome.reason
        assert len(outcome.reason) < 300
    else:
        assert f"{outcome.user_id}:{outcome.target_id}:{outcome.counter}" == text


def _parse_or_error(text: str) -> RequestId | InvalidRequestIdError:
    try:
        return parse_request_id(text)
    except InvalidRequestIdError as exc:
        return exc
