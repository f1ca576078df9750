"""`dccgate loadtest --via duis`: building, signing and reading requests and answers, the
Users' key cache, and the in-flight bound's accounting (workers/tools/loadtest/duis.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from workers.duis import load_catalogue
from workers.duis.certificates import (
    CertificateEntry,
    CertificateIndex,
    UserCertificates,
    entry_from,
    parse_certificate,
)
from workers.duis.response_xml import render_response
from workers.duis.signature import sign_request, verify_request
from workers.duis.xml_request import read_request, web_service_for
from workers.tools.dev_certs import IssuedKey
from workers.tools.loadtest.duis import (
    DuisClient,
    DuisError,
    DuisStats,
    UserPki,
    read_answer,
    request_xml,
    service_reference,
)

Usage = Literal["xml-signing", "command-signing"]
CATALOGUE = load_catalogue()
USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
DCC = "90-B3-D5-1F-30-00-00-02"


def _cv(srv_name: str) -> int:
    srv = CATALOGUE[srv_name]
    return 8 if srv.non_device else 4 if srv.critical else 1


def _index(pki: UserPki) -> CertificateIndex:
    """The Users' certificates as the ingress sees them once registered."""
    now_ms = int(time.time() * 1000)
    by_user: dict[str, list[CertificateEntry]] = {}
    for (user_id, role), keys in pki.keys.items():
        usages: tuple[tuple[Usage, IssuedKey], ...] = (
            ("xml-signing", keys.xml),
            ("command-signing", keys.command),
        )
        for usage, issued in usages:
            pem = issued.cert_pem()
            entry = entry_from(
                parse_certificate(pem), pem=pem, usage=usage, role=role, by="t", now_ms=now_ms
            )
            by_user.setdefault(user_id, []).append(entry)
    return CertificateIndex.build({u: UserCertificates(certificates=e) for u, e in by_user.items()})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> UserPki:
    return UserPki(tmp_path_factory.mktemp("keys")).prepare([(USER, ["IS", "ED"])])


def test_service_reference() -> None:
    assert service_reference("4.1.1") == "4.1"
    assert service_reference("8.2") == "8.2"


@pytest.mark.parametrize("srv_name", sorted(CATALOGUE))
def test_every_srv_builds_a_request_the_ingress_reads(srv_name: str, pki: UserPki) -> None:
    srv = CATALOGUE[srv_name]
    cv = _cv(srv_name)
    target = DCC if srv.non_device else DEVICE
    rid = f"{USER}:{target}:42"
    xml = request_xml(srv, request_id=rid, command_variant=cv, body={"price": 0.245})
    service = web_service_for(cv)
    assert service is not None
    # the ingress wants the signature as the last child: read the request signed
    keys = pki.get(USER, "IS")
    request = read_request(
        sign_request(xml, keys.xml.key, keys.xml.cert), service=service, catalogue=CATALOGUE
    )
    assert request.request_id == rid
    assert request.srv.srv == srv_name
    assert request.command_variant == cv
    assert request.body_values() == {"price": 0.245}


def test_body_values_are_escaped_and_names_camel_cased() -> None:
    xml = request_xml(
        CATALOGUE["1.1.1"],
        request_id=f"{USER}:{DEVICE}:1",
        command_variant=1,
        body={"activation_datetime": "<x>&", "price": 1},
    )
    assert b"<sr:ActivationDatetime>&lt;x&gt;&amp;</sr:ActivationDatetime>" in xml
    assert b"<sr:Price>1</sr:Price>" in xml


def test_signed_pre_command_needs_its_payload() -> None:
    with pytest.raises(ValueError, match="GBCS payload"):
        request_xml(CATALOGUE["7.2"], request_id=f"{USER}:{DEVICE}:1", command_variant=5)


def test_client_requests_verify_with_the_registered_certificates(pki: UserPki) -> None:
    client = DuisClient("http://127.0.0.1:1", pki, CATALOGUE)
    index = _index(pki)
    now_ms = int(time.time() * 1000)
    # A Signed Pre-Command: the GBCS command signed by the User's command-signing key.
    job = client.build(
        request_id=f"{USER}:{DEVICE}:7", user_id=USER, role="IS", srv="7.2", command_variant=5
    )
    keys = pki.get(USER, "IS")
    signed = sign_request(job.xml, keys.xml.key, keys.xml.cert)
    request = read_request(signed, service="serviceS", catalogue=CATALOGUE)
    verified = verify_request(request, index, now_ms=now_ms)
    assert (verified.user_id, verified.role) == (USER, "IS")
    assert verified.command_fingerprint_sha256 is not None
    # The ED role's request is signed by the ED certificate: the ingress takes the role from it.
    job = client.build(
        request_id=f"{USER}:{DEVICE}:8", user_id=USER, role="ED", srv="4.1.1", command_variant=1
    )
    keys = pki.get(USER, "ED")
    request = read_request(
        sign_request(job.xml, keys.xml.key, keys.xml.cert), service="serviceS", catalogue=CATALOGUE
    )
    assert verify_request(request, index, now_ms=now_ms).role == "ED"


def test_keys_are_cached_per_directory(tmp_path: Path) -> None:
    first = UserPki(tmp_path).prepare([(USER, ["IS"])])
    assert first.made == 2  # xml-signing and command-signing
    again = UserPki(tmp_path).prepare([(USER, ["IS"])])
    assert again.made == 0
    a, b = first.get(USER, "IS"), again.get(USER, "IS")
    assert a.xml.cert == b.xml.cert
    assert a.xml.cert.public_key() != a.command.cert.public_key()  # SEC Appendix AD 3.3.1
    with pytest.raises(DuisError, match="no keys"):
        again.get(USER, "GS")


def test_an_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    UserPki(tmp_path).prepare([(USER, ["IS"])])
    next(tmp_path.glob("*-IS-xml.key")).write_bytes(b"not a key")
    with pytest.raises(DuisError, match="cannot make or read"):
        UserPki(tmp_path).prepare([(USER, ["IS"])])


def _answer(code: str, body: dict[str, str]) -> bytes:
    return render_response(
        request_id=f"{USER}:{DEVICE}:1",
        response_code=code,
        response_id="r",
        response_datetime=datetime.now(UTC),
        reason="why",
        body=body,
    )


def test_read_answer_decisions() -> None:
    accepted = read_answer(200, _answer("I99", {"outcome": "accepted"}))
    assert (accepted.response_code, accepted.outcome) == ("I99", "accepted")
    throttled = read_answer(
        429, _answer("T1", {"outcome": "throttled", "rule": "a1", "retry_after_ms": "250"})
    )
    assert (throttled.outcome, throttled.rule, throttled.retry_after_ms) == ("throttled", "a1", 250)
    pending = read_answer(202, _answer("I99", {"outcome": "pending"}))
    assert pending.outcome == "pending"
    refused = read_answer(403, _answer("E1", {"check": "signature_invalid"}))
    assert (refused.response_code, refused.outcome) == ("E1", "refused")


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"<html>502 Bad Gateway</html>",
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b"<a>" * 300 + b"</a>" * 300,
        _answer("T1", {"retry_after_ms": "9" * 50}),
    ],
)
def test_read_answer_never_raises(document: bytes) -> None:
    answer = read_answer(502, document)
    assert answer.http_status == 502
    if answer.response_code == "-":
        assert answer.outcome == "failed"
        assert answer.reason
    else:
        assert answer.retry_after_ms is None  # a huge number is not taken


def test_in_flight_bound_counts_what_it_holds_back(pki: UserPki) -> None:
    client = DuisClient("http://127.0.0.1:1/api/v1/", pki, CATALOGUE, max_in_flight=2)
    assert client.url == "http://127.0.0.1:1"
    for n in range(5):
        job = client.build(
            request_id=f"{USER}:{DEVICE}:{n}",
            user_id=USER,
            role="IS",
            srv="4.1.1",
            command_variant=1,
        )
        client.submit(job, 0.0)
    assert client.queued == 5
    assert client.stats.held_back == 3  # the first two had room


@pytest.mark.parametrize(
    ("url", "in_flight"), [("ftp://x", 4), ("127.0.0.1:8081", 4), ("http://x", 0)]
)
def test_client_refuses_bad_settings(pki: UserPki, url: str, in_flight: int) -> None:
    with pytest.raises(DuisError):
        DuisClient(url, pki, CATALOGUE, max_in_flight=in_flight)


def test_stats_summary_percentiles() -> None:
    stats = DuisStats(max_in_flight=4, latencies_s=[0.001 * n for n in range(1, 101)])
    lat = stats.summary()["sync_latency_ms"]
    assert (lat["p50"], lat["p99"], lat["max"]) == (51.0, 100.0, 100.0)
    assert DuisStats().summary()["sync_latency_ms"]["p50"] is None


def _scenario_run(**kw: object) -> None:
    from broker.topics import Topics
    from workers.tools.loadtest.cli import run_scenario
    from workers.tools.loadtest.scenario import load_scenario

    scenario = load_scenario("runaway-user")
    asyncio.run(
        run_scenario(
            scenario,
            items={},
            seed=1,
            scale=1.0,
            duration_s=1.0,
            embedded=False,
            bootstrap="127.0.0.1:1",
            topics=Topics.with_prefix(""),
            via="duis",
            **kw,  # type: ignore[arg-type]
        )
    )


def test_via_duis_without_the_admin_api_says_what_to_give() -> None:
    with pytest.raises(DuisError, match="--admin-url"):
        _scenario_run()


def test_via_duis_is_one_process() -> None:
    with pytest.raises(DuisError, match="drop --workers"):
        _scenario_run(workers=2)


def test_an_unreadable_ca_is_a_clear_error(pki: UserPki, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(DuisError, match="--duis-ca"):
        DuisClient("https://127.0.0.1:8081", pki, CATALOGUE, ca_file=bad)
    ca = tmp_path / "good.pem"
    ca.write_bytes((pki.directory / "ca.pem").read_bytes())
    assert DuisClient("https://127.0.0.1:8081", pki, CATALOGUE, ca_file=ca).url.startswith("https")
