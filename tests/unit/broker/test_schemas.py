from __future__ import annotations

import msgspec
import pytest

from adt import AdtEngine, AdtValues, ValueRule
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


def test_an_answer_without_observed_and_limit_still_decodes() -> None:
    # Written before they existed (docs/contract.md): both default to null.
    raw = (
        b'{"request_id":"A:B:1","user_id":"A","response_code":"I99","outcome":"accepted",'
        b'"reason":"r","rule":null,"retry_after_ms":null,"at_ms":1}'
    )
    answer = msgspec.json.decode(raw, type=UserResponse)
    assert (answer.observed, answer.limit) == (None, None)


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
        "observed",
        "limit",
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


# --- body_values: only msgspec.DecodeError, whatever the body (issue #12) ----------------------

_RECORD = b'{"request_id":"x","user_role":"IS","srv":"2.2","command_variant":8,"body":%s}'


def _request(body: bytes) -> ServiceRequest:
    return msgspec.json.decode(_RECORD % body, type=ServiceRequest)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"amount":"\xff"}', "invalid_utf8: byte 0xff at offset 11 - at `$.body`"),
        (b'{"\xff":1}', "invalid_utf8: byte 0xff at offset 2 - at `$.body`"),
        (
            b'{"a":' + b"[" * 100 + b"]" * 100 + b"}",
            "too_deep: nesting deeper than 32 levels at offset 36 - at `$.body`",
        ),
        (b'{"amount":1,"amount":900}', 'duplicate_key: "amount" twice in one object'),
        (b'{"amount":1,"\\u0061mount":900}', 'duplicate_key: "amount" twice in one object'),
        (b'{"amount":1e400}', "Number out of range"),
        (b'{"amount":-1e400}', "Number out of range"),
        (b'{"amount":' + b"9" * 5000 + b"}", "Integer value out of range"),
        (b"[1]", "Expected `object`, got `array`"),
    ],
    ids=[
        "utf8 value",
        "utf8 key",
        "deep",
        "dup",
        "escaped dup",
        "1e400",
        "-1e400",
        "5000",
        "array",
    ],
)
def test_body_values_raises_only_decode_errors(body: bytes, message: str) -> None:
    req = _request(body)  # the record itself decodes: body is Raw
    with pytest.raises(msgspec.DecodeError) as caught:
        req.body_values()
    assert message in str(caught.value)


def test_body_values_keeps_big_integers_and_minus_zero() -> None:
    values = _request(b'{"a":1' + b"0" * 400 + b',"b":-0,"c":-0.0}').body_values()
    assert values["a"] == 10**400
    assert values["b"] == 0
    assert str(values["c"]) == "-0.0"


@pytest.mark.parametrize(
    "body",
    [
        b'{"amount":1e400}',
        b'{"amount":-1e400}',
        b'{"amount":1' + b"0" * 400 + b"}",
        b'{"amount":' + b"9" * 5000 + b"}",
        b'{"amount":1,"note":"\xff"}',
        b'{"amount":' + b"[" * 500 + b"]" * 500 + b"}",
        b'{"amount":1,"amount":900}',
    ],
    ids=["1e400", "-1e400", "401 digits", "5000 digits", "invalid utf8", "deep", "dup"],
)
def test_a_data_value_rule_never_raises_on_a_hostile_body(body: bytes) -> None:
    engine = AdtEngine(
        dcc_values=AdtValues(value_rules=(ValueRule(srv="2.2", field="amount", min=0, max=500),))
    )
    decision = engine.check("x", "2.2", _request(body).body_values, 0.0)
    assert decision.quarantined
    assert decision.breach is not None
    assert decision.breach.kind == "data_value"
