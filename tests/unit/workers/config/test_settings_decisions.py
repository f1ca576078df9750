"""The decision log's bounds: DCCGATE_DECISIONS_MAX_ANSWERS and DCCGATE_DECISIONS_MAX_AGE_S."""

from __future__ import annotations

import pytest

from workers.config.settings import SettingsError, build_settings


def test_defaults() -> None:
    s = build_settings({}, {})
    assert (s.decisions_max_answers, s.decisions_max_age_s) == (100_000, 86_400)


def test_read_from_the_environment() -> None:
    env = {"DCCGATE_DECISIONS_MAX_ANSWERS": "5000", "DCCGATE_DECISIONS_MAX_AGE_S": "3600"}
    s = build_settings({}, env)
    assert (s.decisions_max_answers, s.decisions_max_age_s) == (5000, 3600)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DCCGATE_DECISIONS_MAX_ANSWERS", "0"),
        ("DCCGATE_DECISIONS_MAX_ANSWERS", "10000001"),
        ("DCCGATE_DECISIONS_MAX_AGE_S", "59"),
        ("DCCGATE_DECISIONS_MAX_AGE_S", "2592001"),
    ],
)
def test_out_of_range_is_refused_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        build_settings({}, {var: value})


def test_not_a_number_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="DCCGATE_DECISIONS_MAX_ANSWERS"):
        build_settings({}, {"DCCGATE_DECISIONS_MAX_ANSWERS": "lots"})
