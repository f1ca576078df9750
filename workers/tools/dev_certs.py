"""A test PKI for demos and tests: `dccgate dev make-certs DIR`.

One self-signed issuing CA and, for each demo User, an ECDSA P-256 key and X.509
certificate per usage (`xml-signing`, `command-signing`), in PEM. The certificates follow
the shape of the DCC's reference certificates where it matters to dccgate (P-256 keys,
the User ID in the subject), and nothing here is fit for production: the keys are written
unencrypted.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "DEMO_USERS",
    "DemoCa",
    "IssuedKey",
    "make_ca",
    "run_make_certs",
    "write_demo_pki",
]

DEMO_USERS: tuple[tuple[str, str], ...] = (
    ("90-B3-D5-1F-30-01-00-00", "IS"),
    ("90-B3-D5-1F-30-02-00-00", "GS"),
    ("90-B3-D5-1F-30-03-00-00", "ED"),
)
"""(User ID, role) of the demo Users: an Import Supplier, a Gas Supplier, a DNO."""
USAGE_FILES = {"xml-signing": "xml", "command-signing": "command"}


@dataclass(frozen=True)
class IssuedKey:
    """A key and the certificate the test CA issued for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def cert_pem(self) -> str:
        """The certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def key_pem(self) -> bytes:
        """The private key in unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class DemoCa:
    """A self-signed issuing CA for test certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(
        self,
        user_id: str,
        usage: str,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        not_before: dt.datetime | None = None,
        days: int = 365,
    ) -> IssuedKey:
        """A certificate for `user_id` and `usage` (a new P-256 key unless `key` is given),
        valid from `not_before` (default: an hour ago) for `days`."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, user_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, usage),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedKey(key=key, cert=cert)


def make_ca(name: str = "dccgate test CA") -> DemoCa:
    """A new self-signed P-256 CA, valid ten years from an hour ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, secrets.token_hex(4)),
        ]
    )
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return DemoCa(key=key, cert=cert)


def write_demo_pki(directory: Path) -> list[dict[str, str]]:
    """Write the CA and each demo User's two keys and certificates under `directory`
    (created if missing; existing files are overwritten). Returns the manifest, also
    written as `manifest.json`: one entry per certificate with user_id, role, usage, cert
    and key file names."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    (directory / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    manifest = []
    for user_id, role in DEMO_USERS:
        stem = user_id.replace("-", "")
        for usage, short in USAGE_FILES.items():
            issued = ca.issue(user_id, usage)
            cert_file = f"{stem}-{short}.pem"
            key_file = f"{stem}-{short}.key"
            (directory / cert_file).write_text(issued.cert_pem(), encoding="ascii")
            key_path = directory / key_file
            key_path.write_bytes(issued.key_pem())
            key_path.chmod(0o600)
            manifest.append(
                {
                    "user_id": user_id,
                    "role": role,
                    "usage": usage,
                    "cert": cert_file,
                    "key": key_file,
                }
            )
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def run_make_certs(directory: Path) -> int:
    """`dccgate dev make-certs DIR`: write the demo PKI and say what to do next."""
    manifest = write_demo_pki(directory)
    print(f"test PKI written to {directory} (CA: ca.pem; keys unencrypted, for demos only)")
    for entry in manifest:
        print(f"  {entry['user_id']} {entry['role']:<3} {entry['usage']:<16} {entry['cert']}")
    first = manifest[0]
    print(
        "register a certificate:\n"
        f"  dccgate admin certificates add {first['user_id']} {directory / first['cert']} "
        f"--usage {first['usage']} --role {first['role']}"
    )
    return 0
