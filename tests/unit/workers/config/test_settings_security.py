"""TLS and SASL settings from the DCCGATE_KAFKA_* environment (workers/config/settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tlsca import make_ca
from workers.config.settings import SettingsError, build_settings

SECRET = "s3cret-Pa55word"


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    return str(make_ca(tmp_path / "ca").pem)


def env_of(ca_file: str, **over: str) -> dict[str, str]:
    return {
        "DCCGATE_BOOTSTRAP": "kafka:9093",
        "DCCGATE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "DCCGATE_KAFKA_SSL_CA_FILE": ca_file,
        "DCCGATE_KAFKA_SASL_USERNAME": "dccgate-router",
        "DCCGATE_KAFKA_SASL_PASSWORD": SECRET,
        **over,
    }


def test_no_variables_means_plaintext() -> None:
    settings = build_settings({}, {})
    assert settings.kafka_security.protocol == "PLAINTEXT"
    assert settings.kafka("k:9092", embedded=False).security.protocol == "PLAINTEXT"


def test_sasl_ssl_from_the_environment_reaches_the_client_settings(ca_file: str) -> None:
    settings = build_settings({}, env_of(ca_file, DCCGATE_KAFKA_SASL_MECHANISM="plain"))
    security = settings.kafka_security
    assert (security.protocol, security.sasl_mechanism) == ("SASL_SSL", "PLAIN")
    assert security.sasl_password == SECRET
    kafka = settings.kafka("kafka:9093", embedded=False)
    assert kafka.security == security
    assert kafka.consumer_kwargs()["sasl_plain_username"] == "dccgate-router"
    assert SECRET not in repr(settings)
    assert SECRET not in repr(kafka)
    # The embedded broker speaks PLAINTEXT only.
    assert settings.kafka("127.0.0.1:9092", embedded=True).security.protocol == "PLAINTEXT"


def test_the_password_from_a_file_loses_its_newline(ca_file: str, tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    env = env_of(ca_file, DCCGATE_KAFKA_SASL_PASSWORD_FILE=str(path))
    del env["DCCGATE_KAFKA_SASL_PASSWORD"]
    assert build_settings({}, env).kafka_security.sasl_password == SECRET


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "on one line, alone"),
        (b"\n", "on one line, alone"),
        (b"one\ntwo\n", "on one line, alone"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * 5000, "over 4096 bytes"),
    ],
)
def test_a_bad_password_file_is_refused(
    ca_file: str, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "password"
    path.write_bytes(content)
    env = env_of(ca_file, DCCGATE_KAFKA_SASL_PASSWORD_FILE=str(path))
    del env["DCCGATE_KAFKA_SASL_PASSWORD"]
    with pytest.raises(SettingsError, match=message):
        build_settings({}, env)


def test_password_file_problems_name_the_variable(ca_file: str, tmp_path: Path) -> None:
    env = env_of(ca_file, DCCGATE_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="not both"):
        build_settings({}, env)
    del env["DCCGATE_KAFKA_SASL_PASSWORD"]
    with pytest.raises(SettingsError, match="DCCGATE_KAFKA_SASL_PASSWORD_FILE: cannot read"):
        build_settings({}, env)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"DCCGATE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "must be one of PLAINTEXT"),
        ({"DCCGATE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "must be one of SCRAM-SHA-512, PLAIN"),
        ({"DCCGATE_KAFKA_SASL_USERNAME": ""}, "needs a SASL user name"),
        ({"DCCGATE_KAFKA_SASL_PASSWORD": ""}, "needs a SASL password"),
        ({"DCCGATE_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "does not exist"),
        ({"DCCGATE_KAFKA_SSL_CERT_FILE": "/x/c.pem"}, "both the certificate file and its key"),
        ({"DCCGATE_BOOTSTRAP": ""}, "the embedded broker speaks PLAINTEXT only"),
    ],
)
def test_unusable_security_settings_are_refused(
    ca_file: str, over: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        build_settings({}, env_of(ca_file, **over))
    assert SECRET not in str(caught.value)


def test_a_flag_cannot_carry_the_password(ca_file: str) -> None:
    """Only the environment sets security: a flag of that name (none exists) is ignored."""
    env = env_of(ca_file)
    settings = build_settings({"sasl_password": "from-a-flag", "kafka_security": None}, env)
    assert settings.kafka_security.sasl_password == SECRET
