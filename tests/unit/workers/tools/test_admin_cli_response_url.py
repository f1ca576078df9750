"""`dccgate admin users set --response-url / --no-response-url` (the endpoint the response
deliverer pushes a User's answers to)."""

from __future__ import annotations

import pytest

from tests.unit.workers.tools.test_admin_cli import USER, FakeApi, run

PATH = f"/v1/users/{USER}"
CURRENT = {"name": "N", "roles": ["IS"], "version": 4}


def test_response_url_is_set_keeping_the_other_fields() -> None:
    saved = {**CURRENT, "response_url": "https://u.example/r", "version": 5}
    api = FakeApi({("GET", PATH): (200, CURRENT), ("PUT", PATH): (200, saved)})
    ran = run(["users", "set", USER, "--response-url", "https://u.example/r"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [
        {"name": "N", "roles": ["IS"], "response_url": "https://u.example/r", "version": 4}
    ]
    assert "RESPONSE URL  https://u.example/r" in ran.out


def test_no_response_url_clears_it() -> None:
    current = {**CURRENT, "response_url": "https://u.example/r"}
    api = FakeApi({("GET", PATH): (200, current), ("PUT", PATH): (200, CURRENT)})
    ran = run(["users", "set", USER, "--no-response-url"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [{"name": "N", "roles": ["IS"], "response_url": None, "version": 4}]


def test_both_flags_at_once_are_a_usage_error() -> None:
    api = FakeApi()
    with pytest.raises(SystemExit) as info:
        run(["users", "set", USER, "--response-url", "https://x/", "--no-response-url"], api)
    assert info.value.code == 2
    assert api.sent == []


def test_a_set_with_no_field_names_the_url_flags() -> None:
    ran = run(["users", "set", USER], FakeApi())
    assert ran.code == 2
    assert "--response-url" in ran.err
