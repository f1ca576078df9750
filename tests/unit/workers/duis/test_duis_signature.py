"""workers.duis.signature: the XML signature, the certificate it names, and the signing-key
separation control (SEC Appendix AD 3.3.1)."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from collections.abc import Callable

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from tests.duis_xml import (
    USER_A,
    USER_B,
    Pki,
    build_request,
    default_cv,
    service_of,
    signed,
    signed_pre_command,
)
from workers.duis.catalogue import load_catalogue
from workers.duis.certificates import CertificateIndex, UserCertificates
from workers.duis.signature import SignatureRefusal, gbcs_signature, sign_gbcs, verify_request
from workers.duis.xml_request import DSIG_NS, DuisRequest, read_request
from workers.tools.dev_certs import IssuedKey

CATALOGUE = load_catalogue()
READ = CATALOGUE["4.1.1"]


def now_ms() -> int:
    return int(time.time() * 1000)


def read(data: bytes) -> DuisRequest:
    root_cv = int(data.split(b"<sr:CommandVariant>")[1][:1])
    return read_request(data, service=service_of(root_cv), catalogue=CATALOGUE)  # type: ignore[arg-type]


def refused(data: bytes, index: CertificateIndex) -> SignatureRefusal:
    with pytest.raises(SignatureRefusal) as caught:
        verify_request(read(data), index, now_ms=now_ms())
    return caught.value


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def xml_a(pki: Pki) -> IssuedKey:
    return pki.issue(USER_A, "xml-signing", "IS")


@pytest.mark.parametrize("key", list(CATALOGUE))
def test_every_srv_signed_with_a_registered_certificate_verifies(key: str) -> None:
    pki = Pki()
    role = sorted(CATALOGUE[key].roles)[0]
    issued = pki.issue(USER_A, "xml-signing", role)
    srv = CATALOGUE[key]
    verified = verify_request(
        read(signed(build_request(srv, cv=default_cv(srv)), issued)), pki.index(), now_ms=now_ms()
    )
    assert verified.user_id == USER_A
    assert verified.role == role  # the role registered with the certificate, not declared
    assert verified.fingerprint_sha256 == pki.registered[USER_A][0].fingerprint_sha256


def test_a_tampered_body_or_signature_is_refused(pki: Pki, xml_a: IssuedKey) -> None:
    good = signed(build_request(READ), xml_a)
    tampered = good.replace(b"2026-12-07T00:00:00Z", b"2026-12-08T00:00:00Z")
    assert refused(tampered, pki.index()).kind == "signature_invalid"
    value_at = good.index(b"<ds:SignatureValue>") + len(b"<ds:SignatureValue>")
    flipped = (
        good[:value_at]
        + (b"A" if good[value_at : value_at + 1] != b"A" else b"B")
        + good[value_at + 1 :]
    )
    assert refused(flipped, pki.index()).kind == "signature_invalid"


def test_an_unsigned_request_is_refused(pki: Pki) -> None:
    assert refused(build_request(READ), pki.index()).reason.startswith("the request is not signed")


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (b"xml-exc-c14n#", b"xml-c14n11", "exclusive C14N"),
        (b"xmldsig-more#ecdsa-sha256", b"xmldsig-more#ecdsa-sha384", "ECDSA P-256 and SHA-256"),
        (b"xmlenc#sha256", b"xmlenc#sha512", "SHA-256"),
        (b'URI=""', b'URI="#x"', 'URI=""'),
    ],
)
def test_algorithms_other_than_duis_are_refused(
    pki: Pki,
    xml_a: IssuedKey,
    old: bytes,
    new: bytes,
    says: str,
) -> None:
    data = signed(build_request(READ), xml_a).replace(old, new, 1)
    problem = refused(data, pki.index())
    assert problem.kind == "signature_invalid"
    assert says in problem.reason


def test_a_certificate_nobody_registered_is_refused(pki: Pki) -> None:
    stranger = pki.issue(USER_A, "xml-signing", register=False)
    assert refused(signed(build_request(READ), stranger), pki.index()).kind == "certificate_unknown"


def test_another_users_certificate_is_refused(pki: Pki) -> None:
    theirs = pki.issue(USER_B, "xml-signing", "GS")
    problem = refused(signed(build_request(READ, user=USER_A), theirs), pki.index())
    assert problem.kind == "certificate_not_originators"
    assert USER_A in problem.reason


def test_a_revoked_certificate_is_refused() -> None:
    pki = Pki()
    issued = pki.issue(USER_A, "xml-signing")
    entry = pki.registered[USER_A][0]
    pki.registered[USER_A][0] = msgspec.structs.replace(entry, revoked_at_ms=now_ms() - 1)
    assert refused(signed(build_request(READ), issued), pki.index()).kind == "certificate_revoked"


@pytest.mark.parametrize("days_ago", [400, -2])
def test_a_certificate_outside_its_validity_is_refused(days_ago: int) -> None:
    pki = Pki()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    issued = pki.issue(USER_A, "xml-signing", not_before=start, days=30 if days_ago > 0 else 365)
    assert refused(signed(build_request(READ), issued), pki.index()).kind == "certificate_expired"


def test_the_issuer_name_matches_in_any_rdn_order_and_spacing(pki: Pki, xml_a: IssuedKey) -> None:
    data = signed(build_request(READ), xml_a)
    name = xml_a.cert.issuer.rfc4514_string().encode()  # "OU=...,CN=dccgate test CA"
    ou, cn = name.split(b",")
    respelled = data.replace(name, cn.replace(b"CN=", b"CN = ") + b", " + ou)
    # The digest covers the signature's SignedInfo only, not KeyInfo: still verifies.
    assert verify_request(read(respelled), pki.index(), now_ms=now_ms()).user_id == USER_A


# The signing-key separation control (SEC Appendix AD 3.3.1).


def test_xml_signed_with_a_command_signing_certificate_is_refused() -> None:
    pki = Pki()
    command = pki.issue(USER_A, "command-signing")
    problem = refused(signed(build_request(READ), command), pki.index())
    assert problem.kind == "key_separation"
    assert "command-signing" in problem.reason


def test_xml_signed_with_a_key_another_user_registered_for_commands_is_refused() -> None:
    pki = Pki()
    key = ec.generate_private_key(ec.SECP256R1())
    as_xml = pki.ca.issue(USER_A, "xml-signing", key=key)
    pki.register(USER_A, as_xml, "xml-signing")
    # Registration refuses this (routes_certificates); a record from before the control, or
    # written around the API, must still not let the key sign XML.
    pki.register(USER_B, pki.ca.issue(USER_B, "command-signing", key=key), "command-signing")
    problem = refused(signed(build_request(READ), as_xml), pki.index())
    assert problem.kind == "key_separation"


def test_a_revoked_command_signing_key_still_may_not_sign_xml() -> None:
    pki = Pki()
    key = ec.generate_private_key(ec.SECP256R1())
    pki.register(USER_A, pki.ca.issue(USER_A, "command-signing", key=key), "command-signing")
    entry = pki.registered[USER_A][0]
    pki.registered[USER_A][0] = msgspec.structs.replace(entry, revoked_at_ms=1)
    as_xml = pki.ca.issue(USER_A, "xml-signing", key=key)
    pki.register(USER_A, as_xml, "xml-signing")
    assert refused(signed(build_request(READ), as_xml), pki.index()).kind == "key_separation"


def test_a_signed_pre_command_signed_with_the_users_command_key_passes() -> None:
    pki = Pki()
    xml_key = pki.issue(USER_A, "xml-signing")
    command_key = pki.issue(USER_A, "command-signing")
    data = signed(signed_pre_command(CATALOGUE["7.2"], command_key), xml_key)
    verified = verify_request(read(data), pki.index(), now_ms=now_ms())
    assert verified.command_fingerprint_sha256 == pki.registered[USER_A][1].fingerprint_sha256


@pytest.mark.parametrize("signer", ["xml", "none", "other-user", "unregistered"])
def test_a_signed_pre_command_not_signed_with_the_users_command_key_is_refused(signer: str) -> None:
    pki = Pki()
    xml_key = pki.issue(USER_A, "xml-signing")
    pki.issue(USER_A, "command-signing")
    keys = {
        "xml": xml_key,
        "none": None,
        "other-user": pki.issue(USER_B, "command-signing", "GS"),
        "unregistered": pki.issue(USER_A, "command-signing", register=False),
    }
    data = signed(signed_pre_command(CATALOGUE["7.2"], keys[signer]), xml_key)
    problem = refused(data, pki.index())
    assert problem.kind == "key_separation"
    if signer == "xml":
        assert "same key as the XML" in problem.reason


def test_gbcs_signature_reads_the_trailing_length_octet_and_r_s() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    command = b"\xdf\x09" + bytes(40)
    signed_command = sign_gbcs(command, key)
    assert len(signed_command) == len(command) + 65
    split = gbcs_signature(signed_command)
    assert split is not None
    assert split[0] == command
    assert gbcs_signature(command) is None
    assert gbcs_signature(b"\x40" + bytes(64)) is None  # nothing signed before it
    assert gbcs_signature(b"x" + b"\x40" + bytes(64)) is None  # r = s = 0


def test_index_of_nothing_refuses_every_certificate(xml_a: IssuedKey) -> None:
    empty = CertificateIndex.build({USER_A: UserCertificates(certificates=[])})
    assert refused(signed(build_request(READ), xml_a), empty).kind == "certificate_unknown"


# The one profile DUIS signs with: anything else is refused before any cryptography, even
# when its signature is valid (re-signed below with the registered key).


def resigned(
    data: bytes, issued: IssuedKey, edit: Callable[[etree._Element, etree._Element], None]
) -> bytes:
    """`data` with `edit(root, signature)` applied, then ds:SignedInfo signed again with
    `issued`'s key, so only the edit can be what is refused."""
    root = etree.fromstring(data)
    signature = root.find(f"{{{DSIG_NS}}}Signature")
    assert signature is not None
    edit(root, signature)
    signed_info = signature.find(f"{{{DSIG_NS}}}SignedInfo")
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    r, s = decode_dss_signature(issued.key.sign(canonical, ec.ECDSA(hashes.SHA256())))
    value = signature.find(f"{{{DSIG_NS}}}SignatureValue")
    assert value is not None
    value.text = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _ds(element: etree._Element, path: str) -> etree._Element:
    found = element.find("/".join(f"{{{DSIG_NS}}}{p}" for p in path.split("/")))
    assert found is not None, path
    return found


def _enveloped_only(root: etree._Element, sig: etree._Element) -> None:
    transforms = _ds(sig, "SignedInfo/Reference/Transforms")
    transforms.remove(transforms[1])


def _inclusive_namespaces(root: etree._Element, sig: etree._Element) -> None:
    etree.SubElement(
        _ds(sig, "SignedInfo/CanonicalizationMethod"),
        "{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces",
        PrefixList="sr",
    )


def _reference_type(root: etree._Element, sig: etree._Element) -> None:
    _ds(sig, "SignedInfo/Reference").set("Type", "http://www.w3.org/2000/09/xmldsig#Object")


def _object(root: etree._Element, sig: etree._Element) -> None:
    etree.SubElement(sig, f"{{{DSIG_NS}}}Object").text = "x"


def _digest_changed(root: etree._Element, sig: etree._Element) -> None:
    _ds(sig, "SignedInfo/Reference/DigestValue").text = base64.b64encode(bytes(32)).decode()


def _comment(root: etree._Element, sig: etree._Element) -> None:
    root[0].append(etree.Comment("x"))


def _hmac_length(root: etree._Element, sig: etree._Element) -> None:
    etree.SubElement(_ds(sig, "SignedInfo/SignatureMethod"), f"{{{DSIG_NS}}}HMACOutputLength")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_enveloped_only, "enveloped-signature transform followed by exclusive C14N"),
        (_inclusive_namespaces, "ds:CanonicalizationMethod must be empty"),
        (_hmac_length, "ds:SignatureMethod must be empty"),
        (_reference_type, "'Type'"),
        (_object, "no ds:Object"),
        (_digest_changed, "digest is not ds:DigestValue"),
        (_comment, "comment"),
    ],
)
def test_a_valid_signature_outside_the_duis_profile_is_refused_naming_what(
    pki: Pki, xml_a: IssuedKey, edit: Callable[[etree._Element, etree._Element], None], says: str
) -> None:
    problem = refused(resigned(signed(build_request(READ), xml_a), xml_a, edit), pki.index())
    assert problem.kind == "signature_invalid"
    assert says in problem.reason


def test_the_resigning_helper_makes_signatures_that_verify(pki: Pki, xml_a: IssuedKey) -> None:
    """So the refusals above are the profile's, not a broken signature's."""
    data = resigned(signed(build_request(READ), xml_a), xml_a, lambda root, sig: None)
    assert verify_request(read(data), pki.index(), now_ms=now_ms()).user_id == USER_A


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not base64!", "ds:SignatureValue (ECDSA P-256: r then s, 32 bytes each) is not base64"),
        (base64.b64encode(bytes(70)), "holds 70 bytes; it must hold 64"),
        (b"", "holds 0 bytes"),
    ],
)
def test_a_signature_value_that_is_not_64_bytes_of_base64_is_refused(
    pki: Pki, xml_a: IssuedKey, value: bytes, says: str
) -> None:
    data = signed(build_request(READ), xml_a)
    data = re.sub(rb"<ds:SignatureValue>[^<]*<", b"<ds:SignatureValue>" + value + b"<", data)
    problem = refused(data, pki.index())
    assert problem.kind == "signature_invalid"
    assert says in problem.reason


def test_a_processing_instruction_outside_the_request_is_refused(
    pki: Pki, xml_a: IssuedKey
) -> None:
    data = signed(build_request(READ), xml_a).replace(b"<sr:Request", b"<?pi x?><sr:Request", 1)
    assert "processing instruction" in refused(data, pki.index()).reason


def test_a_request_lxml_cannot_canonicalise_is_refused_not_crashed(
    pki: Pki, xml_a: IssuedKey
) -> None:
    data = signed(build_request(READ), xml_a).replace(
        b"<sr:Body>", b'<sr:Body xmlns:x="relative/uri">', 1
    )
    problem = refused(data, pki.index())
    assert problem.kind == "signature_invalid"
    assert "cannot be canonicalised" in problem.reason
