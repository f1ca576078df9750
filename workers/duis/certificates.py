"""The certificate registry's records: which X.509 certificate belongs to which User, for
what usage, in which role.

A User registers each certificate it signs with (`POST /v1/users/{id}/certificates`). The
ingress finds the certificate a DUIS request names by `X509IssuerSerial`, and takes the
User and the role from the registration, never from the request. Pure: parsing with
`cryptography`, no I/O, time as an argument.

The signing-key separation control (SEC Appendix AD clause 3.3.1: a User signs XML Service
Requests with a different key from the one that signs its Signed Pre-Commands) rests on
`public_key_sha256`: the same public key in two certificates is the same key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from msgspec import Meta, Struct

__all__ = [
    "MAX_CERTIFICATES_PER_USER",
    "MAX_PEM_CHARS",
    "USAGES",
    "CertificateEntry",
    "CertificateError",
    "CertificateIndex",
    "ParsedCertificate",
    "Registered",
    "Usage",
    "UserCertificates",
    "normalise_issuer",
    "parse_certificate",
]

Usage = Literal["xml-signing", "command-signing"]
USAGES: tuple[str, ...] = ("xml-signing", "command-signing")
MAX_PEM_CHARS = 16_384
"""A P-256 certificate in PEM is under 1 KiB; 16 KiB leaves room for long names and stays
small enough that a hostile body cannot make parsing costly."""
MAX_CERTIFICATES_PER_USER = 100
"""Registrations kept per User, revoked ones included (they keep the key-separation record)."""

_Hex64 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
_Role = Literal["IS", "ES", "GS", "ED", "GT", "RSA", "OU", "LC"]
_Ms = Annotated[int, Meta(ge=0)]
_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*\Z"
)


class CertificateError(ValueError):
    """A certificate that cannot be registered; the message names what is wrong."""


class CertificateEntry(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One registered certificate of a User (an element of `UserCertificates`)."""

    fingerprint_sha256: _Hex64
    """SHA-256 of the certificate's DER, lower-case hex: its identity in the API."""
    pem: Annotated[str, Meta(max_length=MAX_PEM_CHARS)]
    usage: Usage
    role: _Role
    """The User Role this certificate signs in: the role the ingress puts in `user_role`."""
    issuer: Annotated[str, Meta(max_length=2048)]
    """The issuer's distinguished name, RFC 4514."""
    serial: Annotated[str, Meta(pattern="^[0-9]{1,60}$")]
    """The serial number in decimal (as `X509SerialNumber` writes it)."""
    public_key_sha256: _Hex64
    """SHA-256 of the DER SubjectPublicKeyInfo: equal keys, equal hashes."""
    not_before_ms: _Ms
    not_after_ms: _Ms
    added_at_ms: _Ms
    added_by: Annotated[str, Meta(max_length=200)]
    revoked_at_ms: _Ms | None = None
    revoked_by: Annotated[str, Meta(max_length=200)] | None = None


class UserCertificates(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A User's registered certificates: the value at `certificates/<user_id>` on
    dcc.control. Written by `POST`/`DELETE /v1/users/{id}/certificates`, not by PUT."""

    certificates: Annotated[list[CertificateEntry], Meta(max_length=MAX_CERTIFICATES_PER_USER)]


@dataclass(frozen=True, slots=True)
class ParsedCertificate:
    """What the registry needs of a PEM certificate, with the parsed object."""

    cert: x509.Certificate
    fingerprint_sha256: str
    issuer: str
    serial: str
    public_key_sha256: str
    not_before_ms: int
    not_after_ms: int


def parse_certificate(pem: str) -> ParsedCertificate:
    """Parse one PEM certificate with an ECDSA P-256 key (DUIS signs with ECDSA P-256).

    Raises CertificateError naming the problem: not a single PEM certificate, too long,
    not X.509, or a key that is not on P-256.
    """
    if len(pem) > MAX_PEM_CHARS:
        raise CertificateError(f"pem is {len(pem)} characters; at most {MAX_PEM_CHARS}")
    text = pem.strip()
    if not _PEM_BLOCK.fullmatch(text) or text.count("-----BEGIN") != 1:
        raise CertificateError(
            "pem must hold exactly one '-----BEGIN CERTIFICATE-----' block (base64 only)"
        )
    try:
        cert = x509.load_pem_x509_certificate(text.encode("ascii"))
    except ValueError as exc:
        raise CertificateError(f"pem is not a readable X.509 certificate: {exc}") from None
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateError(
            "the certificate's key is not ECDSA on P-256 (secp256r1), which DUIS signatures use"
        )
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return ParsedCertificate(
        cert=cert,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        issuer=cert.issuer.rfc4514_string(),
        serial=str(cert.serial_number),
        public_key_sha256=hashlib.sha256(spki).hexdigest(),
        not_before_ms=int(cert.not_valid_before_utc.timestamp() * 1000),
        not_after_ms=int(cert.not_valid_after_utc.timestamp() * 1000),
    )


_RDN_SPLIT = re.compile(r"(?<!\\)[,+;]")
_ATTR_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.11": "OU",
    "2.5.4.10": "O",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "COMMONNAME": "CN",
    "ORGANIZATIONALUNITNAME": "OU",
    "ORGANIZATIONNAME": "O",
    "COUNTRYNAME": "C",
    "LOCALITYNAME": "L",
    "STATEORPROVINCENAME": "ST",
    "S": "ST",
}


def normalise_issuer(name: str) -> tuple[tuple[str, str], ...]:
    """A distinguished name as a sorted tuple of (attribute, value) pairs, so that
    `CN=U1, OU=07` (the DUIS templates' spelling) and `OU=07,CN=U1` (RFC 4514 order) match.

    Attribute types are upper-cased and common OIDs and long names mapped to short names;
    values keep their case with surrounding spaces dropped.
    """
    pairs = []
    for part in _RDN_SPLIT.split(name):
        attr, sep, value = part.partition("=")
        if not sep:
            continue
        key = attr.strip().upper()
        if key.startswith("OID."):
            key = key[4:]
        pairs.append((_ATTR_NAMES.get(key, key), value.strip().replace("\\", "")))
    return tuple(sorted(pairs))


@dataclass(frozen=True, slots=True)
class Registered:
    """A registered certificate and the User it belongs to."""

    user_id: str
    entry: CertificateEntry


class CertificateIndex:
    """Every User's registered certificates, looked up the ways the ingress needs.

    Built once per configuration snapshot (`CertificateIndex.build`), then read-only.
    """

    def __init__(self, registered: Iterable[Registered]) -> None:
        self._by_issuer_serial: dict[tuple[tuple[tuple[str, str], ...], str], list[Registered]] = {}
        self._command_keys: dict[str, list[Registered]] = {}
        self._by_user: dict[str, list[Registered]] = {}
        self._loaded: dict[str, x509.Certificate] = {}
        for item in registered:
            key = (normalise_issuer(item.entry.issuer), item.entry.serial)
            self._by_issuer_serial.setdefault(key, []).append(item)
            self._by_user.setdefault(item.user_id, []).append(item)
            if item.entry.usage == "command-signing":
                # Revoked command-signing keys count too: a key once used to sign GBCS
                # commands must never sign XML (SEC Appendix AD 3.3.1).
                self._command_keys.setdefault(item.entry.public_key_sha256, []).append(item)

    @classmethod
    def build(cls, items: Mapping[str, UserCertificates]) -> CertificateIndex:
        """From `{user_id: UserCertificates}`."""
        return cls(
            Registered(user_id, entry)
            for user_id, certs in items.items()
            for entry in certs.certificates
        )

    def by_issuer_serial(self, issuer: str, serial: str) -> list[Registered]:
        """The registrations of the certificate with this issuer and decimal serial."""
        return self._by_issuer_serial.get((normalise_issuer(issuer), serial), [])

    def command_signing(self, public_key_sha256: str) -> list[Registered]:
        """Registrations (any User, revoked or not) of this key for command-signing."""
        return self._command_keys.get(public_key_sha256, [])

    def certificate(self, entry: CertificateEntry) -> x509.Certificate:
        """`entry`'s certificate, parsed once per index (a PEM parse costs tens of us)."""
        cert = self._loaded.get(entry.fingerprint_sha256)
        if cert is None:
            cert = x509.load_pem_x509_certificate(entry.pem.encode("ascii"))
            self._loaded[entry.fingerprint_sha256] = cert
        return cert

    def of_user(self, user_id: str) -> list[Registered]:
        """Every registration of `user_id`."""
        return self._by_user.get(user_id, [])


def entry_from(
    parsed: ParsedCertificate, *, pem: str, usage: Usage, role: str, by: str, now_ms: int
) -> CertificateEntry:
    """A new registration of `parsed` (role checked by msgspec against the role list)."""
    return msgspec.convert(
        {
            "fingerprint_sha256": parsed.fingerprint_sha256,
            "pem": pem.strip(),
            "usage": usage,
            "role": role,
            "issuer": parsed.issuer,
            "serial": parsed.serial,
            "public_key_sha256": parsed.public_key_sha256,
            "not_before_ms": parsed.not_before_ms,
            "not_after_ms": parsed.not_after_ms,
            "added_at_ms": now_ms,
            "added_by": by[:200],
        },
        CertificateEntry,
    )
