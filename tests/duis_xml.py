"""Real-shaped DUIS requests and a test PKI, shared by the unit, integration and benchmark
code of the DUIS ingress (issue #16).

Requests are built from the SRV catalogue's own element names (`Srv.body_element`), in the
envelope of the DCC's reference requests (DOMAIN.md section 2.1); certificates come from the
test CA of `workers.tools.dev_certs`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from workers.duis.catalogue import Srv
from workers.duis.certificates import (
    CertificateEntry,
    CertificateIndex,
    UserCertificates,
    entry_from,
    parse_certificate,
)
from workers.duis.signature import sign_gbcs, sign_request
from workers.duis.xml_request import web_service_for
from workers.tools.dev_certs import DemoCa, IssuedKey, make_ca
from workers.tools.loadtest.duis import request_xml

USER_A = "90-B3-D5-1F-30-01-00-00"
USER_B = "90-B3-D5-1F-30-02-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
DCC = "90-B3-D5-1F-30-00-00-02"


def default_cv(srv: Srv) -> int:
    """The Command Variant a first submission of `srv` uses: 8 non-device, 4 critical
    (to Transform), 1 otherwise."""
    if srv.non_device:
        return 8
    return 4 if srv.critical else 1


def service_of(cv: int) -> str:
    """The web service of a Command Variant."""
    service = web_service_for(cv)
    assert service is not None
    return service


def build_request(
    srv: Srv,
    *,
    user: str = USER_A,
    counter: int = 1000,
    cv: int | None = None,
    schema_version: str = "5.4",
    body: str | None = None,
    gbcs_payload: bytes = b"\x11\x00GBCS-command",
) -> bytes:
    """An unsigned DUIS request for `srv` in the reference requests' envelope.

    cv: default `default_cv(srv)`; 5, 6 or 7 make a Signed Pre-Command whose body is
    `sr:SignedPreCommand` carrying `gbcs_payload` (base64). body: the body element's XML to
    use instead of `<sr:{body_element}>` with an execution time.
    """
    cv = default_cv(srv) if cv is None else cv
    target = DCC if srv.non_device else DEVICE
    # The load test's builder (`dccgate loadtest --via duis`): one envelope for both.
    return request_xml(
        srv,
        request_id=f"{user}:{target}:{counter}",
        command_variant=cv,
        schema_version=schema_version,
        body={"execution_date_time": "2026-12-07T00:00:00Z"},
        gbcs_payload=gbcs_payload,
        body_xml=body,
    )


@dataclass
class Pki:
    """A test CA and the keys issued from it, with their registrations."""

    ca: DemoCa = field(default_factory=make_ca)
    registered: dict[str, list[CertificateEntry]] = field(default_factory=dict)

    def issue(
        self, user: str, usage: str, role: str = "IS", *, register: bool = True, **kw: object
    ) -> IssuedKey:
        """A key and certificate for `user`; registered (now) unless `register` is False."""
        issued = self.ca.issue(user, usage, **kw)  # type: ignore[arg-type]
        if register:
            self.register(user, issued, usage, role)
        return issued

    def register(
        self, user: str, issued: IssuedKey, usage: str, role: str = "IS"
    ) -> CertificateEntry:
        """Register `issued` for `user`."""
        pem = issued.cert_pem()
        entry = entry_from(
            parse_certificate(pem),
            pem=pem,
            usage=usage,  # type: ignore[arg-type]
            role=role,
            by="test",
            now_ms=int(time.time() * 1000),
        )
        self.registered.setdefault(user, []).append(entry)
        return entry

    def index(self) -> CertificateIndex:
        """The registrations as the ingress sees them."""
        return CertificateIndex.build(
            {u: UserCertificates(certificates=list(e)) for u, e in self.registered.items()}
        )


def signed(xml: bytes, issued: IssuedKey) -> bytes:
    """`xml` signed with `issued`'s key, naming its certificate."""
    return sign_request(xml, issued.key, issued.cert)


def signed_pre_command(srv: Srv, command_key: IssuedKey | None, **kw: object) -> bytes:
    """An unsigned CV 5 request whose GBCS command is signed with `command_key` (or not
    signed at all when None)."""
    command = b"\xdf\x09\x00\x01GBCS-critical-command-" + srv.srv.encode()
    payload = command if command_key is None else sign_gbcs(command, command_key.key)
    return build_request(srv, cv=5, gbcs_payload=payload, **kw)  # type: ignore[arg-type]


def every_srv(catalogue: Iterable[Srv]) -> list[Srv]:
    """The catalogue's SRVs in order."""
    return list(catalogue)
