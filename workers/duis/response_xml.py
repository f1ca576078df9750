"""DUIS-style `sr:Response` documents (DOMAIN.md section 3.1), built with an XML library.

`render_response` builds one response document; `response_from_answer` maps one answer of
`dcc.user.responses` (`broker.schemas.UserResponse`) to it, with a ResponseID that is the
same every time the same answer is rendered, so a User can drop repeated deliveries.

Shape (namespace `sr` = `http://www.dccinterface.co.uk/ServiceUserGateway`; `dg` =
`urn:dccgate:response:1`, the gateway's own additions, which a DUIS reader ignores):

    <sr:Response schemaVersion="5.4">
      <sr:Header>
        <sr:RequestID>USER:TARGET:COUNTER</sr:RequestID>
        <sr:ResponseID>...</sr:ResponseID>
        <sr:ResponseCode>I99</sr:ResponseCode>
        <sr:ResponseDateTime>2026-12-07T02:50:20.123Z</sr:ResponseDateTime>
      </sr:Header>
      <sr:Body>
        <dg:GatewayResponse>
          <dg:Reason>...</dg:Reason>
          <dg:Detail name="outcome">accepted</dg:Detail>
        </dg:GatewayResponse>
      </sr:Body>
    </sr:Response>

Text that cannot appear in XML 1.0 (control characters, lone surrogates, U+FFFE/U+FFFF) is
written as a visible `\\uXXXX` escape rather than refused, so a hostile request ID still
gets an answer; every value is bounded in length. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from lxml import etree

from broker.schemas import UserResponse
from workers.duis.request_id import split_request_id

__all__ = [
    "DCCGATE_NS",
    "DUIS_NS",
    "MAX_BODY_ENTRIES",
    "MAX_TEXT_CHARS",
    "SCHEMA_VERSION",
    "ResponseXmlError",
    "render_response",
    "response_from_answer",
    "response_id_for",
]

DUIS_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
DCCGATE_NS = "urn:dccgate:response:1"
SCHEMA_VERSION = "5.4"
"""The schemaVersion of the DUIS templates in our sources (DOMAIN.md section 2.1)."""

MAX_TEXT_CHARS = 4096
"""Longest text of one element or attribute; longer text is cut and ends with `…`."""
MAX_BODY_ENTRIES = 64
"""Most `dg:Detail` entries in one response."""

_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# XML 1.0 Char production: tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Both prefixes declared on the root element. lxml, not the standard library's ElementTree:
# a third of the cost per document (25 against 75 µs), which the ingress and the deliverer
# pay per answer (docs/benchmarks.md, DUIS ingress).
_NSMAP = {"sr": DUIS_NS, "dg": DCCGATE_NS}


class ResponseXmlError(ValueError):
    """A response cannot be rendered; the message names the argument and what is allowed."""


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04X}"


def _text(value: str) -> str:
    """`value` made fit for XML 1.0 text and bounded to MAX_TEXT_CHARS."""
    if len(value) > MAX_TEXT_CHARS:
        value = value[: MAX_TEXT_CHARS - 1] + "…"
    cleaned = _NOT_XML_CHAR.sub(_escape_char, value)
    if len(cleaned) > MAX_TEXT_CHARS:  # escapes are 6 characters for 1
        cleaned = cleaned[: MAX_TEXT_CHARS - 1] + "…"
    return cleaned


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ResponseXmlError(
            "response_datetime must be timezone-aware (e.g. datetime.now(UTC)); "
            "DUIS ResponseDateTime is UTC"
        )
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _sr(tag: str) -> str:
    return f"{{{DUIS_NS}}}{tag}"


def _dg(tag: str) -> str:
    return f"{{{DCCGATE_NS}}}{tag}"


def render_response(
    *,
    request_id: str,
    response_code: str,
    response_id: str,
    response_datetime: datetime,
    reason: str,
    body: dict[str, str] | None = None,
) -> bytes:
    """One `sr:Response` document, UTF-8 with an XML declaration.

    Parameters:
        request_id: the request's RequestID as sent (any text; made XML-safe and bounded).
        response_code: `I0`, `I99`, `E<n>`, `T1`, `Q1`...: 1-32 of `A-Z a-z 0-9 _ . -`.
        response_id: the ResponseID (any non-empty text; made XML-safe and bounded).
        response_datetime: when the decision was made; must be timezone-aware, written in
            UTC with milliseconds.
        reason: human-readable explanation (`dg:Reason`).
        body: further name/value pairs, each a `dg:Detail name=...` (at most
            MAX_BODY_ENTRIES); default none.

    Raises `ResponseXmlError` for a response code that is not a code, an empty ResponseID,
    a naive datetime or too many body entries.
    """
    if _CODE.fullmatch(response_code) is None:
        shown = _text(response_code[:40])
        raise ResponseXmlError(
            f"response_code {shown!r} is not a response code: use 1-32 characters of "
            "A-Z, a-z, 0-9, '_', '.', '-' (e.g. I99, E2, T1, Q4)"
        )
    if not response_id:
        raise ResponseXmlError("response_id is empty: every response needs a ResponseID")
    entries = body or {}
    if len(entries) > MAX_BODY_ENTRIES:
        raise ResponseXmlError(
            f"body has {len(entries)} entries; at most {MAX_BODY_ENTRIES} are rendered"
        )
    root = etree.Element(_sr("Response"), {"schemaVersion": SCHEMA_VERSION}, nsmap=_NSMAP)
    header = etree.SubElement(root, _sr("Header"))
    etree.SubElement(header, _sr("RequestID")).text = _text(request_id)
    etree.SubElement(header, _sr("ResponseID")).text = _text(response_id)
    etree.SubElement(header, _sr("ResponseCode")).text = response_code
    etree.SubElement(header, _sr("ResponseDateTime")).text = _timestamp(response_datetime)
    gateway = etree.SubElement(etree.SubElement(root, _sr("Body")), _dg("GatewayResponse"))
    etree.SubElement(gateway, _dg("Reason")).text = _text(reason)
    for name, value in entries.items():
        etree.SubElement(gateway, _dg("Detail"), {"name": _text(name)}).text = _text(value)
    document: bytes = etree.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def response_id_for(answer: UserResponse) -> str:
    """The ResponseID of one answer: stable for the same answer, distinct across answers.

    DUIS-style, the RequestID with its two IDs swapped (`TARGET:USER:COUNTER`, DOMAIN.md
    section 3.1), then `:` the response code and `:` the decision time `at_ms`, so the
    several answers one request may get (Q1, later Q4) differ, and a redelivered answer
    has the ResponseID it had. A RequestID that is not `USER:TARGET:COUNTER` (answered E100)
    is replaced by `X-` and the first 32 hex digits of its SHA-256.
    """
    parts = split_request_id(answer.request_id)
    if parts is None:
        digest = hashlib.sha256(answer.request_id.encode("utf-8", "surrogatepass")).hexdigest()
        stem = f"X-{digest[:32]}"
    else:
        _pair, user, target, counter = parts
        stem = f"{target}:{user}:{counter}"
    return f"{stem}:{answer.response_code}:{answer.at_ms}"


def response_from_answer(answer: UserResponse) -> bytes:
    """The `sr:Response` for one answer of `dcc.user.responses`.

    The header carries the answer's RequestID, `response_id_for(answer)`, its code and its
    `at_ms` as ResponseDateTime; `dg:Reason` its reason; `dg:Detail` entries its `outcome`,
    `user_id`, and, when set, `rule` and `retry_after_ms`. Raises `ResponseXmlError` when
    the answer's code is not a response code.
    """
    details = {"outcome": answer.outcome, "user_id": answer.user_id}
    if answer.rule is not None:
        details["rule"] = answer.rule
    if answer.retry_after_ms is not None:
        details["retry_after_ms"] = str(answer.retry_after_ms)
    try:
        moment = datetime.fromtimestamp(answer.at_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ResponseXmlError(
            f"at_ms {answer.at_ms} is not a representable time: the answer's producer must "
            "write epoch milliseconds"
        ) from exc
    return render_response(
        request_id=answer.request_id,
        response_code=answer.response_code,
        response_id=response_id_for(answer),
        response_datetime=moment,
        reason=answer.reason,
        body=details,
    )
