"""Reading one DUIS `sr:Request` document safely, and checking its envelope.

`read_request` parses the bytes a User POSTed to a DUIS web service and checks, in this
order, each failure a `XmlRefusal` whose reason names what was wrong:

1. the size limit;
2. UTF-8, well-formed XML with no DTD, no entity declaration or reference and nothing
   fetched from the network (lxml with `resolve_entities=False`, `no_network=True`,
   `load_dtd=False`, `huge_tree=False`; any `<!DOCTYPE` is refused before parsing, so XXE
   and entity-expansion ("billion laughs") documents never reach the parser);
3. the DUIS namespace and root `sr:Request`, with `sr:Header`, `sr:Body` and an optional
   `ds:Signature` as its only children;
4. a supported `schemaVersion`;
5. each header field present once (RequestID, CommandVariant, ServiceReference,
   ServiceReferenceVariant) and no unknown header field;
6. the RequestID in the contract's form (`workers.duis.request_id`);
7. a known SRV; the Command Variant sent to the web service that takes it (E13,
   DOMAIN.md section 3.2); ServiceReference consistent with the SRV;
8. exactly one element in `sr:Body`, the one the SRV defines (`Srv.body_element`), or
   `sr:SignedPreCommand` for a Signed Pre-Command (CV 5-7).

Pure: no I/O, no clock. The signature is checked by `workers.duis.signature`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from workers.duis.catalogue import SIGNED_PRE_COMMAND_ELEMENT, Srv
from workers.duis.request_id import request_id_problem, shorten, split_request_id

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DSIG_NS",
    "DUIS_NS",
    "SUPPORTED_SCHEMA_VERSIONS",
    "WEB_SERVICES",
    "DuisRequest",
    "RefusalKind",
    "WebService",
    "XmlRefusal",
    "read_request",
    "web_service_for",
]

DUIS_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
DEFAULT_MAX_REQUEST_BYTES = 256 * 1024
"""The largest DUIS request accepted: the biggest DUIS bodies (tariffs, certificates) are a
few tens of KiB; the limit keeps parsing cost bounded."""
SUPPORTED_SCHEMA_VERSIONS: frozenset[str] = frozenset({"5.0", "5.1", "5.2", "5.3", "5.4"})
"""The DUIS schema versions whose `sr:Request` envelope this reader knows: the public XSDs
5.0, 5.1, 5.3a and 5.4 (dccboxed-signing-tool) and the 5.2 of the DCC's reference requests."""

WebService = Literal["serviceD", "serviceS", "serviceT"]
WEB_SERVICES: tuple[str, ...] = ("serviceD", "serviceS", "serviceT")
# DOMAIN.md section 2.2: Send Command takes CV 1, 3, 5, 7; Non-Device CV 2, 6, 8; Transform CV 4.
_SERVICE_OF_CV: Mapping[int, WebService] = {
    1: "serviceS",
    2: "serviceD",
    3: "serviceS",
    4: "serviceT",
    5: "serviceS",
    6: "serviceD",
    7: "serviceS",
    8: "serviceD",
}
_SERVICE_NAMES = {
    "serviceD": "the Non-Device Service (/api/v1/serviceD)",
    "serviceS": "the Send Command Service (/api/v1/serviceS)",
    "serviceT": "the Transform Service (/api/v1/serviceT)",
}
_HEADER_FIELDS = ("RequestID", "CommandVariant", "ServiceReference", "ServiceReferenceVariant")
_OPTIONAL_HEADER_FIELDS = ("FirstInSequence", "PrecedingServiceRequestID")
_MAX_FIELD_CHARS = 200
_MAX_BODY_VALUES = 64
_MAX_VALUE_CHARS = 256
_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,9})?")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

RefusalKind = Literal[
    "too_large",
    "malformed_xml",
    "unsupported_schema_version",
    "invalid_request_id",
    "unknown_srv",
    "wrong_web_service",
    "invalid_command_variant",
    "service_reference_mismatch",
    "wrong_body_element",
]


class XmlRefusal(Exception):
    """A request the ingress refuses before looking at its signature.

    kind: the machine-readable check that failed. reason: for the User, names the field,
    what was seen and what is allowed. request_id: the RequestID when it could be read.
    """

    def __init__(self, kind: RefusalKind, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.kind: RefusalKind = kind
        self.reason = reason
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class DuisRequest:
    """A DUIS request whose envelope passed `read_request`."""

    raw: bytes
    """The document as received (UTF-8): what goes to `dcc.sr.inbound` in `xml`."""
    root: Any  # lxml.etree._Element: the parsed document, for the signature check
    request_id: str
    user_id: str
    target_id: str
    command_variant: int
    service_reference: str
    srv: Srv
    body_element: Any  # lxml.etree._Element: the one child of sr:Body
    schema_version: str

    @property
    def signed_pre_command(self) -> bool:
        """True for CV 5, 6, 7: the body is a GBCS command the User signed."""
        return self.command_variant in (5, 6, 7)

    def body_values(self) -> dict[str, Any]:
        """The body element's leaf children as the contract's `body` object.

        Names become snake_case (`ExecutionDateTime` -> `execution_date_time`); a value
        that is a plain decimal number becomes a JSON number (data-value ADT rules compare
        numbers), anything else stays text. At most 64 values of 256 characters each;
        nested elements and repeated names are left to the XML in `xml`.
        """
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for child in self.body_element:
            if not isinstance(child.tag, str) or len(child) or len(values) >= _MAX_BODY_VALUES:
                continue
            name = _snake(etree.QName(child).localname)
            if name in seen:  # repeated: ambiguous as one value
                values.pop(name, None)
                continue
            seen.add(name)
            text = (child.text or "").strip()[:_MAX_VALUE_CHARS]
            values[name] = _number_or_text(text)
        return values


def web_service_for(command_variant: int) -> WebService | None:
    """The web service that takes requests of this Command Variant (None: no such CV)."""
    return _SERVICE_OF_CV.get(command_variant)


def _snake(name: str) -> str:
    snake: str = _CAMEL.sub("_", name).lower()
    return snake


def _number_or_text(text: str) -> Any:
    if _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    return text


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,  # libxml2's own limits: depth 256, text node 10 MB
    remove_blank_text=False,
    collect_ids=False,
)


def _parse(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlRefusal(
            "malformed_xml", f"the request is not UTF-8 (byte offset {exc.start}); send UTF-8"
        ) from None
    # Refused before parsing: a DTD can declare entities (XXE, "billion laughs") and
    # DUIS has none.
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise XmlRefusal(
            "malformed_xml",
            "the request has a DTD (<!DOCTYPE or <!ENTITY); DUIS XML has none, and DTDs and "
            "entities are refused",
        )
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlRefusal("malformed_xml", f"the request is not well-formed XML: {exc}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise XmlRefusal("malformed_xml", "the request has a DTD; DTDs are refused")
    for _ in root.iter(etree.Entity):
        raise XmlRefusal("malformed_xml", "the request has an entity reference; refused")
    return root


def _children(element: Any) -> list[Any]:
    """Element children (comments and processing instructions skipped)."""
    return [c for c in element if isinstance(c.tag, str)]


def _envelope(root: Any) -> tuple[Any, Any]:
    if root.tag != f"{{{DUIS_NS}}}Request":
        qname = etree.QName(root)
        raise XmlRefusal(
            "malformed_xml",
            f"the root element is {shorten(qname.localname)} in namespace "
            f"{shorten(qname.namespace or '(none)')}; a DUIS request is sr:Request in "
            f"{DUIS_NS}",
        )
    children = _children(root)
    names = [c.tag for c in children]
    allowed = (
        [f"{{{DUIS_NS}}}Header", f"{{{DUIS_NS}}}Body"],
        [
            f"{{{DUIS_NS}}}Header",
            f"{{{DUIS_NS}}}Body",
            f"{{{DSIG_NS}}}Signature",
        ],
    )
    if names not in allowed:
        shown = ", ".join(shorten(etree.QName(n).localname) for n in names[:6]) or "nothing"
        raise XmlRefusal(
            "malformed_xml",
            f"sr:Request holds {shown}; it must hold sr:Header, sr:Body and ds:Signature, "
            "once each and in that order",
        )
    return children[0], children[1]


def _schema_version(root: Any) -> str:
    version: str | None = root.get("schemaVersion")
    if version is None:
        raise XmlRefusal("malformed_xml", "sr:Request has no schemaVersion attribute")
    if version.strip() not in SUPPORTED_SCHEMA_VERSIONS:
        raise XmlRefusal(
            "unsupported_schema_version",
            f"schemaVersion {shorten(version)} is not supported; supported: "
            f"{', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))}",
        )
    return version.strip()


def _header_fields(header: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    known = {f"{{{DUIS_NS}}}{n}": n for n in (*_HEADER_FIELDS, *_OPTIONAL_HEADER_FIELDS)}
    for child in _children(header):
        name = known.get(child.tag)
        if name is None:
            raise XmlRefusal(
                "malformed_xml",
                f"sr:Header has an unknown field {shorten(etree.QName(child).localname)}; "
                f"known: {', '.join((*_HEADER_FIELDS, *_OPTIONAL_HEADER_FIELDS))}",
            )
        if name in fields:
            raise XmlRefusal("malformed_xml", f"sr:Header has {name} twice; send it once")
        if len(child):
            raise XmlRefusal("malformed_xml", f"sr:Header field {name} must be text only")
        fields[name] = (child.text or "").strip()[: _MAX_FIELD_CHARS + 1]
    missing = [n for n in _HEADER_FIELDS if n not in fields]
    if missing:
        raise XmlRefusal(
            "malformed_xml",
            f"sr:Header lacks {', '.join(missing)}; a DUIS request header has RequestID, "
            "CommandVariant, ServiceReference and ServiceReferenceVariant",
            request_id=fields.get("RequestID"),
        )
    return fields


def _service_reference_of(srv: str) -> str:
    """`4.1.1` -> `4.1`; `8.2` -> `8.2` (a two-part SRV is its own Service Reference)."""
    parts = srv.split(".")
    return srv if len(parts) <= 2 else ".".join(parts[:-1])


def read_request(
    data: bytes,
    *,
    service: WebService,
    catalogue: Mapping[str, Srv],
    max_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> DuisRequest:
    """Parse and check one DUIS request POSTed to `service`; raises XmlRefusal.

    data: the HTTP body. service: the web service it was sent to (`serviceD`, `serviceS`,
    `serviceT`). catalogue: the SRV catalogue. max_bytes: the size limit (256 KiB).
    """
    if len(data) > max_bytes:
        raise XmlRefusal(
            "too_large", f"the request is {len(data)} bytes; at most {max_bytes} are accepted"
        )
    root = _parse(data)
    header, body = _envelope(root)
    version = _schema_version(root)
    fields = _header_fields(header)
    request_id = fields["RequestID"]
    parts = split_request_id(request_id)
    if parts is None:
        raise XmlRefusal("invalid_request_id", request_id_problem(request_id), request_id)
    _pair, user_id, target_id, _counter = parts
    srv_key = fields["ServiceReferenceVariant"]
    srv = catalogue.get(srv_key)
    if srv is None:
        raise XmlRefusal(
            "unknown_srv",
            f"ServiceReferenceVariant {shorten(srv_key)} is not one of the "
            f"{len(catalogue)} known DUIS Service Reference Variants (written like 4.1.1)",
            request_id,
        )
    cv_text = fields["CommandVariant"]
    if not re.fullmatch(r"[1-8]", cv_text):
        raise XmlRefusal(
            "invalid_command_variant",
            f"CommandVariant {shorten(cv_text)} is not a whole number from 1 to 8",
            request_id,
        )
    command_variant = int(cv_text)
    wanted = _SERVICE_OF_CV[command_variant]
    if wanted != service:
        raise XmlRefusal(
            "wrong_web_service",
            f"CommandVariant {command_variant} requests go to {_SERVICE_NAMES[wanted]}, "
            f"not {_SERVICE_NAMES[service]}",
            request_id,
        )
    service_reference = fields["ServiceReference"]
    if service_reference != _service_reference_of(srv.srv):
        raise XmlRefusal(
            "service_reference_mismatch",
            f"ServiceReference {shorten(service_reference)} does not match "
            f"ServiceReferenceVariant {srv.srv} (expected {_service_reference_of(srv.srv)})",
            request_id,
        )
    contents = _children(body)
    expected = SIGNED_PRE_COMMAND_ELEMENT if command_variant in (5, 6, 7) else srv.body_element
    if len(contents) != 1 or contents[0].tag != f"{{{DUIS_NS}}}{expected}":
        seen = ", ".join(shorten(etree.QName(c).localname) for c in contents[:4]) or "no element"
        what = "a Signed Pre-Command" if command_variant in (5, 6, 7) else f"SRV {srv.srv}"
        raise XmlRefusal(
            "wrong_body_element",
            f"sr:Body holds {seen}; {what} (CommandVariant {command_variant}) carries exactly "
            f"one sr:{expected}",
            request_id,
        )
    return DuisRequest(
        raw=data,
        root=root,
        request_id=request_id,
        user_id=user_id,
        target_id=target_id,
        command_variant=command_variant,
        service_reference=service_reference,
        srv=srv,
        body_element=contents[0],
        schema_version=version,
    )
