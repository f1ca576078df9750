"""workers.ingress.app: what the ingress publishes and how it answers, with the producer
and the answer follower replaced by in-memory ones (the real ones: tests/integration)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from lxml import etree
from prometheus_client import CollectorRegistry

from broker.errors import DeliveryError
from broker.schemas import ControlRecord, UserResponse
from broker.topics import Topics
from tests.duis_xml import USER_A, Pki, build_request, signed
from workers.config.codes import ResponseCodes
from workers.config.snapshot import ConfigSnapshot, ConfigState
from workers.duis.catalogue import load_catalogue
from workers.duis.certificates import UserCertificates
from workers.ingress.app import VERIFIED_HEADER, IngressApp
from workers.ingress.correlator import AlreadyWaitingError
from workers.ingress.metrics import IngressMetrics

CATALOGUE = load_catalogue()
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
DG = "{urn:dccgate:response:1}"


class Producer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.fail = fail

    async def send_one(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Any = ()
    ) -> tuple[int, int]:
        if self.fail and not topic.endswith("audit"):
            raise DeliveryError("not acknowledged")
        self.sent.append((topic, key, value, list(headers)))
        return 0, len(self.sent)


class Waiter:
    """Answers each request with `answer(request_id)` (None: no answer comes)."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.waiting: set[str] = set()

    def expect(self, request_id: str) -> asyncio.Future[UserResponse]:
        if request_id in self.waiting:
            raise AlreadyWaitingError(request_id)
        self.waiting.add(request_id)
        future: asyncio.Future[UserResponse] = asyncio.get_running_loop().create_future()
        if self.answer is not None:
            future.set_result(self.answer(request_id))
        return future

    def forget(self, request_id: str) -> None:
        self.waiting.discard(request_id)


class Request:
    def __init__(self, body: bytes, content_type: str = "application/xml") -> None:
        self.body = body
        self.content_type = content_type
        self.content_length = len(body)

    async def read(self) -> bytes:
        return self.body


def snapshot(pki: Pki, roles: list[str]) -> ConfigSnapshot:
    state = ConfigState()
    records = [
        (f"users/{USER_A}", {"name": "A", "roles": roles}),
        (f"certificates/{USER_A}", UserCertificates(certificates=pki.registered[USER_A])),
    ]
    for offset, (key, value) in enumerate(records):
        record = ControlRecord(
            key=key, version=1, value=msgspec.Raw(msgspec.json.encode(value)), by="t", at_ms=0
        )
        state.apply(key.encode(), msgspec.json.encode(record), offset)
    return state.snapshot()


def make_app(
    pki: Pki, producer: Producer, waiter: Waiter, *, roles: list[str] | None = None
) -> tuple[IngressApp, CollectorRegistry]:
    registry = CollectorRegistry()
    app = IngressApp(
        topics=Topics.with_prefix(""),
        producer=producer,
        waiter=waiter,  # type: ignore[arg-type]
        metrics=IngressMetrics(registry, lambda _: True),
        codes=ResponseCodes(),
        catalogue=CATALOGUE,
        answer_wait_s=0.05,
    )
    app.apply(snapshot(pki, roles or ["IS"]))
    return app, registry


def fields(response: Any) -> dict[str, Any]:
    root = etree.fromstring(response.body)
    return {
        "status": response.status,
        "code": root.findtext(f"{SR}Header/{SR}ResponseCode"),
        "reason": root.findtext(f".//{DG}Reason"),
        **{d.get("name"): d.text for d in root.iter(f"{DG}Detail")},
    }


def answer_of(outcome: str, code: str, **kw: Any) -> Any:
    def make(request_id: str) -> UserResponse:
        return UserResponse(
            request_id=request_id,
            user_id=USER_A,
            response_code=code,
            outcome=outcome,  # type: ignore[arg-type]
            reason=f"{outcome} for the test",
            at_ms=1_765_000_000_000,
            **kw,
        )

    return make


_KEYS: dict[int, Any] = {}


def pki_key(pki: Pki) -> Any:
    return _KEYS[id(pki)]


@pytest.fixture
def keyed() -> Pki:
    pki = Pki()
    _KEYS[id(pki)] = pki.issue(USER_A, "xml-signing", "IS")
    return pki


async def test_what_passes_is_published_with_the_verified_role_header_and_xml(keyed: Pki) -> None:
    producer = Producer()
    app, _ = make_app(keyed, producer, Waiter(answer_of("accepted", "I99")))
    body = signed(build_request(CATALOGUE["4.1.1"], counter=5), pki_key(keyed))
    got = fields(await app.answer("serviceS", Request(body)))  # type: ignore[arg-type]
    assert (got["status"], got["code"], got["outcome"]) == (200, "I99", "accepted")
    [(topic, key, value, headers)] = producer.sent
    assert (topic, key) == ("dcc.sr.inbound", USER_A.encode())
    record = orjson.loads(value or b"")
    assert record["user_role"] == "IS"
    assert record["srv"] == "4.1.1"
    assert record["xml"] == body.decode()
    assert record["body"] == {"execution_date_time": "2026-12-07T00:00:00Z"}
    assert dict(headers)[VERIFIED_HEADER] == keyed.registered[USER_A][0].fingerprint_sha256.encode()


@pytest.mark.parametrize(
    ("answer", "status", "code", "extra"),
    [
        (answer_of("throttled", "T1", retry_after_ms=1500), 429, "T1", {"retry_after_ms": "1500"}),
        (answer_of("quarantined", "Q1", rule="u1"), 202, "Q1", {"rule": "u1"}),
        (answer_of("rejected", "E2"), 403, "E2", {}),
        (answer_of("rejected", "E102"), 400, "E102", {}),
    ],
)
async def test_the_routers_decision_is_the_answer(
    keyed: Pki, answer: Any, status: int, code: str, extra: dict[str, str]
) -> None:
    app, _ = make_app(keyed, Producer(), Waiter(answer))
    body = signed(build_request(CATALOGUE["4.1.1"]), pki_key(keyed))
    response = await app.answer("serviceS", Request(body))  # type: ignore[arg-type]
    got = fields(response)
    assert (got["status"], got["code"]) == (status, code)
    assert extra.items() <= got.items()
    if code == "T1":
        assert response.headers["Retry-After"] == "2"


async def test_no_decision_within_the_wait_is_i99_pending(keyed: Pki) -> None:
    app, registry = make_app(keyed, Producer(), Waiter(None))
    body = signed(build_request(CATALOGUE["4.1.1"]), pki_key(keyed))
    got = fields(await app.answer("serviceS", Request(body)))  # type: ignore[arg-type]
    assert (got["status"], got["code"], got["outcome"]) == (202, "I99", "pending")
    assert (
        registry.get_sample_value(
            "dccgate_duis_requests_total", {"service": "serviceS", "outcome": "pending"}
        )
        == 1.0
    )


async def test_kafka_not_acknowledging_is_503_e107(keyed: Pki) -> None:
    app, _ = make_app(keyed, Producer(fail=True), Waiter(None))
    body = signed(build_request(CATALOGUE["4.1.1"]), pki_key(keyed))
    got = fields(await app.answer("serviceS", Request(body)))  # type: ignore[arg-type]
    assert (got["status"], got["code"], got["check"]) == (503, "E107", "unavailable")


async def test_a_request_id_already_waiting_here_is_409(keyed: Pki) -> None:
    waiter = Waiter(None)
    waiter.waiting.add(f"{USER_A}:00-DB-12-34-56-78-90-A0:1000")
    app, _ = make_app(keyed, Producer(), waiter)
    body = signed(build_request(CATALOGUE["4.1.1"]), pki_key(keyed))
    got = fields(await app.answer("serviceS", Request(body)))  # type: ignore[arg-type]
    assert (got["status"], got["code"]) == (409, "E102")


async def test_the_role_must_be_eligible_and_held(keyed: Pki) -> None:
    producer = Producer()
    app, _ = make_app(keyed, producer, Waiter(None), roles=["ED"])
    body = signed(build_request(CATALOGUE["4.1.1"]), pki_key(keyed))
    got = fields(await app.answer("serviceS", Request(body)))  # type: ignore[arg-type]
    # The certificate says IS; the User is registered as ED only now: E1, nothing published.
    assert (got["status"], got["code"], got["check"]) == (403, "E1", "duis.role_not_held")
    assert producer.sent == []


async def test_not_xml_is_415(keyed: Pki) -> None:
    app, _ = make_app(keyed, Producer(), Waiter(None))
    got = fields(await app.answer("serviceS", Request(b"{}", "application/json")))  # type: ignore[arg-type]
    assert (got["status"], got["code"]) == (415, "E103")


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_mutation_of_a_signed_request_gets_anything_but_an_answer(data: st.DataObject) -> None:
    # Nothing a sender does may raise out of the ingress: every input gets an sr:Response.
    pki = _FUZZ_PKI
    body = bytearray(_FUZZ_BODY)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        if how == "flip":
            body[at] = data.draw(st.integers(0, 255))
        elif how == "cut":
            del body[at : at + data.draw(st.integers(1, 40))]
        else:
            body[at:at] = body[at : at + data.draw(st.integers(1, 40))]
    app, _ = make_app(pki, Producer(), Waiter(answer_of("accepted", "I99")))
    response = asyncio.run(app.answer("serviceS", Request(bytes(body))))  # type: ignore[arg-type]
    got = fields(response)
    assert got["code"] is not None
    assert 200 <= got["status"] < 600


_FUZZ_PKI = Pki()
_FUZZ_KEY = _FUZZ_PKI.issue(USER_A, "xml-signing", "IS")
_FUZZ_BODY = signed(build_request(CATALOGUE["4.1.1"]), _FUZZ_KEY)
