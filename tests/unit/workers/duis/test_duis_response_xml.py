"""workers.duis.response_xml: DUIS-style sr:Response documents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.schemas import UserResponse
from workers.duis.response_xml import (
    DCCGATE_NS,
    DUIS_NS,
    MAX_BODY_ENTRIES,
    MAX_TEXT_CHARS,
    ResponseXmlError,
    render_response,
    response_from_answer,
    response_id_for,
)

USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
RID = f"{USER}:{DEVICE}:1000"
AT = datetime(2026, 12, 7, 2, 50, 20, 123456, tzinfo=UTC)
SR = f"{{{DUIS_NS}}}"
DG = f"{{{DCCGATE_NS}}}"


def parse(document: bytes) -> ET.Element:
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(document)


def header(root: ET.Element, name: str) -> str | None:
    element = root.find(f"{SR}Header/{SR}{name}")
    assert element is not None, name
    return element.text


def details(root: ET.Element) -> dict[str, str]:
    found = root.findall(f"{SR}Body/{DG}GatewayResponse/{DG}Detail")
    return {e.attrib["name"]: e.text or "" for e in found}


def reason(root: ET.Element) -> str | None:
    element = root.find(f"{SR}Body/{DG}GatewayResponse/{DG}Reason")
    assert element is not None
    return element.text


def render(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "request_id": RID,
        "response_code": "I99",
        "response_id": "R1",
        "response_datetime": AT,
        "reason": "accepted",
    }
    args.update(overrides)
    return render_response(**args)  # type: ignore[arg-type]


def test_round_trip_of_every_header_field_and_the_body() -> None:
    root = parse(render(body={"outcome": "accepted", "rule": "r1"}))
    assert root.tag == f"{SR}Response"
    assert root.attrib == {"schemaVersion": "5.4"}
    assert header(root, "RequestID") == RID
    assert header(root, "ResponseID") == "R1"
    assert header(root, "ResponseCode") == "I99"
    assert header(root, "ResponseDateTime") == "2026-12-07T02:50:20.123Z"
    assert reason(root) == "accepted"
    assert details(root) == {"outcome": "accepted", "rule": "r1"}
    # The header's children come in the DUIS order.
    names = [child.tag.removeprefix(SR) for child in root.find(f"{SR}Header") or []]
    assert names == ["RequestID", "ResponseID", "ResponseCode", "ResponseDateTime"]


def test_the_namespace_prefix_is_sr() -> None:
    assert b'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"' in render()
    assert b"<sr:Response " in render()


@pytest.mark.parametrize("code", ["I0", "I99", "E1", "E2", "E12", "E100", "T1", "Q1", "Q5"])
def test_codes_are_written_as_given(code: str) -> None:
    assert header(parse(render(response_code=code)), "ResponseCode") == code


@pytest.mark.parametrize("code", ["", "I 99", "<x/>", "E1\n", "A" * 33, "É1", "I99\x00"])
def test_a_code_that_is_not_a_code_is_refused_with_what_is_allowed(code: str) -> None:
    with pytest.raises(ResponseXmlError, match=r"response_code .* is not a response code"):
        render(response_code=code)


def test_an_empty_response_id_and_a_naive_datetime_are_refused() -> None:
    with pytest.raises(ResponseXmlError, match="response_id is empty"):
        render(response_id="")
    with pytest.raises(ResponseXmlError, match="timezone-aware"):
        render(response_datetime=datetime(2026, 1, 1))


def test_a_datetime_in_another_zone_is_written_in_utc() -> None:
    moment = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert header(parse(render(response_datetime=moment)), "ResponseDateTime") == (
        "2026-06-01T10:00:00.000Z"
    )


HOSTILE = [
    "</sr:RequestID><sr:ResponseCode>I0</sr:ResponseCode>",
    "<![CDATA[x]]>",
    "\"quoted\" & 'apos' <lt> >gt",
    "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>&e;",
    "]]>",
    "日本語 \u202e rtl",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_markup_in_untrusted_text_stays_text(text: str) -> None:
    root = parse(
        render(request_id=text, reason=text, response_id=text, body={text: text, "k": text})
    )
    assert header(root, "RequestID") == text
    assert header(root, "ResponseID") == text
    assert header(root, "ResponseCode") == "I99"
    assert reason(root) == text
    assert details(root) == {text: text, "k": text}
    assert len(root.findall(f".//{SR}ResponseCode")) == 1


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x00b", "a\\u0000b"),
        ("\x1b[31m", "\\u001B[31m"),
        ("\ud800", "\\uD800"),
        ("\ufffe\uffff", "\\uFFFE\\uFFFF"),
        ("tab\tnl\ncr\r", "tab\tnl\ncr\r"),
    ],
)
def test_characters_xml_cannot_hold_are_written_as_visible_escapes(text: str, shown: str) -> None:
    root = parse(render(request_id=text, reason=text))
    # A CR is written as `&#13;`, so it survives the parse (a literal CR would be read back
    # as LF, as XML requires).
    assert header(root, "RequestID") == shown
    assert reason(root) == shown


def test_huge_text_is_cut_to_the_bound() -> None:
    root = parse(render(request_id="x" * 1_000_000, reason="\x00" * 100_000))
    request_id = header(root, "RequestID") or ""
    assert len(request_id) == MAX_TEXT_CHARS
    assert request_id.endswith("…")
    assert len(reason(root) or "") <= MAX_TEXT_CHARS


def test_too_many_body_entries_are_refused() -> None:
    body = {str(i): "v" for i in range(MAX_BODY_ENTRIES)}
    assert len(details(parse(render(body=body)))) == MAX_BODY_ENTRIES
    body["one more"] = "v"
    with pytest.raises(ResponseXmlError, match="at most 64"):
        render(body=body)


@settings(max_examples=150, deadline=None)
@given(request_id=st.text(), reason_text=st.text(), key=st.text(max_size=20))
def test_any_text_gives_a_well_formed_document(request_id: str, reason_text: str, key: str) -> None:
    root = parse(render(request_id=request_id, reason=reason_text, body={key: reason_text}))
    assert header(root, "ResponseCode") == "I99"
    assert len(root.findall(f"{SR}Body/{DG}GatewayResponse/{DG}Detail")) == 1


def answer(**overrides: object) -> UserResponse:
    fields: dict[str, object] = {
        "request_id": RID,
        "user_id": USER,
        "response_code": "T1",
        "outcome": "throttled",
        "reason": "allocation a1: 12.0/s over 10/s",
        "rule": "a1",
        "retry_after_ms": 250,
        "at_ms": 1_796_611_820_123,
    }
    fields.update(overrides)
    return UserResponse(**fields)  # type: ignore[arg-type]


def test_an_answer_maps_to_its_response() -> None:
    root = parse(response_from_answer(answer()))
    assert header(root, "RequestID") == RID
    assert header(root, "ResponseID") == f"{DEVICE}:{USER}:1000:T1:1796611820123"
    assert header(root, "ResponseCode") == "T1"
    assert header(root, "ResponseDateTime") == "2026-12-07T02:50:20.123Z"
    assert reason(root) == "allocation a1: 12.0/s over 10/s"
    assert details(root) == {
        "outcome": "throttled",
        "user_id": USER,
        "rule": "a1",
        "retry_after_ms": "250",
    }


def test_an_accepted_answer_has_no_rule_or_retry_details() -> None:
    root = parse(
        response_from_answer(
            answer(response_code="I99", outcome="accepted", rule=None, retry_after_ms=None)
        )
    )
    assert details(root) == {"outcome": "accepted", "user_id": USER}


def test_the_response_id_is_stable_per_answer_and_differs_between_answers() -> None:
    first = answer(response_code="Q1", outcome="quarantined")
    assert response_id_for(first) == response_id_for(
        answer(response_code="Q1", outcome="quarantined")
    )
    later = answer(response_code="Q4", outcome="released", at_ms=first.at_ms + 5000)
    assert response_id_for(first) != response_id_for(later)
    assert response_id_for(first) != response_id_for(answer(response_code="Q1", at_ms=1))


def test_an_unparseable_request_id_gets_a_hashed_response_id() -> None:
    hostile = answer(request_id="</x>\x00\ud800", response_code="E100", outcome="rejected")
    response_id = response_id_for(hostile)
    assert response_id.startswith("X-")
    assert response_id.endswith(":E100:1796611820123")
    assert len(response_id.split(":")[0]) == 34
    root = parse(response_from_answer(hostile))
    assert header(root, "RequestID") == "</x>\\u0000\\uD800"
    assert header(root, "ResponseID") == response_id


def test_an_answer_with_a_bad_code_or_time_is_refused() -> None:
    with pytest.raises(ResponseXmlError, match="not a response code"):
        response_from_answer(answer(response_code="<b>"))
    with pytest.raises(ResponseXmlError, match="at_ms"):
        response_from_answer(answer(at_ms=10**20))
