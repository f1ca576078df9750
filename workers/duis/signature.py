"""The XML signature of a DUIS request, the certificate it names, and the signing-key
separation control of SEC Appendix AD clause 3.3.1.

`verify_request` checks a request read by `workers.duis.xml_request.read_request`:

- an enveloped XML-DSig `ds:Signature` in exactly the one profile DUIS signs with, and
  nothing else: the only `ds:Signature` in the document and the last child of
  `sr:Request`; `ds:SignedInfo` with exclusive C14N (no InclusiveNamespaces), ECDSA P-256
  with SHA-256, and one `ds:Reference` with `URI=""` whose transforms are the enveloped-
  signature transform then exclusive C14N and whose digest is SHA-256; no `ds:Object`;
  `ds:KeyInfo` naming the certificate by `X509IssuerSerial`; no comment or processing
  instruction inside the request. Anything else is refused naming what, before any
  cryptography. Verified here, on the tree `read_request` parsed once: lxml's (libxml2's)
  exclusive C14N of `ds:SignedInfo` and of the document without the signature (no
  hand-written canonicalisation), SHA-256 compared with `ds:DigestValue` in constant
  time, and the raw r||s `ds:SignatureValue` verified by `cryptography` with the
  registered certificate's key (loaded once per certificate). signxml, the generic
  verifier this replaced (it re-serialised and re-parsed the document several times, about
  0.7 ms a request), stays the reference the tests compare this one with
  (tests/unit/workers/duis/test_duis_signature_agreement.py) and signs for `dccgate send`;
- the certificate found by its `X509IssuerSerial` among the registered certificates
  (`workers.duis.certificates`), registered to the RequestID's originator User, for
  `xml-signing`, valid at `now_ms`, not revoked; the role is the one registered with it;
- the key-separation control: the XML-signing key is not a key registered (now or ever,
  by any User) for `command-signing`; and for a Signed Pre-Command (CV 5-7) the GBCS
  command in `GBCSPayload` carries a signature made with one of the originator's registered
  `command-signing` keys, which is not the key that signed the XML.

Where the GBCS signature sits (what `gbcs_signature` reads): a critical GBCS command the
User signs ends with the signature length octet 0x40 and the 64-octet ECDSA P-256 signature
(r then s, 32 octets each) over every octet before the length octet (GBCS "Upper Layer"
signing). This module checks that trailing signature against the User's command-signing
keys. It does NOT parse or check the GBCS header (Message Code, CRA flag, originator and
target, transaction counters) or whether the command matches the SRV: that is the
device's and the DCC's Transform work, not the ingress's.

Pure: no I/O; time is an argument.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from workers.duis.certificates import CertificateEntry, CertificateIndex, Registered
from workers.duis.xml_request import DSIG_NS, DUIS_NS, DuisRequest

__all__ = [
    "EXC_C14N",
    "SignatureKind",
    "SignatureRefusal",
    "Verified",
    "gbcs_signature",
    "sign_gbcs",
    "sign_request",
    "verify_request",
]

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_GBCS_SIGNATURE_LENGTH = 0x40
_MAX_SERIAL_DIGITS = 60

SignatureKind = Literal[
    "signature_invalid",
    "certificate_unknown",
    "certificate_not_originators",
    "certificate_revoked",
    "certificate_expired",
    "key_separation",
]

_DS_SIGNATURE = f"{{{DSIG_NS}}}Signature"
_DS_SIGNED_INFO = f"{{{DSIG_NS}}}SignedInfo"
_DS_SIGNATURE_VALUE = f"{{{DSIG_NS}}}SignatureValue"
_DS_KEY_INFO = f"{{{DSIG_NS}}}KeyInfo"
_DS_REFERENCE = f"{{{DSIG_NS}}}Reference"
_DS_TRANSFORM = f"{{{DSIG_NS}}}Transform"
_DS_X509_DATA = f"{{{DSIG_NS}}}X509Data"
_DS_X509_ISSUER_SERIAL = f"{{{DSIG_NS}}}X509IssuerSerial"
_DS_X509_ISSUER_NAME = f"{{{DSIG_NS}}}X509IssuerName"
_DS_X509_SERIAL = f"{{{DSIG_NS}}}X509SerialNumber"
_KEY_CACHE_MAX = 10_000
_KEYS: dict[str, ec.EllipticCurvePublicKey] = {}
"""Public keys by certificate fingerprint (SHA-256 of the DER: one certificate, one key),
so a request costs no certificate or key loading."""


class SignatureRefusal(Exception):
    """A request whose signature or certificate the ingress refuses.

    kind: which check failed. reason: for the User and the operator. key_separation: True
    for a breach of the signing-key separation control (counted and audited apart).
    """

    def __init__(self, kind: SignatureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: SignatureKind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose XML signature verified with a registered certificate."""

    user_id: str
    role: str
    """The role registered with the certificate: what goes in `user_role`."""
    fingerprint_sha256: str
    command_fingerprint_sha256: str | None
    """For a Signed Pre-Command, the command-signing certificate whose key signed it."""


def _one_child_each(element: Any, names: tuple[str, ...], what: str) -> list[Any]:
    """`element`'s element children, which must be exactly ds:`names`, in that order."""
    children = [c for c in element if isinstance(c.tag, str)]
    wanted = _WANTED.get(names)
    if wanted is None:
        wanted = _WANTED[names] = [f"{{{DSIG_NS}}}{name}" for name in names]
    if [c.tag for c in children] != wanted:
        seen = ", ".join(_local(c.tag) for c in children[:6]) or "nothing"
        raise SignatureRefusal(
            "signature_invalid",
            f"{what} must hold exactly {', '.join('ds:' + n for n in names)} in that order "
            f"(the one profile DUIS signs with); it holds {seen}",
        )
    return children


_WANTED: dict[tuple[str, ...], list[str]] = {}


def _local(tag: str) -> str:
    local = tag.rpartition("}")[2][:40]
    return f"ds:{local}" if tag.startswith(f"{{{DSIG_NS}}}") else local


def _no_children(element: Any, what: str) -> None:
    if len(element):
        raise SignatureRefusal(
            "signature_invalid",
            f"{what} must be empty (no parameters such as InclusiveNamespaces or "
            "HMACOutputLength are accepted)",
        )


def _base64(element: Any, size: int, what: str) -> bytes:
    text = "".join((element.text or "").split())
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefusal("signature_invalid", f"{what} is not base64") from None
    if len(value) != size:
        raise SignatureRefusal(
            "signature_invalid", f"{what} holds {len(value)} bytes; it must hold {size}"
        )
    return value


@dataclass(frozen=True, slots=True)
class _Profile:
    """What the verification needs from a ds:Signature that has the DUIS profile's shape."""

    signed_info: Any
    digest_value: bytes
    signature_value: bytes
    issuer: str
    serial: str


def _child(element: Any, tag: str) -> Any:
    """`element`'s first child `tag`, or None (also when `element` is None)."""
    if element is None:
        return None
    for child in element:
        if child.tag == tag:
            return child
    return None


def _algorithm(element: Any) -> str:
    return "" if element is None else str(element.get("Algorithm", ""))


def _check_shape(signature: Any) -> _Profile:
    """The ds:Signature as DUIS signs it, nothing more and nothing less (module docstring);
    refuses anything else naming what, before any cryptography is done."""
    children = [c for c in signature if isinstance(c.tag, str)]
    tags = [c.tag for c in children]
    if not tags or tags[0] != _DS_SIGNED_INFO:
        raise SignatureRefusal("signature_invalid", "ds:Signature has no ds:SignedInfo")
    if tags not in (
        [_DS_SIGNED_INFO, _DS_SIGNATURE_VALUE],
        [_DS_SIGNED_INFO, _DS_SIGNATURE_VALUE, _DS_KEY_INFO],
    ):
        seen = ", ".join(_local(t) for t in tags[:6])
        raise SignatureRefusal(
            "signature_invalid",
            "ds:Signature must hold ds:SignedInfo, ds:SignatureValue and ds:KeyInfo in that "
            f"order and nothing else (no ds:Object); it holds {seen}",
        )
    signed_info = children[0]
    parts = [c for c in signed_info if isinstance(c.tag, str)]
    references = [c for c in parts if c.tag == _DS_REFERENCE]
    if len(references) != 1 or references[0].get("URI") != "":
        raise SignatureRefusal(
            "signature_invalid",
            'ds:SignedInfo must hold exactly one ds:Reference with URI="" (the whole request)',
        )
    c14n_el, method_el, reference = _one_child_each(
        signed_info, ("CanonicalizationMethod", "SignatureMethod", "Reference"), "ds:SignedInfo"
    )
    c14n = _algorithm(c14n_el)
    if c14n != EXC_C14N:
        raise SignatureRefusal(
            "signature_invalid",
            f"CanonicalizationMethod is {c14n[:80]!r}; DUIS signs with exclusive C14N ({EXC_C14N})",
        )
    _no_children(c14n_el, "ds:CanonicalizationMethod")
    method = _algorithm(method_el)
    if method != _ECDSA_SHA256:
        raise SignatureRefusal(
            "signature_invalid",
            f"SignatureMethod is {method[:80]!r}; DUIS signs with ECDSA P-256 and SHA-256 "
            f"({_ECDSA_SHA256})",
        )
    _no_children(method_el, "ds:SignatureMethod")
    extra = sorted(set(reference.attrib) - {"URI", "Id"})
    if extra:
        raise SignatureRefusal(
            "signature_invalid",
            f'ds:Reference has the attribute {extra[0][:60]!r}; only URI="" (and Id) is accepted',
        )
    transforms_el, digest_el, digest_value_el = _one_child_each(
        reference, ("Transforms", "DigestMethod", "DigestValue"), "ds:Reference"
    )
    transforms = [t for t in transforms_el if isinstance(t.tag, str)]
    if [t.tag for t in transforms] != [_DS_TRANSFORM, _DS_TRANSFORM] or [
        _algorithm(t) for t in transforms
    ] != [_ENVELOPED, EXC_C14N]:
        raise SignatureRefusal(
            "signature_invalid",
            "the Reference's transforms must be the enveloped-signature transform followed by "
            f"exclusive C14N ({_ENVELOPED}, {EXC_C14N}), and nothing else",
        )
    for transform in transforms:
        _no_children(transform, "ds:Transform")
    digest = _algorithm(digest_el)
    if digest != _SHA256:
        raise SignatureRefusal(
            "signature_invalid", f"DigestMethod is {digest[:80]!r}; DUIS uses SHA-256 ({_SHA256})"
        )
    _no_children(digest_el, "ds:DigestMethod")
    digest_value = _base64(digest_value_el, 32, "ds:DigestValue (a SHA-256 digest)")
    signature_value = _base64(
        children[1], 64, "ds:SignatureValue (ECDSA P-256: r then s, 32 bytes each)"
    )
    key_info = children[2] if len(children) == 3 else None
    issuer_serial = _child(_child(key_info, _DS_X509_DATA), _DS_X509_ISSUER_SERIAL)
    if issuer_serial is None:
        raise SignatureRefusal(
            "certificate_unknown",
            "ds:KeyInfo names no certificate: DUIS names it by X509Data/X509IssuerSerial",
        )
    issuer_el = _child(issuer_serial, _DS_X509_ISSUER_NAME)
    serial_el = _child(issuer_serial, _DS_X509_SERIAL)
    issuer = (issuer_el.text or "").strip() if issuer_el is not None else ""
    serial = (serial_el.text or "").strip() if serial_el is not None else ""
    if (
        not issuer
        or not serial.isascii()
        or not serial.isdigit()
        or len(serial) > _MAX_SERIAL_DIGITS
    ):
        raise SignatureRefusal(
            "certificate_unknown",
            "X509IssuerSerial must give an X509IssuerName and a decimal X509SerialNumber",
        )
    return _Profile(
        signed_info=signed_info,
        digest_value=digest_value,
        signature_value=signature_value,
        issuer=issuer[:2048],
        serial=serial.lstrip("0") or "0",
    )


def _check_document(root: Any, signature: Any) -> None:
    """One ds:Signature in the whole document, no comment or processing instruction inside
    sr:Request, none of the latter around it."""
    signatures = 0
    for node in root.iter(_DS_SIGNATURE, etree.Comment, etree.ProcessingInstruction):
        if node.tag == _DS_SIGNATURE:
            signatures += 1
            continue
        raise SignatureRefusal(
            "signature_invalid",
            "the signed request holds a comment or processing instruction; DUIS requests "
            "have none (a comment is outside what the signature covers and could cut a "
            "signed value short)",
        )
    if signatures != 1 or signature.getparent() is not root:
        raise SignatureRefusal(
            "signature_invalid",
            f"the request holds {signatures} ds:Signature elements; DUIS signs with exactly "
            "one, the last child of sr:Request",
        )
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if not isinstance(sibling, etree._Comment):
            raise SignatureRefusal(
                "signature_invalid",
                "the document holds a processing instruction outside sr:Request; DUIS "
                "requests have none",
            )


def _enveloped_c14n(root: Any, signature: Any) -> bytes:
    """Exclusive C14N (no comments) of the document without `signature`: the enveloped-
    signature transform then exclusive C14N, by lxml (libxml2). The signature is taken out
    and put back in place; the text after it stays in the document, as the transform
    keeps it."""
    at = root.index(signature)
    tail = signature.tail
    previous = signature.getprevious()
    saved = root.text if previous is None else previous.tail
    if tail:
        if previous is None:
            root.text = (saved or "") + tail
        else:
            previous.tail = (saved or "") + tail
    root.remove(signature)
    try:
        out: bytes = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
    finally:
        if tail:
            if previous is None:
                root.text = saved
            else:
                previous.tail = saved
        root.insert(at, signature)
        signature.tail = tail
    return out


def _verify_xml(
    root: Any, signature: Any, profile: _Profile, key: ec.EllipticCurvePublicKey
) -> None:
    """The signature over the canonical ds:SignedInfo, then the Reference's digest."""
    try:
        signed_info = etree.tostring(
            profile.signed_info, method="c14n", exclusive=True, with_comments=False
        )
        document = _enveloped_c14n(root, signature)
    except etree.LxmlError as exc:  # libxml2 refuses e.g. a relative namespace URI
        raise SignatureRefusal(
            "signature_invalid",
            f"the request cannot be canonicalised (exclusive C14N): {str(exc)[:120]}; a "
            "namespace URI must be absolute",
        ) from None
    raw = profile.signature_value
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    if not _verifies(key, signed_info, der):
        raise SignatureRefusal(
            "signature_invalid",
            "the XML signature does not verify with the registered certificate: "
            "ds:SignatureValue is not a signature of ds:SignedInfo by its key",
        )
    digest = hashlib.sha256(document).digest()
    if not hmac.compare_digest(digest, profile.digest_value):
        raise SignatureRefusal(
            "signature_invalid",
            "the XML signature does not verify with the registered certificate: the request's "
            "digest is not ds:DigestValue (the request was changed after it was signed)",
        )


def _find_certificate(
    index: CertificateIndex, issuer: str, serial: str, user_id: str
) -> Registered:
    found = index.by_issuer_serial(issuer, serial)
    if not found:
        raise SignatureRefusal(
            "certificate_unknown",
            f"no registered certificate has issuer {issuer[:120]!r} and serial {serial[:40]}; "
            "register it with POST /v1/users/{user_id}/certificates",
        )
    own = [r for r in found if r.user_id == user_id]
    if not own:
        raise SignatureRefusal(
            "certificate_not_originators",
            f"the certificate (issuer {issuer[:120]!r}, serial {serial[:40]}) is registered to "
            f"another User, not to {user_id}, the RequestID's originator",
        )
    xml = [r for r in own if r.entry.usage == "xml-signing"]
    if not xml:
        # Registered to this User, but for command-signing only: signing XML with a
        # command-signing key is the breach SEC Appendix AD 3.3.1 forbids.
        raise SignatureRefusal(
            "key_separation",
            "the certificate that signed this XML is registered for command-signing; XML "
            "Service Requests must be signed with a different, xml-signing key (SEC "
            "Appendix AD 3.3.1)",
        )
    return xml[0]


def _check_validity(entry: CertificateEntry, now_ms: int) -> None:
    if entry.revoked_at_ms is not None and entry.revoked_at_ms <= now_ms:
        raise SignatureRefusal(
            "certificate_revoked",
            f"certificate {entry.fingerprint_sha256[:16]}... was revoked at {entry.revoked_at_ms} "
            "(epoch ms); sign with a registered, unrevoked certificate",
        )
    if not entry.not_before_ms <= now_ms <= entry.not_after_ms:
        raise SignatureRefusal(
            "certificate_expired",
            f"certificate {entry.fingerprint_sha256[:16]}... is valid from {entry.not_before_ms} "
            f"to {entry.not_after_ms} (epoch ms), not now ({now_ms})",
        )


def gbcs_signature(payload: bytes) -> tuple[bytes, bytes] | None:
    """(signed octets, DER signature) of a signed GBCS command, or None when `payload` does
    not end with the 0x40 length octet and a 64-octet r||s signature."""
    if len(payload) < 66 or payload[-65] != _GBCS_SIGNATURE_LENGTH:
        return None
    raw = payload[-64:]
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    if r == 0 or s == 0:
        return None
    return payload[:-65], encode_dss_signature(r, s)


def _public_key(index: CertificateIndex, entry: CertificateEntry) -> ec.EllipticCurvePublicKey:
    """`entry`'s P-256 public key, loaded once per certificate (cached by fingerprint)."""
    key = _KEYS.get(entry.fingerprint_sha256)
    if key is not None:
        return key
    loaded = index.certificate(entry).public_key()
    # Registration refuses other keys; never verify with one either.
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or loaded.curve.name != "secp256r1":
        raise SignatureRefusal("certificate_unknown", "a registered key is not ECDSA P-256")
    if len(_KEYS) >= _KEY_CACHE_MAX:
        _KEYS.clear()
    _KEYS[entry.fingerprint_sha256] = loaded
    return loaded


def _check_pre_command(
    request: DuisRequest, index: CertificateIndex, xml_entry: CertificateEntry, now_ms: int
) -> str:
    payload_el = request.body_element.find(f"{{{DUIS_NS}}}GBCSPayload")
    try:
        payload = base64.b64decode((payload_el.text or "").strip(), validate=True)
    except (AttributeError, binascii.Error, ValueError):
        raise SignatureRefusal(
            "key_separation", "sr:SignedPreCommand has no base64 GBCSPayload to check"
        ) from None
    split = gbcs_signature(payload)
    if split is None:
        raise SignatureRefusal(
            "key_separation",
            "the GBCS command in GBCSPayload does not end with a signature (length octet 0x40 "
            "and 64 octets); a Signed Pre-Command must carry the User's command signature",
        )
    signed, signature = split
    if _verifies(_public_key(index, xml_entry), signed, signature):
        raise SignatureRefusal(
            "key_separation",
            "the GBCS command is signed with the same key as the XML; SEC Appendix AD 3.3.1 "
            "requires different keys for XML Service Requests and Signed Pre-Commands",
        )
    candidates = [
        r.entry
        for r in index.of_user(request.user_id)
        if r.entry.usage == "command-signing"
        and r.entry.revoked_at_ms is None
        and r.entry.not_before_ms <= now_ms <= r.entry.not_after_ms
    ]
    for entry in candidates:
        if entry.public_key_sha256 == xml_entry.public_key_sha256:
            continue  # registration forbids it; never accept it either
        if _verifies(_public_key(index, entry), signed, signature):
            return entry.fingerprint_sha256
    raise SignatureRefusal(
        "key_separation",
        f"the GBCS command's signature does not verify with any valid command-signing "
        f"certificate registered to {request.user_id} ({len(candidates)} registered)",
    )


def _verifies(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_request(request: DuisRequest, index: CertificateIndex, *, now_ms: int) -> Verified:
    """Check the request's signature, certificate and key separation; raises
    SignatureRefusal naming what failed."""
    children = [c for c in request.root if isinstance(c.tag, str)]
    signature = children[-1] if children else None
    if signature is None or signature.tag != f"{{{DSIG_NS}}}Signature":
        raise SignatureRefusal(
            "signature_invalid",
            "the request is not signed: DUIS requests carry an enveloped ds:Signature as the "
            "last child of sr:Request",
        )
    _check_document(request.root, signature)
    profile = _check_shape(signature)
    registered = _find_certificate(index, profile.issuer, profile.serial, request.user_id)
    entry = registered.entry
    _check_validity(entry, now_ms)
    if index.command_signing(entry.public_key_sha256):
        raise SignatureRefusal(
            "key_separation",
            "the key that signed this XML is (or was) registered as a command-signing key; "
            "XML Service Requests must be signed with a different key (SEC Appendix AD 3.3.1)",
        )
    _verify_xml(request.root, signature, profile, _public_key(index, entry))
    command = None
    if request.signed_pre_command:
        command = _check_pre_command(request, index, entry, now_ms)
    return Verified(
        user_id=request.user_id,
        role=entry.role,
        fingerprint_sha256=entry.fingerprint_sha256,
        command_fingerprint_sha256=command,
    )


def sign_request(xml: bytes, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bytes:
    """Sign a DUIS request as DUIS does (for `dccgate send --xml`, tests and benchmarks):
    enveloped, exclusive C14N, ECDSA-SHA256, KeyInfo naming `cert` by X509IssuerSerial.
    An existing ds:Signature is replaced. Parsed with DTDs and entities off."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(xml, parser)
    for old in root.findall(f"{{{DSIG_NS}}}Signature"):
        root.remove(old)
    key_info = etree.Element(f"{{{DSIG_NS}}}KeyInfo", nsmap={"ds": DSIG_NS})
    issuer_serial = etree.SubElement(
        etree.SubElement(key_info, f"{{{DSIG_NS}}}X509Data"), f"{{{DSIG_NS}}}X509IssuerSerial"
    )
    etree.SubElement(
        issuer_serial, f"{{{DSIG_NS}}}X509IssuerName"
    ).text = cert.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, f"{{{DSIG_NS}}}X509SerialNumber").text = str(cert.serial_number)
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=EXC_C14N,
    )
    signed = signer.sign(root, key=key, key_info=key_info)
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out


def sign_gbcs(command: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """`command` with its GBCS signature appended: 0x40 and r||s over `command` (tests and
    `dccgate send` build Signed Pre-Commands with it)."""
    r, s = decode_dss_signature(key.sign(command, ec.ECDSA(hashes.SHA256())))
    return command + bytes([_GBCS_SIGNATURE_LENGTH]) + r.to_bytes(32, "big") + s.to_bytes(32, "big")
