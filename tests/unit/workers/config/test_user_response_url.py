"""workers.config.model: a User's response_url (where its answers are pushed)."""

from __future__ import annotations

import msgspec
import pytest

from workers.config.model import MAX_RESPONSE_URL_CHARS, User, response_url_problem

_decode = msgspec.json.Decoder(User).decode


def user(url: object) -> User:
    return _decode(msgspec.json.encode({"name": "S", "roles": ["IS"], "response_url": url}))


@pytest.mark.parametrize(
    "url",
    [
        "https://supplier.example/dcc/responses",
        "http://127.0.0.1:8443/r?user=1&x=%20",
        "https://[2001:db8::1]:443/r",
        "https://h/" + "a" * (MAX_RESPONSE_URL_CHARS - 10),
    ],
)
def test_good_urls_are_kept(url: str) -> None:
    assert user(url).response_url == url


def test_it_is_optional_and_null_means_not_pushed() -> None:
    assert _decode(b'{"name": "S", "roles": ["IS"]}').response_url is None
    assert user(None).response_url is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://h/r", "matching regex"),
        ("HTTPS://h/r", "matching regex"),
        ("javascript:alert(1)", "matching regex"),
        ("https://user:pw@h/r", "must not carry credentials"),
        ("https://user@h/r", "must not carry credentials"),
        ("https:///r", "has no host"),
        ("https://h/r#frag", "#fragment"),
        ("https://h/r#", "#fragment"),
        ("https://h:99999/r", "is not a URL"),
        ("https://h:0/r", "port 0"),
        ("https://h/a b", "space, a control or a non-ASCII"),
        ("https://h/\x00", "space, a control or a non-ASCII"),
        ("https://h/\r\nX-Evil: 1", "space, a control or a non-ASCII"),
        ("https://h\u00e9.example/", "space, a control or a non-ASCII"),
        ("https://h/" + "a" * MAX_RESPONSE_URL_CHARS, "length <= 2048"),
        ("https://[::1/r", "is not a URL"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="response_url") as info:
        user(url)
    assert reason in str(info.value)


@pytest.mark.parametrize("value", [12, [], {"u": 1}, True])
def test_a_url_of_the_wrong_type_is_refused(value: object) -> None:
    with pytest.raises(msgspec.ValidationError, match="response_url"):
        user(value)


def test_the_check_itself_names_the_length_bound() -> None:
    problem = response_url_problem("https://h/" + "a" * MAX_RESPONSE_URL_CHARS)
    assert problem == f"is longer than {MAX_RESPONSE_URL_CHARS} characters"
    assert response_url_problem("https://h/") is None
