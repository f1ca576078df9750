"""workers.deliver.sender against local endpoints (aiohttp on 127.0.0.1, no broker): what
counts as delivered, and how each failure is classed. TLS with a test CA made here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.embedded import free_port
from workers.deliver.errors import DeliverySettingsError
from workers.deliver.sender import CONTENT_TYPE, Sender

DOC = b"<?xml version='1.0' encoding='utf-8'?><sr:Response/>"


@contextlib.asynccontextmanager
async def endpoint(
    hits: list[str], *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        assert request.content_type == "application/xml"
        assert request.headers["Content-Type"] == CONTENT_TYPE
        assert await request.read() == DOC
        hits.append("ok")
        return web.Response(status=202)

    async def fail(request: web.Request) -> web.Response:
        hits.append("fail")
        return web.Response(status=500)

    async def moved(request: web.Request) -> web.Response:
        hits.append("moved")
        raise web.HTTPFound("/ok")

    async def slow(request: web.Request) -> web.Response:
        hits.append("slow")
        await asyncio.sleep(2)
        return web.Response(status=200)

    async def steady(request: web.Request) -> web.Response:
        hits.append("steady")
        await asyncio.sleep(0.3)
        return web.Response(status=200)

    async def huge(request: web.Request) -> web.StreamResponse:
        hits.append("huge")
        return web.Response(status=200, body=b"x" * 5_000_000)

    app = web.Application()
    for path, handler in (("ok", ok), ("fail", fail), ("moved", moved), ("slow", slow)):
        app.router.add_post(f"/{path}", handler)
    app.router.add_post("/huge", huge)
    app.router.add_post("/steady", steady)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def sender(**kwargs: object) -> AsyncIterator[Sender]:
    s = Sender(timeout_s=0.5, connections_per_host=2, **kwargs)  # type: ignore[arg-type]
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def test_2xx_is_delivered_and_everything_else_is_a_classed_failure() -> None:
    hits: list[str] = []
    async with endpoint(hits) as base, sender() as s:
        assert await s.post(f"{base}/ok", DOC) is None
        assert await s.post(f"{base}/huge", DOC) is None  # only 64 KiB of the answer read
        failure = await s.post(f"{base}/fail", DOC)
        assert failure is not None
        assert (failure.kind, failure.text) == ("http_status", "HTTP 500")
        failure = await s.post(f"{base}/moved", DOC)
        assert failure is not None
        assert failure.kind == "redirect"
        assert "not followed" in failure.text
        failure = await s.post(f"{base}/slow", DOC)
        assert failure is not None
        assert failure.kind == "timeout"
        failure = await s.post(f"{base}/nowhere", DOC)
        assert failure is not None
        assert failure.text == "HTTP 404"
    assert hits == ["ok", "huge", "fail", "moved", "slow"]  # the redirect was not followed


async def test_waiting_for_a_connection_does_not_count_against_the_time_limit() -> None:
    # One connection to the host, 0.3 s per answer, a 0.5 s limit: the third POST waits
    # 0.6 s for the connection, yet each attempt itself takes 0.3 s, so none times out.
    hits: list[str] = []
    async with endpoint(hits) as base:
        s = Sender(timeout_s=0.5, connections_per_host=1)
        await s.start()
        try:
            results = await asyncio.gather(*(s.post(f"{base}/steady", DOC) for _ in range(3)))
        finally:
            await s.close()
    assert results == [None, None, None]
    assert hits == ["steady"] * 3


async def test_refused_and_invalid_urls() -> None:
    async with sender() as s:
        failure = await s.post(f"http://127.0.0.1:{free_port()}/r", DOC)
        assert failure is not None
        assert failure.kind == "connection"
        failure = await s.post("http://", DOC)
        assert failure is not None
        assert failure.kind in ("invalid_url", "connection")


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dccgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_tls_is_verified_and_a_private_ca_can_be_trusted(tmp_path: Path) -> None:
    ca, cert, key = _tls_files(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    hits: list[str] = []
    async with endpoint(hits, ssl_context=server) as base:
        async with sender() as s:  # system CAs only: the test CA is not trusted
            failure = await s.post(f"{base}/ok", DOC)
            assert failure is not None
            assert failure.kind == "tls"
        async with sender(ca_file=str(ca)) as s:
            assert await s.post(f"{base}/ok", DOC) is None
    assert hits == ["ok"]


def test_an_unloadable_ca_file_is_refused_with_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(DeliverySettingsError, match="DCCGATE_DELIVER_CA_FILE"):
        Sender(timeout_s=1, connections_per_host=1, ca_file=str(bad))
