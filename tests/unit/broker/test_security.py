"""broker/security.py: TLS and SASL settings, their client arguments, and the errors."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from broker.errors import BrokerError, KafkaSecurityError
from broker.security import (
    KafkaSecurity,
    client_kwargs,
    explain,
    librdkafka_config,
    ssl_context,
)
from broker.settings import KafkaSettings
from tests.tlsca import make_ca

SECRET = "s3cret-Pa55word"
BOOT = "kafka:9093"


def sasl(tmp_path: Path, **over: object) -> KafkaSecurity:
    ca = make_ca(tmp_path / "ca")
    values: dict[str, object] = {
        "protocol": "SASL_SSL",
        "ca_file": str(ca.pem),
        "sasl_username": "dccgate-router",
        "sasl_password": SECRET,
    }
    values.update(over)
    return KafkaSecurity(**values)  # type: ignore[arg-type]


def test_the_default_is_plaintext_and_adds_nothing_but_the_protocol() -> None:
    security = KafkaSecurity()
    assert security.problems() == []
    assert client_kwargs(security) == {"security_protocol": "PLAINTEXT"}
    assert librdkafka_config(security) == {"security.protocol": "plaintext"}


def test_the_password_never_shows_in_repr(tmp_path: Path) -> None:
    security = sasl(tmp_path)
    settings = KafkaSettings(bootstrap=BOOT, security=security)
    assert SECRET not in repr(security)
    assert SECRET not in repr(settings)
    assert "dccgate-router" in repr(security)


def test_sasl_ssl_gives_every_aiokafka_client_tls_and_the_login(tmp_path: Path) -> None:
    security = sasl(tmp_path, sasl_mechanism="PLAIN")
    kwargs = client_kwargs(security)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert kwargs["ssl_context"].check_hostname
    assert kwargs["ssl_context"].minimum_version == ssl.TLSVersion.TLSv1_2
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == ("PLAIN", "dccgate-router")
    assert kwargs["sasl_plain_password"] == SECRET
    settings = KafkaSettings(bootstrap=BOOT, security=security)
    for made in (settings.consumer_kwargs(), settings.producer_kwargs(), settings.admin_kwargs()):
        assert made["ssl_context"] is kwargs["ssl_context"]  # built once
        assert made["sasl_plain_username"] == "dccgate-router"


def test_ssl_with_a_client_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    cert, key = ca.issue("client", server=False)
    security = KafkaSecurity(
        protocol="SSL", ca_file=str(ca.pem), cert_file=str(cert), key_file=str(key)
    )
    assert security.problems() == []
    kwargs = client_kwargs(security)
    assert kwargs["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in kwargs
    assert librdkafka_config(security) == {
        "security.protocol": "ssl",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca.pem),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }


def test_librdkafka_gets_the_same_login(tmp_path: Path) -> None:
    config = librdkafka_config(sasl(tmp_path))
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("dccgate-router", SECRET)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"protocol": "SASL_SSL", "sasl_password": "x"}, "needs a SASL user name"),
        ({"protocol": "SASL_SSL", "sasl_username": "u"}, "needs a SASL password"),
        ({"protocol": "SSL", "sasl_username": "u"}, "needs protocol SASL_SSL"),
        ({"protocol": "SSL", "cert_file": "c.pem"}, "both the certificate file and its key"),
        ({"ca_file": "ca.pem"}, "need protocol SSL or SASL_SSL"),
    ],
)
def test_incomplete_settings_are_named(values: dict[str, str], problem: str) -> None:
    problems = KafkaSecurity(**values).problems()  # type: ignore[arg-type]
    assert any(problem in p for p in problems), problems


def test_unusable_files_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KafkaSecurityError, match="does not exist"):
        ssl_context(KafkaSecurity(protocol="SSL", ca_file=str(tmp_path / "missing.pem")))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\n\xff\xfe\n-----END CERTIFICATE-----\n")
    with pytest.raises(KafkaSecurityError, match="no usable PEM certificate"):
        ssl_context(KafkaSecurity(protocol="SSL", ca_file=str(garbage)))
    ca = make_ca(tmp_path / "a")
    cert, _ = ca.issue("one", server=False)
    _, other_key = ca.issue("two", server=False)
    with pytest.raises(KafkaSecurityError, match="cannot load the Kafka client certificate"):
        ssl_context(
            KafkaSecurity(
                protocol="SSL", ca_file=str(ca.pem), cert_file=str(cert), key_file=str(other_key)
            )
        )
    assert issubclass(KafkaSecurityError, BrokerError)


def _wrapped(cause: BaseException) -> BrokerError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise KafkaConnectionError("Unable to bootstrap") from exc
    except KafkaConnectionError as exc:
        wrapper = BrokerError("delivery failed")
        wrapper.__cause__ = exc
        return wrapper


def test_explain_finds_the_reason_along_the_chain(tmp_path: Path) -> None:
    security = sasl(tmp_path)
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    said = explain(_wrapped(verify), security, BOOT)
    assert said is not None
    assert "certificate was not accepted (unable to get local issuer certificate)" in said
    assert security.ca_file is not None
    assert security.ca_file in said
    login = explain(_wrapped(SaslAuthenticationFailed("bad")), security, BOOT)
    assert login is not None
    assert "refused the login of SASL user 'dccgate-router' (SCRAM-SHA-512)" in login
    acl = explain(_wrapped(TopicAuthorizationFailedError("t.dcc.sr.inbound")), security, BOOT)
    assert acl is not None
    assert "access to a topic" in acl
    assert "t.dcc.sr.inbound" in acl
    group = explain(GroupAuthorizationFailedError(), security, BOOT)
    assert group is not None
    assert "consumer group" in group
    for said in (login, acl, group):
        assert SECRET not in said


def test_explain_leaves_other_errors_alone(tmp_path: Path) -> None:
    assert explain(UnknownTopicOrPartitionError(), sasl(tmp_path), BOOT) is None
    assert explain(ValueError("x"), KafkaSecurity(), BOOT) is None
    # A cause chain that loops does not hang.
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert explain(a, KafkaSecurity(), BOOT) is None
