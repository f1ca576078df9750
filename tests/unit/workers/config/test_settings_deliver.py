"""workers.config.settings: the response deliverer's DCCGATE_DELIVER_* settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.config.settings import SettingsError, build_settings
from workers.deliver.service import retry_policy


def test_defaults() -> None:
    s = build_settings({}, {})
    assert (s.deliver_deadline_s, s.deliver_timeout_ms, s.deliver_queue_max_per_user) == (
        3600,
        10_000,
        1000,
    )
    policy = retry_policy(s)
    assert (policy.deadline_s, policy.backoff_initial_s, policy.backoff_max_s) == (3600, 0.2, 60)


def test_values_from_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = build_settings(
        {},
        {
            "DCCGATE_DELIVER_DEADLINE_S": "30",
            "DCCGATE_DELIVER_TIMEOUT_MS": "500",
            "DCCGATE_DELIVER_BACKOFF_INITIAL_MS": "10",
            "DCCGATE_DELIVER_BACKOFF_MAX_MS": "1000",
            "DCCGATE_DELIVER_QUEUE_MAX_PER_USER": "5",
            "DCCGATE_DELIVER_CONNECTIONS_PER_HOST": "2",
            "DCCGATE_DELIVER_CA_FILE": str(ca),
        },
    )
    assert s.deliver_deadline_s == 30
    assert s.deliver_ca_file == str(ca)
    assert retry_policy(s).backoff_max_s == 1.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DCCGATE_DELIVER_DEADLINE_S": "0"}, "DCCGATE_DELIVER_DEADLINE_S must be from 1"),
        ({"DCCGATE_DELIVER_DEADLINE_S": "x"}, "is not a whole number"),
        ({"DCCGATE_DELIVER_TIMEOUT_MS": "99"}, "DCCGATE_DELIVER_TIMEOUT_MS must be from 100"),
        ({"DCCGATE_DELIVER_QUEUE_MAX_PER_USER": "0"}, "QUEUE_MAX_PER_USER must be from 1"),
        ({"DCCGATE_DELIVER_CONNECTIONS_PER_HOST": "1001"}, "CONNECTIONS_PER_HOST must be"),
        (
            {"DCCGATE_DELIVER_BACKOFF_INITIAL_MS": "500", "DCCGATE_DELIVER_BACKOFF_MAX_MS": "100"},
            "BACKOFF_MAX_MS must be at least",
        ),
        ({"DCCGATE_DELIVER_CA_FILE": "/nonexistent/ca.pem"}, "is not a readable file"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        build_settings({}, env)
