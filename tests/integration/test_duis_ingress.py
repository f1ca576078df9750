"""The DUIS ingress end to end on the session's broker: certificates registered through the
admin API, signed XML POSTed to the real ingress, the router deciding, the synchronous
`sr:Response`, and the signing-key separation control refused, counted and audited."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from tests.duis_xml import USER_A, USER_B, build_request, signed, signed_pre_command
from tests.integration.helpers import ApiClient, admin_api, read_topic, running_router
from workers.config.settings import Settings
from workers.duis.catalogue import load_catalogue
from workers.ingress import IngressService, build_ingress
from workers.runtime.metrics import CommonMetrics
from workers.tools.dev_certs import DemoCa, IssuedKey, make_ca

pytestmark = pytest.mark.usefixtures("topics_ready")

OPERATOR = "op-secret-for-duis-tests-at-least-32-characters"
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
DG = "{urn:dccgate:response:1}"
CATALOGUE = load_catalogue()


@contextlib.asynccontextmanager
async def running_ingress(
    settings: Settings, kafka: KafkaSettings, api: ApiClient, registry: CollectorRegistry
) -> AsyncIterator[IngressService]:
    ingress = build_ingress(
        settings, kafka, CommonMetrics(registry, version="test"), reader=api.reader
    )
    stop = asyncio.Event()
    task = asyncio.create_task(ingress.run(stop))
    try:
        await asyncio.wait_for(ingress.started.wait(), 30)
        yield ingress
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def post(ingress: IngressService, service: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{ingress.url}{service}", data=body, headers={"Content-Type": "application/xml"}
        ) as answer,
    ):
        root = etree.fromstring(await answer.read())
        fields = {
            "code": root.findtext(f"{SR}Header/{SR}ResponseCode"),
            "request_id": root.findtext(f"{SR}Header/{SR}RequestID"),
            "reason": root.findtext(f".//{DG}Reason"),
            **{d.get("name"): d.text for d in root.iter(f"{DG}Detail")},
        }
        return answer.status, fields


async def register(api: ApiClient, user: str, issued: IssuedKey, usage: str, role: str) -> Any:
    body = {"pem": issued.cert_pem(), "usage": usage, "role": role}
    return await api.call("operator", "POST", f"/v1/users/{user}/certificates", body)


@pytest.fixture
def duis_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, duis_port=0, duis_answer_wait_ms=10_000)


async def test_signed_xml_is_verified_routed_and_answered(
    duis_settings: Settings, kafka: KafkaSettings
) -> None:
    ca = make_ca()
    xml_a, command_a = ca.issue(USER_A, "xml-signing"), ca.issue(USER_A, "command-signing")
    xml_b = ca.issue(USER_B, "xml-signing")
    registry = CollectorRegistry()
    async with admin_api(duis_settings, kafka, OPERATOR) as api:
        for user, roles in ((USER_A, ["IS", "ED"]), (USER_B, ["GS"])):
            status, _ = await api.call(
                "operator", "PUT", f"/v1/users/{user}", {"name": user[-5:], "roles": roles}
            )
            assert status == 200
        status, doc = await register(api, USER_A, xml_a, "xml-signing", "ED")
        assert status == 201, doc
        assert len(doc["fingerprint_sha256"]) == 64
        assert (await register(api, USER_A, command_a, "command-signing", "IS"))[0] == 201
        assert (await register(api, USER_B, xml_b, "xml-signing", "GS"))[0] == 201
        # The same key for the other usage, by any User: refused, counted, audited.
        same_key = ca.issue(USER_B, "xml-signing", key=command_a.key)
        status, doc = await register(api, USER_B, same_key, "xml-signing", "GS")
        assert status == 409
        assert "SEC Appendix AD 3.3.1" in doc["error"]
        status, listed = await api.call("operator", "GET", f"/v1/users/{USER_A}/certificates")
        assert status == 200
        assert {c["usage"] for c in listed["certificates"]} == {"xml-signing", "command-signing"}
        status, config = await api.call("operator", "GET", "/v1/config")
        assert status == 200
        assert f"certificates/{USER_A}" in {item["key"] for item in config["items"]}

        async with (
            running_router(duis_settings, kafka, users={USER_A: ("IS", "ED"), USER_B: ("GS",)}),
            running_ingress(duis_settings, kafka, api, registry) as ingress,
        ):
            # 4.1.1 from A's certificate registered as ED: routed with user_role ED.
            read = signed(build_request(CATALOGUE["4.1.1"], counter=1), xml_a)
            status, answer = await post(ingress, "serviceS", read)
            assert (status, answer["code"], answer["outcome"]) == (200, "I99", "accepted")
            assert answer["request_id"].startswith(USER_A)

            # 7.2 is not an ED's to send: the router's DUIS rules, with the verified role.
            disable = signed(build_request(CATALOGUE["7.2"], counter=2, cv=4), xml_a)
            status, answer = await post(ingress, "serviceT", disable)
            assert (status, answer["code"], answer["check"]) == (
                403,
                "E2",
                "duis.role_not_eligible",
            )

            # B's certificate on A's request: refused by the ingress.
            status, answer = await post(
                ingress, "serviceS", signed(build_request(CATALOGUE["4.1.1"], counter=3), xml_b)
            )
            assert (status, answer["code"], answer["check"]) == (
                403,
                "E1",
                "certificate_not_originators",
            )

            # XML signed with A's command-signing key: the separation control.
            status, answer = await post(
                ingress, "serviceS", signed(build_request(CATALOGUE["4.1.1"], counter=4), command_a)
            )
            assert (status, answer["code"], answer["check"]) == (403, "E106", "key_separation")

            # A Signed Pre-Command whose GBCS command the XML key signed: refused too.
            pre = signed(signed_pre_command(CATALOGUE["4.1.1"], xml_a, counter=5), xml_a)
            status, answer = await post(ingress, "serviceS", pre)
            assert answer["check"] == "key_separation"

            # Wrong web service: E13.
            status, answer = await post(ingress, "serviceD", read)
            assert (status, answer["code"]) == (400, "E13")

            # Hostile XML: refused before anything is parsed.
            status, answer = await post(
                ingress,
                "serviceS",
                b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
            )
            assert (status, answer["code"]) == (400, "E103")

            # Not sent as XML.
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{ingress.url}serviceS", data=b"{}") as plain,
            ):
                assert plain.status == 415

        forwarded = await read_topic(kafka, duis_settings.topics.sr_inbound, expect=1)
        records = {orjson.loads(r.value)["request_id"]: r for r in forwarded}
        record = records[f"{USER_A}:00-DB-12-34-56-78-90-A0:1"]
        value = orjson.loads(record.value)
        assert value["user_role"] == "ED"
        assert value["xml"] == read.decode()
        headers = dict(record.headers)
        assert (
            headers["dccgate-duis-verified"].decode()
            == listed["certificates"][0]["fingerprint_sha256"]
        )
        assert len(forwarded) == 1  # everything else was refused before publishing

    assert (
        registry.get_sample_value("dccgate_duis_key_separation_refusals_total", {"user": USER_A})
        == 2.0
    )
    audit = await read_topic(kafka, duis_settings.topics.audit, expect=1)
    actions = [orjson.loads(r.value)["action"] for r in audit]
    assert actions.count("duis.key-separation-refused") == 2
    assert "certificate.refused" in actions


async def test_past_the_wait_the_answer_is_i99_pending(
    duis_settings: Settings, kafka: KafkaSettings
) -> None:
    settings = msgspec.structs.replace(duis_settings, duis_answer_wait_ms=0)
    ca = make_ca()
    xml_a = ca.issue(USER_A, "xml-signing")
    async with admin_api(settings, kafka, OPERATOR) as api:
        await api.call("operator", "PUT", f"/v1/users/{USER_A}", {"name": "A", "roles": ["IS"]})
        assert (await register(api, USER_A, xml_a, "xml-signing", "IS"))[0] == 201
        async with running_ingress(settings, kafka, api, CollectorRegistry()) as ingress:
            read = signed(build_request(CATALOGUE["4.1.1"], counter=7), xml_a)
            status, answer = await post(ingress, "serviceS", read)
    assert (status, answer["code"], answer["outcome"]) == (202, "I99", "pending")
    assert "asynchronously" in answer["reason"]


async def test_revoking_a_certificate_refuses_what_it_signs(
    duis_settings: Settings, kafka: KafkaSettings
) -> None:
    ca = make_ca()
    xml_a = ca.issue(USER_A, "xml-signing")
    async with admin_api(duis_settings, kafka, OPERATOR) as api:
        await api.call("operator", "PUT", f"/v1/users/{USER_A}", {"name": "A", "roles": ["IS"]})
        _, doc = await register(api, USER_A, xml_a, "xml-signing", "IS")
        fingerprint = doc["fingerprint_sha256"]
        status, doc = await api.call(
            "operator", "DELETE", f"/v1/users/{USER_A}/certificates/{fingerprint}"
        )
        assert (status, doc["status"]) == (200, "revoked")
        status, _ = await api.call(
            "operator", "DELETE", f"/v1/users/{USER_A}/certificates/{fingerprint}"
        )
        assert status == 409
        async with running_ingress(duis_settings, kafka, api, CollectorRegistry()) as ingress:
            read = signed(build_request(CATALOGUE["4.1.1"], counter=8), xml_a)
            status, answer = await post(ingress, "serviceS", read)
    assert (status, answer["code"], answer["check"]) == (403, "E1", "certificate_revoked")


def _server_certificate(tmp_path: Path) -> tuple[DemoCa, str, str, str]:
    """A test CA and a server certificate for 127.0.0.1 it issued: the CA, and the CA,
    certificate and key files."""
    ca = make_ca("duis server test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    files = {
        "ca.pem": ca.cert.public_bytes(serialization.Encoding.PEM),
        "server.pem": cert.public_bytes(serialization.Encoding.PEM),
        "server.key": IssuedKey(key=key, cert=cert).key_pem(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return ca, str(tmp_path / "ca.pem"), str(tmp_path / "server.pem"), str(tmp_path / "server.key")


async def test_https_and_mutual_tls(
    duis_settings: Settings, kafka: KafkaSettings, tmp_path: Path
) -> None:
    ca, ca_file, cert_file, key_file = _server_certificate(tmp_path)
    settings = msgspec.structs.replace(
        duis_settings,
        duis_tls_cert=cert_file,
        duis_tls_key=key_file,
        duis_client_ca=ca_file,
        duis_answer_wait_ms=0,
    )
    signer = make_ca().issue(USER_A, "xml-signing")
    client_tls = ssl.create_default_context(cafile=ca_file)
    async with admin_api(settings, kafka, OPERATOR) as api:
        await api.call("operator", "PUT", f"/v1/users/{USER_A}", {"name": "A", "roles": ["IS"]})
        assert (await register(api, USER_A, signer, "xml-signing", "IS"))[0] == 201
        async with running_ingress(settings, kafka, api, CollectorRegistry()) as ingress:
            assert ingress.url.startswith("https://127.0.0.1:")
            body = signed(build_request(CATALOGUE["4.1.1"], counter=9), signer)
            # No client certificate: the TLS handshake is refused.
            with pytest.raises(aiohttp.ClientError):
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        f"{ingress.url}serviceS",
                        data=body,
                        headers={"Content-Type": "application/xml"},
                        ssl=client_tls,
                    ) as answer,
                ):
                    await answer.read()
            # With one the CA issued: served over HTTPS.
            client_key = tmp_path / "client.key"
            client_cert = tmp_path / "client.pem"
            client = ca.issue("a-dcc-user-client", "tls-client")
            client_cert.write_text(client.cert_pem())
            client_key.write_bytes(client.key_pem())
            client_tls.load_cert_chain(str(client_cert), str(client_key))
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{ingress.url}serviceS",
                    data=body,
                    headers={"Content-Type": "application/xml"},
                    ssl=client_tls,
                ) as answer,
            ):
                assert answer.status == 202  # verified, queued, no router: I99 pending
                assert b"<sr:ResponseCode>I99</sr:ResponseCode>" in await answer.read()
