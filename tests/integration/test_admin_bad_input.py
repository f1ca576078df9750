"""The admin HTTP server under hostile input: numbers that are not short ASCII numbers, bodies
not sent as JSON or whose JSON means different things to different readers, and clients
that send a request's head or body too slowly. Each is refused with a 4xx (never a 500) and
changes nothing, or the connection is closed.

The timeouts are measured here and printed; the only clock in the assertions is a deadline
(twice the limit) by which the server must have closed the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
from prometheus_client import CollectorRegistry

from broker.settings import KafkaSettings
from tests.integration.helpers import ApiClient, admin_api
from workers.admin import routing
from workers.config.settings import Settings
from workers.runtime.http import HEADER_TIMEOUT_S, HttpServer, build_app

A = "90-B3-D5-1F-30-01-00-00"
OPERATOR = "bad-input-test-operator-token-of-32-characters"
ALLOCATION = {"rate_per_s": 10, "burst": 20}
PATH = f"/v1/allocations/{A}"
# Not 1 to 19 ASCII digits: Python's int() refuses over 4,300 digits (a 500 once), and
# str.isdigit() and int() take other scripts' digits (Arabic-Indic, fullwidth, superscript).
NOT_NUMBERS = ["9" * 5000, "9" * 20, "\u0663", "\uff11", "\u00b2", "1e3", "-1", "3.0", "", " "]


@pytest.fixture
async def api(
    settings: Settings, kafka: KafkaSettings, topics_ready: None
) -> AsyncIterator[ApiClient]:
    async with admin_api(settings, kafka, OPERATOR) as api:
        status, _ = await api.call(
            "operator", "PUT", f"/v1/users/{A}", {"name": "A", "roles": ["IS"]}
        )
        assert status == 200
        assert (await api.call("operator", "PUT", PATH, ALLOCATION))[0] == 200
        yield api


async def _unchanged(api: ApiClient) -> None:
    _, doc = await api.call("operator", "GET", PATH)
    assert doc == {
        "rate_per_s": 10.0, "burst": 20, "shadow": False, "version": 1, "source": "api"
    }  # fmt: skip


async def test_if_match_must_be_a_short_ascii_number(api: ApiClient) -> None:
    for value in NOT_NUMBERS:
        for header in (value, f'"{value}"'):
            status, doc = await api.call(
                "operator", "PUT", PATH, ALLOCATION, headers={"If-Match": header}
            )
            assert (status, "If-Match" in doc["error"]) == (422, True), (header[:30], doc)
        status, doc = await api.call(
            "operator", "DELETE", f"/v1/users/{A}", headers={"If-Match": value}
        )
        assert status == 422, (value[:30], doc)
    await _unchanged(api)
    status, doc = await api.call("operator", "PUT", PATH, ALLOCATION, headers={"If-Match": '"1"'})
    assert (status, doc["version"]) == (200, 2)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/quarantine", "limit"),
        ("/v1/audit", "limit"),
        ("/v1/audit", "since_ms"),
        ("/v1/audit", "until_ms"),
    ],
)
async def test_integer_query_parameters_must_be_short_ascii_numbers(
    api: ApiClient, path: str, name: str
) -> None:
    for value in NOT_NUMBERS:
        status, doc = await api.call("operator", "GET", f"{path}?{urlencode({name: value})}")
        assert (status, name in doc.get("error", "")) == (422, True), (value[:30], status, doc)
    status, _ = await api.call("operator", "GET", f"{path}?{name}=5")
    assert status == 200


async def test_a_body_not_sent_as_json_is_415(api: ApiClient) -> None:
    body = b'{"rate_per_s": 99, "burst": 99}'
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/jsonx",
    ):
        status, doc = await api.call(
            "operator", "PUT", PATH, body, headers={"Content-Type": content_type}
        )
        assert (status, "application/json" in doc["error"]) == (415, True), doc
    bulk = {"user_id": A}
    status, _ = await api.call(
        "operator",
        "POST",
        "/v1/quarantine/release",
        b'{"user_id": "x"}',
        headers={"Content-Type": "text/plain"},
    )
    assert status == 415
    # No Content-Type at all.
    async with api.client.request(
        "PUT",
        PATH,
        data=body,
        skip_auto_headers=["Content-Type"],
        headers={"Authorization": f"Bearer {OPERATOR}"},
    ) as resp:
        assert resp.status == 415
    await _unchanged(api)
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; charset=UTF-8",
    ):
        status, _ = await api.call(
            "operator",
            "POST",
            "/v1/quarantine/release",
            bulk,
            headers={"Content-Type": content_type},
        )
        assert status == 200, content_type


async def test_json_that_readers_could_read_differently_is_refused(api: ApiClient) -> None:
    cases = [
        (b'{"rate_per_s": 10, "burst": 20, "burst": 5000}', "duplicate_key"),
        (b'{"rate_per_s": 10, "burst": 20, "\\u0062urst": 5000}', "duplicate_key"),
        (b'{"rate_per_s": 10, "burst": 20, "shadow": false, "note": "\xff"}', "invalid_utf8"),
        (b'{"rate_per_s": 10, "burst": 20, "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep"),
        (b'{"rate_per_s": 10, "burst": 20, "x": "\\ud800"}', "lone_surrogate"),
    ]
    for body, reason in cases:
        status, doc = await api.call("operator", "PUT", PATH, body)
        assert (status, reason in doc["error"]) == (400, True), doc
    status, doc = await api.call(
        "operator",
        "POST",
        "/v1/quarantine/release",
        b'{"user_id": "%s", "user_id": "x"}' % A.encode(),
    )
    assert (status, "duplicate_key" in doc["error"]) == (400, True), doc
    await _unchanged(api)


async def test_a_body_that_trickles_in_is_408(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing, "BODY_TIMEOUT_S", 0.5)
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"PUT {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    writer.write(head.encode() + b'{"rate_per_s"')  # and then nothing
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    await _unchanged(api)


async def test_a_request_head_that_does_not_arrive_in_time_is_closed() -> None:
    """What `dccgate run` serves on its HTTP port: half-open connections are closed."""
    server = HttpServer(build_app(CollectorRegistry(), {}), host="127.0.0.1", port=0)
    await server.start()

    async def connection(first: bytes, trickle: bytes = b"") -> tuple[bytes, float]:
        """Send `first`, then `trickle` a byte every 0.5 s; what came back, and when the
        server closed the connection (seconds after it was opened)."""
        start = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(first)
        got = b""

        async def send_slowly() -> None:
            for i in range(len(trickle)):
                await asyncio.sleep(0.5)
                writer.write(trickle[i : i + 1])

        sender = asyncio.create_task(send_slowly())
        try:
            # The deadline: twice the limit (a liveness bound, not a speed check).
            got = await asyncio.wait_for(reader.read(), timeout=2 * HEADER_TIMEOUT_S)
        finally:
            sender.cancel()
            writer.close()
        return got, time.monotonic() - start

    try:
        partial_line = [connection(b"GET /healthz HT") for _ in range(200)]
        no_end_of_head = connection(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slowloris = connection(b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"a" * 40)
        idle_keep_alive = connection(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        results = await asyncio.gather(*partial_line, no_end_of_head, slowloris, idle_keep_alive)
    finally:
        await server.stop()
    *silent, (answered, _) = results
    assert all(got == b"" for got, _ in silent)  # closed without an answer
    assert answered.startswith(b"HTTP/1.1 200")  # answered, then closed when idle
    closed_after = [t for _, t in results]
    print(
        f"\n{len(results)} connections closed {min(closed_after):.2f} to "
        f"{max(closed_after):.2f} s after opening (limit {HEADER_TIMEOUT_S:g} s)"
    )
    assert min(closed_after) >= HEADER_TIMEOUT_S * 0.9  # the limit, not an error, closed them
