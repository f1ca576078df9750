"""workers.duis.xml_request: reading a DUIS request safely and checking its envelope."""

from __future__ import annotations

import pytest

from tests.duis_xml import DEVICE, USER_A, build_request, default_cv, service_of
from workers.duis.catalogue import load_catalogue
from workers.duis.xml_request import XmlRefusal, read_request

CATALOGUE = load_catalogue()
READ = CATALOGUE["4.1.1"]


def refusal(data: bytes, service: str = "serviceS", **kw: int) -> XmlRefusal:
    with pytest.raises(XmlRefusal) as caught:
        read_request(data, service=service, catalogue=CATALOGUE, **kw)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize("key", list(CATALOGUE))
def test_a_real_shaped_request_for_every_srv_is_read(key: str) -> None:
    srv = CATALOGUE[key]
    cv = default_cv(srv)
    duis = read_request(
        build_request(srv, cv=cv),
        service=service_of(cv),  # type: ignore[arg-type]
        catalogue=CATALOGUE,
    )
    assert duis.srv is srv
    assert duis.command_variant == cv
    assert duis.user_id == USER_A
    assert duis.body_element.tag.endswith("}" + srv.body_element)
    assert duis.body_values() == {"execution_date_time": "2026-12-07T00:00:00Z"}


def test_a_signed_pre_command_carries_signed_pre_command_whatever_the_srv() -> None:
    duis = read_request(
        build_request(CATALOGUE["7.2"], cv=5), service="serviceS", catalogue=CATALOGUE
    )
    assert duis.signed_pre_command
    bad = refusal(
        build_request(
            CATALOGUE["7.2"], cv=5, body="<sr:DisableSupply><sr:X>1</sr:X></sr:DisableSupply>"
        )
    )
    assert bad.kind == "wrong_body_element"
    assert "sr:SignedPreCommand" in bad.reason


def test_body_values_are_snake_case_numbers_or_text() -> None:
    body = (
        "<sr:ReadInstantaneousImportRegisters><sr:DebtAmount>-12.50</sr:DebtAmount>"
        "<sr:Count>42</sr:Count><sr:Name>x</sr:Name><sr:Twice>1</sr:Twice><sr:Twice>2</sr:Twice>"
        "<sr:Nested><sr:A>1</sr:A></sr:Nested></sr:ReadInstantaneousImportRegisters>"
    )
    duis = read_request(build_request(READ, body=body), service="serviceS", catalogue=CATALOGUE)
    assert duis.body_values() == {"debt_amount": -12.5, "count": 42, "name": "x"}


def test_size_limit() -> None:
    data = build_request(READ)
    assert refusal(data, max_bytes=len(data) - 1).kind == "too_large"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe<sr:Request/>", "not UTF-8"),
        (b"<sr:Request", "not well-formed"),
        (b"", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<r>&x;</r>",
            "DTD",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><r>&lol2;</r>',
            "DTD",
        ),
        (b"<r>&undeclared;</r>", "not well-formed"),
        (
            b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></r>',
            "root element",
        ),
        (b"<Request/>", "root element is 'Request' in namespace '(none)'"),
        (
            b'<sr:Response xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"/>',
            "root element is 'Response'",
        ),
    ],
)
def test_unreadable_or_hostile_documents_are_refused(data: bytes, says: str) -> None:
    refused = refusal(data)
    assert refused.kind == "malformed_xml"
    assert says in refused.reason


def test_deep_nesting_is_refused_by_the_parser() -> None:
    deep = b"<a>" * 300 + b"</a>" * 300
    assert refusal(deep).kind == "malformed_xml"


def _swap(old: str, new: str, srv: str = "4.1.1") -> bytes:
    data = build_request(CATALOGUE[srv]).decode()
    assert old in data
    return data.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("data", "kind", "says"),
    [
        (_swap('schemaVersion="5.4"', ""), "malformed_xml", "no schemaVersion"),
        (_swap('schemaVersion="5.4"', 'schemaVersion="9.9"'), "unsupported_schema_version", "9.9"),
        (
            _swap("<sr:CommandVariant>1</sr:CommandVariant>", ""),
            "malformed_xml",
            "lacks CommandVariant",
        ),
        (
            _swap(
                "<sr:CommandVariant>1</sr:CommandVariant>",
                "<sr:CommandVariant>1</sr:CommandVariant>" * 2,
            ),
            "malformed_xml",
            "CommandVariant twice",
        ),
        (
            _swap("<sr:Header>", "<sr:Header><sr:Colour>red</sr:Colour>"),
            "malformed_xml",
            "unknown field 'Colour'",
        ),
        (
            _swap(f"{USER_A}:{DEVICE}:1000", "not-an-id"),
            "invalid_request_id",
            "USER:TARGET:COUNTER",
        ),
        (
            _swap(f"{USER_A}:{DEVICE}:1000", f"{USER_A.lower()}:{DEVICE}:1000"),
            "invalid_request_id",
            "upper-case",
        ),
        (_swap(">4.1.1<", ">4.1.9<"), "unknown_srv", "4.1.9"),
        (
            _swap(">1</sr:CommandVariant>", ">9</sr:CommandVariant>"),
            "invalid_command_variant",
            "1 to 8",
        ),
        (
            _swap(">1</sr:CommandVariant>", ">8</sr:CommandVariant>"),
            "wrong_web_service",
            "Non-Device",
        ),
        (
            _swap(">4.1</sr:ServiceReference>", ">4.2</sr:ServiceReference>"),
            "service_reference_mismatch",
            "expected 4.1",
        ),
        (
            _swap("ReadInstantaneousImportRegisters>", "ReadInventory>").replace(
                b"ReadInstantaneousImportRegisters>", b"ReadInventory>"
            ),
            "wrong_body_element",
            "ReadInventory",
        ),
        (_swap("</sr:Body>", "<sr:Extra/></sr:Body>"), "wrong_body_element", "exactly one"),
        (_swap("<sr:Body>", "<sr:Other/><sr:Body>"), "malformed_xml", "in that order"),
    ],
)
def test_each_envelope_check_names_what_is_wrong(data: bytes, kind: str, says: str) -> None:
    refused = refusal(data)
    assert refused.kind == kind
    assert says in refused.reason


def test_command_variants_go_to_their_web_service() -> None:
    # DOMAIN.md section 2.2: CV 4 to Transform, CV 8 to Non-Device, CV 1 to Send Command.
    critical = build_request(CATALOGUE["7.2"], cv=4)
    assert refusal(critical, "serviceS").kind == "wrong_web_service"
    read_request(critical, service="serviceT", catalogue=CATALOGUE)
    inventory = build_request(CATALOGUE["8.2"])
    assert refusal(inventory, "serviceT").kind == "wrong_web_service"
    read_request(inventory, service="serviceD", catalogue=CATALOGUE)


def test_the_request_id_is_kept_for_the_answer_once_it_could_be_read() -> None:
    refused = refusal(_swap(">4.1.1<", ">4.1.9<"))
    assert refused.request_id == f"{USER_A}:{DEVICE}:1000"
