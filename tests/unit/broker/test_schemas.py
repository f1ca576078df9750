from __future__ import annotations

import msgspec
import pytest

from broker.schemas import ServiceRequest, UserResponse


def test_service_request_decodes_and_ignores_unknown_fields() -> None:
    raw = (
        b'{"request_id":"A:B:1","user_role":"IS","srv":"4.1.1","command_variant":1,'
        b'"body":{"price":1.5},"region":"north","future_field":true}'
    )
    req = msgspec.json.decode(raw, type=ServiceRequest)
    assert req.body_is_object()
    assert req.body_values() == {"price": 1.5}
    assert req.region == "north"
    assert bytes(req.xml) == b"null"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"request_id":"x","user_role":"IS","srv":"4.1.1"}', "command_variant"),
        (b'{"request_id":1,"user_role":"IS","srv":"4.1.1","command_variant":1}', "request_id"),
        (
            b'{"request_id":"x","user_role":"IS","srv":"4.1.1","command_variant":1,'
            b'"region":"east"}',
            "region",
        ),
    ],
)
def test_service_request_shape_errors_name_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.json.decode(raw, type=ServiceRequest)


def test_user_response_round_trip_has_the_contract_fields() -> None:
    resp = UserResponse(
        request_id="A:B:1",
        user_id="A",
        response_code="T1",
        outcome="throttled",
        reason="r",
        retry_after_ms=250,
        at_ms=1,
    )
    doc = msgspec.json.decode(msgspec.json.encode(resp))
    assert set(doc) == {
        "request_id",
        "user_id",
        "response_code",
        "outcome",
        "reason",
        "rule",
        "retry_after_ms",
        "at_ms",
    }


@pytest.mark.parametrize(
    ("body", "is_object"),
    [(b"{}", True), (b' {"a": 1}', True), (b"[1]", False), (b'"x"', False), (b"null", False)],
)
def test_body_must_be_an_object(body: bytes, is_object: bool) -> None:
    raw = b'{"request_id":"x","user_role":"IS","srv":"1","command_variant":1,"body":' + body + b"}"
    assert msgspec.json.decode(raw, type=ServiceRequest).body_is_object() is is_object


def test_missing_body_is_an_empty_object() -> None:
    req = msgspec.json.decode(
        b'{"request_id":"x","user_role":"IS","srv":"1","command_variant":1}', type=ServiceRequest
    )
    assert req.body_values() == {}


def test_xml_is_kept_raw_and_must_be_a_string_or_null() -> None:
    base = b'{"request_id":"x","user_role":"IS","srv":"1","command_variant":1'
    with_xml = msgspec.json.decode(base + b',"xml":"<sr:Request/>"}', type=ServiceRequest)
    assert bytes(with_xml.xml) == b'"<sr:Request/>"'
    assert with_xml.xml_is_string_or_null()
    assert msgspec.json.decode(base + b"}", type=ServiceRequest).xml_is_string_or_null()
    assert not msgspec.json.decode(base + b',"xml":5}', type=ServiceRequest).xml_is_string_or_null()
