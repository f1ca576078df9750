"""workers.duis.certificates: parsing certificates for the registry, and the index."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.duis_xml import USER_A, USER_B, Pki
from workers.duis.certificates import CertificateError, normalise_issuer, parse_certificate


def test_a_p256_certificate_is_parsed() -> None:
    issued = Pki().issue(USER_A, "xml-signing", register=False)
    parsed = parse_certificate(issued.cert_pem())
    assert parsed.serial == str(issued.cert.serial_number)
    assert len(parsed.fingerprint_sha256) == 64
    assert parsed.not_before_ms < parsed.not_after_ms


def _p384_pem() -> str:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p384")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("pem", "says"),
    [
        ("", "exactly one"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a readable"),
        ("x" * 20_000, "at most"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "exactly one"),
    ],
)
def test_what_is_not_one_certificate_is_refused(pem: str, says: str) -> None:
    with pytest.raises(CertificateError, match=says):
        parse_certificate(pem)


def test_two_certificates_in_one_pem_are_refused() -> None:
    pem = Pki().issue(USER_A, "xml-signing", register=False).cert_pem()
    with pytest.raises(CertificateError, match="exactly one"):
        parse_certificate(pem + pem)


def test_a_key_not_on_p256_is_refused() -> None:
    with pytest.raises(CertificateError, match="P-256"):
        parse_certificate(_p384_pem())


def test_issuer_names_compare_whatever_their_spelling() -> None:
    assert normalise_issuer("CN=U1, OU=07") == normalise_issuer("OU=07,CN=U1")
    assert normalise_issuer("commonName=U1,2.5.4.11=07") == normalise_issuer("CN=U1, OU=07")
    assert normalise_issuer("CN=U1, OU=07") != normalise_issuer("CN=U1, OU=08")


def test_the_index_finds_by_issuer_and_serial_and_keeps_command_keys() -> None:
    pki = Pki()
    a = pki.issue(USER_A, "xml-signing")
    b = pki.issue(USER_B, "command-signing", "GS")
    index = pki.index()
    found = index.by_issuer_serial(a.cert.issuer.rfc4514_string(), str(a.cert.serial_number))
    assert [r.user_id for r in found] == [USER_A]
    entry_b = pki.registered[USER_B][0]
    assert [r.user_id for r in index.command_signing(entry_b.public_key_sha256)] == [USER_B]
    assert index.command_signing(pki.registered[USER_A][0].public_key_sha256) == []
    assert b.cert.serial_number != a.cert.serial_number
