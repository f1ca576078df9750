"""The ingress's own XML-DSig verifier (workers.duis.signature) against signxml, the generic,
well-kept verifier it replaced: for every SRV's signed request and for tampered ones, both
accept or both refuse. Where the ingress is stricter by design (the one DUIS profile only,
no comments inside the request, one signature), the test says so case by case and checks
that signxml accepts and the ingress refuses, so a change on either side shows."""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Callable

import pytest
from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from tests.duis_xml import USER_A, Pki, build_request, default_cv, service_of, signed
from workers.duis.catalogue import Srv, load_catalogue
from workers.duis.certificates import CertificateIndex
from workers.duis.signature import SignatureRefusal, sign_request, verify_request
from workers.duis.xml_request import DSIG_NS, DUIS_NS, XmlRefusal, read_request
from workers.tools.dev_certs import IssuedKey

CATALOGUE = load_catalogue()
READ = CATALOGUE["4.1.1"]
_SIGNXML = SignatureConfiguration(
    require_x509=True,
    location="./",
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def ingress_accepts(data: bytes, index: CertificateIndex) -> bool:
    """The ingress's parse (read_request) and verification (verify_request) both pass."""
    cv = re.search(rb"<sr:CommandVariant>([1-8])<", data)
    service = service_of(int(cv.group(1))) if cv else "serviceS"
    try:
        duis = read_request(data, service=service, catalogue=CATALOGUE)  # type: ignore[arg-type]
        verify_request(duis, index, now_ms=int(time.time() * 1000))
    except (XmlRefusal, SignatureRefusal):
        return False
    return True


def signxml_accepts(data: bytes, cert: x509.Certificate) -> bool:
    """signxml's verification of `data` with `cert` (the reference)."""
    try:
        root = etree.fromstring(data, _PARSER)
        XMLVerifier().verify(root, x509_cert=cert, expect_config=_SIGNXML)
    except (InvalidSignature, InvalidDigest, InvalidCertificate, InvalidInput):
        return False
    except (ValueError, TypeError, etree.LxmlError):
        return False
    return True


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def issued(pki: Pki) -> IssuedKey:
    return pki.issue(USER_A, "xml-signing", "IS")


@pytest.fixture(scope="module")
def good(issued: IssuedKey) -> bytes:
    return signed(build_request(READ), issued)


@pytest.mark.parametrize("key", list(CATALOGUE))
def test_every_srv_signed_request_is_accepted_by_both(key: str) -> None:
    pki = Pki()
    srv: Srv = CATALOGUE[key]
    issued = pki.issue(USER_A, "xml-signing", sorted(srv.roles)[0])
    data = signed(build_request(srv, cv=default_cv(srv)), issued)
    assert signxml_accepts(data, issued.cert)
    assert ingress_accepts(data, pki.index())


def _tree_edit(edit: Callable[[etree._Element], None]) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        root = etree.fromstring(data, _PARSER)
        edit(root)
        out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return out

    return apply


def _sig(root: etree._Element) -> etree._Element:
    found = root.find(f"{{{DSIG_NS}}}Signature")
    assert found is not None
    return found


def _move_signature_into_header(root: etree._Element) -> None:
    header = root.find(f"{{{DUIS_NS}}}Header")
    assert header is not None
    header.append(_sig(root))


def _duplicate_signature(root: etree._Element) -> None:
    root.append(etree.fromstring(etree.tostring(_sig(root))))


def _signature_first(root: etree._Element) -> None:
    root.insert(0, _sig(root))


def _wrap_original_body_in_object(root: etree._Element) -> None:
    """XSW: the signed body moved into a ds:Object, an attacker's body in its place."""
    body = root.find(f"{{{DUIS_NS}}}Body")
    assert body is not None
    original = etree.fromstring(etree.tostring(body))
    for element in body.iter(f"{{{DUIS_NS}}}ExecutionDateTime"):
        element.text = "2027-01-01T00:00:00Z"
    obj = etree.SubElement(_sig(root), f"{{{DSIG_NS}}}Object")
    obj.append(original)


def _wrap_whole_request_in_object(root: etree._Element) -> None:
    """XSW: a copy of the signed request inside the signature, the outer one changed."""
    copy = etree.fromstring(etree.tostring(root))
    copy.remove(_sig(copy))
    etree.SubElement(_sig(root), f"{{{DSIG_NS}}}Object").append(copy)
    for element in root.iter(f"{{{DUIS_NS}}}RequestID"):
        element.text = (element.text or "").replace(":1000", ":1001")


def _wrap_request_in_new_root(root: etree._Element) -> None:
    """XSW: the signed request wrapped whole inside an attacker's sr:Request."""
    inner = etree.fromstring(etree.tostring(root))
    body = root.find(f"{{{DUIS_NS}}}Body")
    assert body is not None
    body.append(inner)


def _object_added(root: etree._Element) -> None:
    """An unsigned ds:Object in the signature (outside what is digested)."""
    etree.SubElement(etree.SubElement(_sig(root), f"{{{DSIG_NS}}}Object"), "note").text = "x"


def _reencode_signature_value_der(data: bytes) -> bytes:
    """The r||s SignatureValue re-encoded as DER (what XML-DSig ECDSA does not use)."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    found = re.search(rb"<ds:SignatureValue>([^<]*)<", data)
    assert found is not None
    raw = base64.b64decode(b"".join(found.group(1).split()))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return data.replace(found.group(1), base64.b64encode(der))


def _swap_r_s(data: bytes) -> bytes:
    found = re.search(rb"<ds:SignatureValue>([^<]*)<", data)
    assert found is not None
    raw = base64.b64decode(b"".join(found.group(1).split()))
    return data.replace(found.group(1), base64.b64encode(raw[32:] + raw[:32]))


def _wrap_base64(tag: bytes) -> Callable[[bytes], bytes]:
    """The base64 in ds:`tag` broken into lines, as some signers write it."""

    def wrap(match: re.Match[bytes]) -> bytes:
        text = match.group(2)
        return match.group(1) + b"\r\n".join(text[i : i + 16] for i in range(0, len(text), 16))

    return lambda data: re.sub(rb"(<ds:" + tag + rb">)([^<]*)", wrap, data)


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        assert old in data, old
        return data.replace(old, new, 1)

    return apply


# (case, transformation of a good signed request, signxml's verdict, the ingress's)
CASES: list[tuple[str, Callable[[bytes], bytes], bool, bool]] = [
    ("untouched", lambda d: d, True, True),
    ("body text changed", _replace(b"2026-12-07T00:00:00Z", b"2026-12-07T00:00:01Z"), False, False),
    ("header text changed", _replace(b":1000<", b":1001<"), False, False),
    ("attribute changed", _replace(b'schemaVersion="5.4"', b'schemaVersion="5.3"'), False, False),
    (
        "attribute added",
        _replace(b"<sr:Header>", b'<sr:Header xmlns:x="urn:x" x:a="1">'),
        False,
        False,
    ),
    ("signature moved into the header", _tree_edit(_move_signature_into_header), False, False),
    ("signature moved first", _tree_edit(_signature_first), True, False),
    ("signature duplicated", _tree_edit(_duplicate_signature), False, False),
    ("XSW: signed body in ds:Object", _tree_edit(_wrap_original_body_in_object), False, False),
    ("XSW: signed request in ds:Object", _tree_edit(_wrap_whole_request_in_object), False, False),
    ("ds:Object added to the signature", _tree_edit(_object_added), True, False),
    ("XSW: signed request wrapped", _tree_edit(_wrap_request_in_new_root), False, False),
    (
        "comment splitting a signed value",
        _replace(b"2026-12-07T00:00:00Z", b"2026-12-07T<!--x-->00:00:00Z"),
        True,
        False,
    ),
    ("comment between elements", _replace(b"<sr:Body>", b"<sr:Body><!--x-->"), True, False),
    (
        "comment before the root",
        _replace(b"<sr:Request", b"<!-- a note -->\n<sr:Request"),
        True,
        True,
    ),
    ("processing instruction inside", _replace(b"<sr:Body>", b"<sr:Body><?pi x?>"), False, False),
    (
        "namespace prefix renamed",
        lambda d: d.replace(b"sr:", b"srx:").replace(b"xmlns:sr=", b"xmlns:srx="),
        False,
        False,
    ),
    (
        "unused namespace declared on the root",
        _replace(b"<sr:Request ", b'<sr:Request xmlns:unused="urn:unused" '),
        True,
        True,
    ),
    (
        "default namespace redeclared on the body",
        _replace(b"<sr:Body>", b'<sr:Body xmlns="urn:other">'),
        True,
        True,
    ),
    (
        "relative namespace URI in the body",
        _replace(b"<sr:Body>", b'<sr:Body xmlns:x="relative/uri" x:a="1">'),
        False,
        False,
    ),
    (
        "relative namespace URI on SignedInfo",
        _replace(b"<ds:SignedInfo>", b'<ds:SignedInfo xmlns:x="rel">'),
        False,
        False,
    ),
    (
        "default namespace undeclared on the body",
        _replace(b"<sr:Body>", b'<sr:Body xmlns="">'),
        True,
        True,
    ),
    (
        "ds namespace redeclared on SignedInfo",
        _replace(b"<ds:SignedInfo>", b'<ds:SignedInfo xmlns:ds="urn:not-dsig">'),
        False,
        False,
    ),
    ("whitespace added to a signed value", _replace(b">2026-12-07", b"> 2026-12-07"), False, False),
    ("whitespace between signed elements", _replace(b"<sr:Body>", b"<sr:Body>\n  "), False, False),
    ("whitespace inside a start tag", _replace(b"<sr:Body>", b"<sr:Body  >"), True, True),
    (
        "whitespace after the signature",
        _replace(b"</ds:Signature>", b"</ds:Signature>\n"),
        False,
        False,
    ),
    (
        "attribute quotes changed",
        _replace(b'schemaVersion="5.4"', b"schemaVersion='5.4'"),
        True,
        True,
    ),
    # SignatureValue is outside what is signed: its base64 may be broken into lines
    ("line breaks inside SignatureValue", _wrap_base64(b"SignatureValue"), True, True),
    # DigestValue is inside ds:SignedInfo: a line break there changes what was signed
    ("line breaks inside DigestValue", _wrap_base64(b"DigestValue"), False, False),
    ("digest value changed", _replace(b"<ds:DigestValue>", b"<ds:DigestValue>AA"), False, False),
    ("signature value as DER", _reencode_signature_value_der, False, False),
    ("signature value r and s swapped", _swap_r_s, False, False),
    ("Reference URI not empty", _replace(b'URI=""', b'URI="#x"'), False, False),
    (
        "extra transform",
        _replace(
            b"</ds:Transforms>",
            b'<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#base64"/></ds:Transforms>',
        ),
        False,
        False,
    ),
    (
        "InclusiveNamespaces on the C14N",
        _replace(
            b'xml-exc-c14n#"/>',
            b'xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/'
            b'xml-exc-c14n#" PrefixList="sr"/></ds:CanonicalizationMethod>',
        ),
        False,
        False,
    ),
    (
        "second Reference",
        lambda d: d.replace(
            b"</ds:Reference>",
            b"</ds:Reference>"
            + re.sub(
                rb'URI=""', b'URI="#b"', re.findall(rb"<ds:Reference.*?</ds:Reference>", d)[0]
            ),
            1,
        ),
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("transform", "signxml_verdict", "ingress_verdict"),
    [pytest.param(t, s, i, id=name) for name, t, s, i in CASES],
)
def test_tampered_requests_get_the_same_verdict_as_signxml(
    pki: Pki,
    issued: IssuedKey,
    good: bytes,
    transform: Callable[[bytes], bytes],
    signxml_verdict: bool,
    ingress_verdict: bool,
) -> None:
    data = transform(good)
    assert signxml_accepts(data, issued.cert) is signxml_verdict
    assert ingress_accepts(data, pki.index()) is ingress_verdict


def test_where_they_differ_the_ingress_is_the_stricter() -> None:
    """Every disagreement is the ingress refusing what signxml accepts, never the reverse."""
    assert all(i <= s for _, _, s, i in CASES)


def test_a_request_signed_with_whitespace_around_the_signature_verifies(
    pki: Pki, issued: IssuedKey
) -> None:
    """Text before and after ds:Signature stays in what is digested (the enveloped
    transform removes the element only): signed that way, both accept."""
    root = etree.fromstring(build_request(READ), _PARSER)
    etree.indent(root)
    data = sign_request(etree.tostring(root), issued.key, issued.cert)
    pretty = data.replace(b"<ds:Signature", b"\n  <ds:Signature").replace(
        b"</ds:Signature>", b"</ds:Signature>\n"
    )
    resigned = sign_request(
        etree.tostring(etree.fromstring(pretty, _PARSER)), issued.key, issued.cert
    )
    for case in (data, resigned):
        assert signxml_accepts(case, issued.cert)
        assert ingress_accepts(case, pki.index())


def test_verifying_leaves_the_parsed_tree_as_it_was(
    pki: Pki, issued: IssuedKey, good: bytes
) -> None:
    duis = read_request(good, service="serviceS", catalogue=CATALOGUE)
    before = etree.tostring(duis.root)
    verify_request(duis, pki.index(), now_ms=int(time.time() * 1000))
    assert etree.tostring(duis.root) == before
    # and verifying again gives the same verdict (the signature was put back in place)
    verify_request(duis, pki.index(), now_ms=int(time.time() * 1000))


def test_random_byte_mutations_never_crash_and_never_pass_where_signxml_refuses(
    pki: Pki, issued: IssuedKey, good: bytes
) -> None:
    """Seeded random edits (a byte changed, dropped or doubled): the ingress answers each
    with a refusal or an acceptance, never an exception, and accepts only what signxml
    accepts too."""
    rng = random.Random(16)
    accepted = reached = 0
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                del data[at]
            else:
                data.insert(at, data[at])
        mutated = bytes(data)
        try:
            read_request(mutated, service="serviceS", catalogue=CATALOGUE)
        except XmlRefusal:
            continue
        reached += 1  # well-formed and a DUIS envelope: the signature decides
        if ingress_accepts(mutated, pki.index()):
            accepted += 1
            assert signxml_accepts(mutated, issued.cert), mutated
    assert reached >= 40
    assert accepted < reached
