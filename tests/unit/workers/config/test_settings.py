from __future__ import annotations

import secrets

import pytest

from workers.config.settings import SettingsError, build_settings


def test_defaults_without_flags_or_environment() -> None:
    s = build_settings({}, {})
    assert s.bootstrap is None
    assert s.kafka_port == 9092
    assert s.http_port == 8080
    assert s.topics.sr_inbound == "dcc.sr.inbound"


def test_flag_beats_environment_beats_default() -> None:
    env = {"DCCGATE_HTTP_PORT": "9000", "DCCGATE_KAFKA_PORT": "9999"}
    s = build_settings({"http_port": 8181}, env)
    assert s.http_port == 8181
    assert s.kafka_port == 9999


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {"DCCGATE_HTTP_PORT": "eighty"}, "DCCGATE_HTTP_PORT='eighty' is not a whole number"),
        ({"http_port": 70000}, {}, "TCP port"),
        ({"partitions": 0}, {}, "at least 1"),
        ({}, {"DCCGATE_LOG_LEVEL": "LOUD"}, "DCCGATE_LOG_LEVEL"),
        ({"bootstrap": "  "}, {}, "empty"),
        ({}, {"DCCGATE_MIN_INSYNC_REPLICAS": "2"}, "to the replication factor"),
        ({"replication_factor": 0}, {}, "at least 1"),
    ],
)
def test_bad_values_name_the_setting(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        build_settings(flags, env)


def test_embedded_tuning_shortens_group_timing() -> None:
    s = build_settings({}, {})
    k = s.kafka("127.0.0.1:1", embedded=True)
    assert k.session_timeout_ms < 10_000
    assert k.heartbeat_interval_ms < k.session_timeout_ms


def test_group_timing_overrides_apply_on_top_of_embedded_tuning() -> None:
    s = build_settings(
        {},
        {"DCCGATE_SESSION_TIMEOUT_MS": "1000", "DCCGATE_HEARTBEAT_INTERVAL_MS": "100"},
    )
    k = s.kafka("127.0.0.1:1", embedded=True)
    assert (k.session_timeout_ms, k.heartbeat_interval_ms) == (1000, 100)


def test_heartbeat_must_stay_below_session_timeout() -> None:
    with pytest.raises(SettingsError, match="well below"):
        build_settings(
            {},
            {"DCCGATE_SESSION_TIMEOUT_MS": "1000", "DCCGATE_HEARTBEAT_INTERVAL_MS": "1000"},
        )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("demo", "is 4 characters; an operator token must be at least 32"),
        ("x" * 31, "is 31 characters"),
        ("correct horse battery staple, with spaces", "visible ASCII only"),
        ("é" * 40, "visible ASCII only"),
    ],
)
def test_a_weak_operator_token_is_refused_saying_how_to_make_one(token: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        build_settings({}, {"DCCGATE_ADMIN_TOKEN": token})
    assert "secrets.token_urlsafe(32)" in str(refused.value)
    assert token not in str(refused.value)  # never shown, even when refused


def test_a_long_random_operator_token_is_accepted() -> None:
    token = secrets.token_urlsafe(32)
    assert build_settings({}, {"DCCGATE_ADMIN_TOKEN": token}).admin_token_sha256 is not None
    assert build_settings({}, {"DCCGATE_ADMIN_TOKEN": ""}).admin_token_sha256 is None


def test_the_first_operator_token_is_dccgate_token_and_the_old_name_warns_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from workers.config import tokens

    token = "t" * 43
    assert build_settings({}, {"DCCGATE_TOKEN": token}).admin_token == token
    tokens._warned.clear()
    assert build_settings({}, {"DCCGATE_ADMIN_TOKEN": token}).admin_token == token
    assert build_settings({}, {"DCCGATE_ADMIN_TOKEN": token}).admin_token == token
    warnings = capsys.readouterr().err
    assert warnings.count("DCCGATE_ADMIN_TOKEN is deprecated") == 1
    assert token not in warnings
    # Both set: DCCGATE_TOKEN wins, with no warning.
    both = {"DCCGATE_TOKEN": token, "DCCGATE_ADMIN_TOKEN": "u" * 43}
    assert build_settings({}, both).admin_token == token


def test_exactly_once_is_auto_by_default_and_flag_beats_environment() -> None:
    assert build_settings({}, {}).exactly_once == "auto"
    assert build_settings({}, {"DCCGATE_EXACTLY_ONCE": "off"}).exactly_once == "off"
    flags = {"exactly_once": "on"}
    assert build_settings(flags, {"DCCGATE_EXACTLY_ONCE": "off"}).exactly_once == "on"


@pytest.mark.parametrize("raw", ["yes", "ON", "auto ", "true"])
def test_exactly_once_accepts_auto_on_off_only(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"DCCGATE_EXACTLY_ONCE=.*must be auto, on or off"):
        build_settings({}, {"DCCGATE_EXACTLY_ONCE": raw})
