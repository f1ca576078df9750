"""The DUIS ingress's settings (workers.config.settings) and its server TLS context."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.duis_xml import USER_A, Pki
from workers.config.settings import SettingsError, build_settings
from workers.ingress.errors import IngressTlsError
from workers.ingress.service import server_tls


def test_defaults_serve_plain_http_on_loopback() -> None:
    settings = build_settings({}, environ={})
    assert (settings.duis_host, settings.duis_port) == ("127.0.0.1", 8081)
    assert settings.duis_tls_cert is None
    assert server_tls(None, None, None) is None


def test_the_environment_sets_port_and_wait() -> None:
    env = {"DCCGATE_DUIS_PORT": "9443", "DCCGATE_DUIS_ANSWER_WAIT_MS": "500"}
    settings = build_settings({}, environ=env)
    assert (settings.duis_port, settings.duis_answer_wait_ms) == (9443, 500)


@pytest.fixture
def pem_pair(tmp_path: Path) -> tuple[str, str]:
    issued = Pki().issue(USER_A, "xml-signing", register=False)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text(issued.cert_pem())
    key.write_bytes(issued.key_pem())
    return str(cert), str(key)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"duis_host": "0.0.0.0"}, "plain HTTP is served on 127.0.0.1 only"),
        ({"duis_port": 70000}, "--duis-port"),
        ({"duis_answer_wait_ms": 60_001}, "DCCGATE_DUIS_ANSWER_WAIT_MS"),
        ({"duis_tls_cert": "/nonexistent.pem"}, "go together"),
        ({"duis_client_ca": "/x.pem"}, "needs HTTPS"),
    ],
)
def test_settings_that_cannot_work_are_refused(flags: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        build_settings(flags, environ={})


def test_tls_elsewhere_than_loopback_is_allowed(pem_pair: tuple[str, str]) -> None:
    cert, key = pem_pair
    flags = {"duis_host": "0.0.0.0", "duis_tls_cert": cert, "duis_tls_key": key}
    assert build_settings(flags, environ={}).duis_host == "0.0.0.0"


def test_a_missing_tls_file_is_named(pem_pair: tuple[str, str]) -> None:
    cert, _ = pem_pair
    with pytest.raises(SettingsError, match=r"--duis-tls-key '/nope\.pem' is not a readable"):
        build_settings({"duis_tls_cert": cert, "duis_tls_key": "/nope.pem"}, environ={})


def test_server_tls_with_and_without_client_certificates(pem_pair: tuple[str, str]) -> None:
    cert, key = pem_pair
    context = server_tls(cert, key, None)
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    mutual = server_tls(cert, key, cert)
    assert mutual is not None
    assert mutual.verify_mode == ssl.CERT_REQUIRED


def test_server_tls_names_a_key_that_does_not_match(
    pem_pair: tuple[str, str], tmp_path: Path
) -> None:
    cert, _ = pem_pair
    other = tmp_path / "other.key"
    other.write_bytes(Pki().issue(USER_A, "xml-signing", register=False).key_pem())
    with pytest.raises(IngressTlsError, match="--duis-tls-cert"):
        server_tls(cert, str(other), None)
