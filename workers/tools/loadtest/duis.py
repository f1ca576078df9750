"""`dccgate loadtest --via duis`: the simulated Users send signed DUIS XML to the ingress.

Per simulated User and role, a P-256 xml-signing key and a command-signing key with X.509
certificates from a test CA (`workers.tools.dev_certs`), cached in a directory so a second
run reuses them (`UserPki`); `register` puts the certificates on the gateway through the
admin API. `DuisClient` signs each request the runner has due with the same code as
`dccgate send --xml` (`workers.duis.signature.sign_request`, and `sign_gbcs` for the GBCS
command of a Signed Pre-Command) and POSTs it to the web service of its Command Variant
over one pooled aiohttp session, at most `max_in_flight` at a time. When requests are due
while that many are already in flight they wait in a queue: the client counts them
(`DuisStats.held_back`) and the runner reports it, so a bound that holds the rate back is
never silent.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from workers.duis.catalogue import Srv
from workers.duis.signature import sign_gbcs, sign_request
from workers.duis.xml_request import DUIS_NS, web_service_for
from workers.tools.admin_cli import AdminClient
from workers.tools.admin_cli.errors import AdminCliError, ApiAnswerError
from workers.tools.dev_certs import DemoCa, IssuedKey, make_ca

__all__ = [
    "DuisAnswer",
    "DuisClient",
    "DuisError",
    "DuisJob",
    "DuisStats",
    "SigningKeys",
    "UserPki",
    "read_answer",
    "register",
    "request_xml",
    "service_reference",
]

log = logging.getLogger(__name__)

_DG = "urn:dccgate:response:1"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_MAX_ANSWER_BYTES = 1 << 20
"""An ingress answer is a few hundred bytes; a bigger one is not read (not an ingress)."""
_LATENCY_SAMPLES = 1_000_000
"""Sync-answer latencies kept for the percentiles (a run past this keeps the first ones)."""


class DuisError(RuntimeError):
    """The DUIS side of a load test could not be prepared; the message says what to do."""


def service_reference(srv: str) -> str:
    """The Service Reference of an SRV: `4.1.1` -> `4.1`, `8.2` -> `8.2`."""
    parts = srv.split(".")
    return srv if len(parts) <= 2 else ".".join(parts[:-1])


def _camel(name: str) -> str:
    """`activation_datetime` -> `ActivationDatetime` (the ingress reads it back as
    snake_case, so the router's data-value rules see the same name)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def request_xml(
    srv: Srv,
    *,
    request_id: str,
    command_variant: int,
    body: Mapping[str, Any] | None = None,
    gbcs_payload: bytes | None = None,
    schema_version: str = "5.4",
    body_xml: str | None = None,
) -> bytes:
    """An unsigned DUIS `sr:Request` for `srv` in the envelope of the DCC's reference
    requests (DOMAIN.md section 2.1).

    body: values of the SRV's body element, one child element each (`price` ->
    `sr:Price`); ignored for a Signed Pre-Command (CV 5-7), whose body is
    `sr:SignedPreCommand` carrying `gbcs_payload` (base64; required then).
    body_xml: the content of `sr:Body` as is, instead of the above (tests of refusals).
    The tests build their requests with this function too (tests/duis_xml.py).
    """
    if body_xml is not None:
        inner = body_xml
    elif command_variant in (5, 6, 7):
        if gbcs_payload is None:
            raise ValueError("a Signed Pre-Command (CV 5-7) needs its GBCS payload")
        inner = (
            "<sr:SignedPreCommand><sr:GBCSPayload>"
            f"{base64.b64encode(gbcs_payload).decode('ascii')}"
            "</sr:GBCSPayload></sr:SignedPreCommand>"
        )
    else:
        values = "".join(
            f"<sr:{_camel(k)}>{escape(_text(v))}</sr:{_camel(k)}>"
            for k, v in (body or {}).items()
            if _camel(k).isalnum()
        )
        inner = f"<sr:{srv.body_element}>{values}</sr:{srv.body_element}>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sr:Request xmlns:sr="{DUIS_NS}" schemaVersion="{escape(schema_version)}">'
        "<sr:Header>"
        f"<sr:RequestID>{escape(request_id)}</sr:RequestID>"
        f"<sr:CommandVariant>{int(command_variant)}</sr:CommandVariant>"
        f"<sr:ServiceReference>{service_reference(srv.srv)}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{srv.srv}</sr:ServiceReferenceVariant>"
        "</sr:Header>"
        f"<sr:Body>{inner}</sr:Body>"
        "</sr:Request>"
    ).encode()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Keys and certificates


@dataclass(frozen=True)
class SigningKeys:
    """One simulated User's keys for one role: XML signing and GBCS command signing (two
    different keys, SEC Appendix AD 3.3.1)."""

    xml: IssuedKey
    command: IssuedKey


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise DuisError(f"{path} is not an ECDSA key; delete the directory to make new keys")
    return key


def _write_key(path: Path, issued_key: ec.EllipticCurvePrivateKey) -> None:
    pem = issued_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


class UserPki:
    """The simulated Users' keys and certificates, cached under `directory`.

    `ca.pem`/`ca.key`, and per User and role `<USER>-<ROLE>-xml.pem/.key` and
    `-command.pem/.key` (PEM, keys unencrypted: test keys only). What is there and still
    valid is reused; what is missing is made.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.keys: dict[tuple[str, str], SigningKeys] = {}
        self.made = 0
        """How many keys this run had to make (0: all came from the cache)."""
        self._ca: DemoCa | None = None

    def _ca_now(self) -> DemoCa:
        if self._ca is None:
            cert_path, key_path = self.directory / "ca.pem", self.directory / "ca.key"
            if cert_path.exists() and key_path.exists():
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                self._ca = DemoCa(key=_load_key(key_path), cert=cert)
            else:
                self._ca = make_ca("dccgate load-test CA")
                cert_path.write_bytes(self._ca.cert.public_bytes(serialization.Encoding.PEM))
                _write_key(key_path, self._ca.key)
        return self._ca

    def _issued(self, user_id: str, role: str, usage: str, short: str) -> IssuedKey:
        stem = self.directory / f"{user_id.replace('-', '')}-{role}-{short}"
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            left_s = cert.not_valid_after_utc.timestamp() - time.time()
            if left_s > 86_400:
                return IssuedKey(key=_load_key(key_path), cert=cert)
        issued = self._ca_now().issue(user_id, usage)
        cert_path.write_text(issued.cert_pem(), encoding="ascii")
        _write_key(key_path, issued.key)
        self.made += 1
        return issued

    def prepare(self, users: Iterable[tuple[str, Iterable[str]]]) -> UserPki:
        """Load or make the keys of each (User ID, roles)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for user_id, roles in users:
                for role in roles:
                    self.keys[(user_id, role)] = SigningKeys(
                        xml=self._issued(user_id, role, "xml-signing", "xml"),
                        command=self._issued(user_id, role, "command-signing", "command"),
                    )
        except (OSError, ValueError) as exc:
            raise DuisError(
                f"cannot make or read the simulated Users' keys in {self.directory}: {exc}"
            ) from exc
        return self

    def get(self, user_id: str, role: str) -> SigningKeys:
        """The keys `user_id` signs with in `role`."""
        try:
            return self.keys[(user_id, role)]
        except KeyError:
            raise DuisError(f"no keys for User {user_id} in role {role}") from None


def register(admin_url: str, token: str, pki: UserPki, *, timeout_s: float = 10.0) -> int:
    """Register every certificate of `pki` for its User, usage and role through the admin
    API (`POST /v1/users/{id}/certificates`); one already registered to the User is kept.
    Returns how many were added. Blocking (urllib): call it with `asyncio.to_thread`."""
    client = AdminClient(admin_url, token, timeout_s=timeout_s)
    added = 0
    for (user_id, role), keys in pki.keys.items():
        for usage, issued in (("xml-signing", keys.xml), ("command-signing", keys.command)):
            path = f"/v1/users/{user_id}/certificates"
            body = {"pem": issued.cert_pem(), "usage": usage, "role": role}
            try:
                client.call("POST", path, body=body)
                added += 1
            except ApiAnswerError as exc:
                if exc.status == 409 and "already registered to User" in exc.api_message:
                    continue
                raise DuisError(
                    f"cannot register the {usage} certificate of User {user_id} ({role}) "
                    f"through {admin_url}: {exc.message}"
                ) from exc
            except AdminCliError as exc:
                raise DuisError(f"cannot register certificates: {exc.message}") from exc
    return added


# Answers


@dataclass(frozen=True, slots=True)
class DuisAnswer:
    """The ingress's synchronous answer to one request."""

    http_status: int
    response_code: str
    """`I99`, `E*`, `T1`, `Q*`; `-` when the answer was not an `sr:Response`."""
    outcome: str
    """`accepted`, `rejected`, `throttled`, `quarantined`, `pending` (the decision follows
    on dcc.user.responses), `refused` (by the ingress itself: never reached Kafka) or
    `failed` (no readable answer)."""
    rule: str | None = None
    retry_after_ms: int | None = None
    reason: str = ""


def read_answer(http_status: int, document: bytes) -> DuisAnswer:
    """Read the ingress's `sr:Response` (docs/duis-ingress.md, the synchronous answer).
    Never raises: an answer that is not one is `failed`, with the reason."""
    try:
        root = etree.fromstring(document, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        return DuisAnswer(http_status, "-", "failed", reason=f"HTTP {http_status}, not XML: {exc}")
    code = (root.findtext(f"{{{DUIS_NS}}}Header/{{{DUIS_NS}}}ResponseCode") or "").strip()
    details = {str(d.get("name")): (d.text or "").strip() for d in root.iter(f"{{{_DG}}}Detail")}
    reason = (root.findtext(f".//{{{_DG}}}Reason") or "").strip()
    if not code:
        return DuisAnswer(http_status, "-", "failed", reason=f"HTTP {http_status}, no code")
    if "check" in details:
        outcome = "refused"
    else:
        outcome = details.get("outcome") or ("accepted" if code == "I99" else "rejected")
    retry = details.get("retry_after_ms", "")
    return DuisAnswer(
        http_status,
        code[:16],
        outcome[:32],
        rule=details.get("rule") or None,
        retry_after_ms=int(retry) if retry.isdigit() and len(retry) < 10 else None,
        reason=reason[:500],
    )


# Sending


@dataclass(frozen=True, slots=True)
class DuisJob:
    """One request to sign and POST."""

    request_id: str
    user_id: str
    role: str
    command_variant: int
    xml: bytes
    """Unsigned; for CV 5-7 its GBCS command is already signed."""


@dataclass
class DuisStats:
    """What the DUIS side of a run counted (in report.json under `gateway.duis`)."""

    max_in_flight: int = 0
    posted: int = 0
    sync_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    http_status: collections.Counter[str] = field(default_factory=collections.Counter)
    sync_outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    agreed: int = 0
    """Requests whose answer on dcc.user.responses has the sync answer's code."""
    disagreed: int = 0
    disagreements: collections.Counter[str] = field(default_factory=collections.Counter)
    """`sync code -> async code` of each disagreement."""
    async_missing: int = 0
    """Decided in the sync answer, with no answer on dcc.user.responses by the run's end."""
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    unfinished: int = 0
    """Requests still queued, or POSTed and unanswered, when the run ended."""
    held_back: int = 0
    """Requests that were due while `max_in_flight` were in flight, so waited to be sent."""
    queue_wait_max_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able values, the sync latency as p50/p99/max in ms."""
        ordered = sorted(self.latencies_s)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "via": "duis",
            "max_in_flight": self.max_in_flight,
            "posted": self.posted,
            "sync_codes": dict(sorted(self.sync_codes.items())),
            "http_status": dict(sorted(self.http_status.items())),
            "sync_outcomes": dict(sorted(self.sync_outcomes.items())),
            "agreed": self.agreed,
            "disagreed": self.disagreed,
            "disagreements": dict(sorted(self.disagreements.items())),
            "async_missing": self.async_missing,
            "failures": dict(sorted(self.failures.items())),
            "unfinished": self.unfinished,
            "held_back": self.held_back,
            "queue_wait_max_s": round(self.queue_wait_max_s, 3),
            "sync_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        }


OnAnswer = Callable[[DuisJob, DuisAnswer, float], None]
"""Called in the event loop with each job, its answer and the seconds from POST to answer."""


class DuisClient:
    """Signs and POSTs the runner's requests to the ingress at `url`.

    url: the ingress, e.g. http://127.0.0.1:8081 (the web services are under /api/v1/).
    pki: the Users' keys. catalogue: the SRVs, to build each request.
    max_in_flight: requests POSTed and not yet answered, at most (default 64).
    timeout_s: time limit of one POST (default 30 s; the ingress answers within its
        answer wait, 2 s by default).
    ca_file: PEM CAs to trust for an https `url` (default: the system's).
    """

    def __init__(
        self,
        url: str,
        pki: UserPki,
        catalogue: Mapping[str, Srv],
        *,
        max_in_flight: int = 64,
        timeout_s: float = 30.0,
        ca_file: Path | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise DuisError(f"--duis-url {url!r} must start with http:// or https://")
        if not 1 <= max_in_flight <= 10_000:
            raise DuisError(f"--duis-in-flight must be from 1 to 10000, got {max_in_flight}")
        self.url = url.rstrip("/")
        if self.url.endswith("/api/v1"):
            self.url = self.url[: -len("/api/v1")]
        self.pki = pki
        self.catalogue = catalogue
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self._ssl: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise DuisError(f"--duis-ca {ca_file}: not a readable PEM CA ({exc})") from exc
        self.stats = DuisStats(max_in_flight=max_in_flight)
        self.on_answer: OnAnswer | None = None
        self._queue: collections.deque[tuple[DuisJob, float]] = collections.deque()
        self._wake = asyncio.Event()
        self._busy = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._t0: float | None = None

    def build(
        self,
        *,
        request_id: str,
        user_id: str,
        role: str,
        srv: str,
        command_variant: int,
        body: Mapping[str, Any] | None = None,
    ) -> DuisJob:
        """The job of one request: its XML, with a Signed Pre-Command's GBCS command signed
        by the User's command-signing key (the XML is signed when it is sent)."""
        payload = None
        if command_variant in (5, 6, 7):
            command = b"\xdf\x09\x00\x01GBCS-" + request_id.encode()
            payload = sign_gbcs(command, self.pki.get(user_id, role).command.key)
        xml = request_xml(
            self.catalogue[srv],
            request_id=request_id,
            command_variant=command_variant,
            body=body,
            gbcs_payload=payload,
        )
        return DuisJob(request_id, user_id, role, command_variant, xml)

    def submit(self, job: DuisJob, now_s: float) -> None:
        """Queue `job`; one of the senders POSTs it as soon as fewer than `max_in_flight`
        are in flight. Counts it as held back when it has to wait for that."""
        if self._busy + len(self._queue) >= self.max_in_flight:
            self.stats.held_back += 1
        self._queue.append((job, now_s))
        self._wake.set()

    @property
    def queued(self) -> int:
        """Requests due and not yet POSTed."""
        return len(self._queue)

    async def start(self) -> None:
        """Open the pooled session and start `max_in_flight` senders."""
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            trust_env=False,
        )
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(self.max_in_flight)]

    async def stop(self) -> None:
        """Cancel the senders and close the session; what is still queued or in flight is
        counted in `DuisStats.unfinished`."""
        self.stats.unfinished = len(self._queue) + self._busy
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _sender(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            job, due_s = self._queue.popleft()
            self._busy += 1
            try:
                await self._post(job, due_s)
            finally:
                self._busy -= 1

    async def _post(self, job: DuisJob, due_s: float) -> None:
        assert self._session is not None  # started before any job is queued
        started = time.monotonic()
        keys = self.pki.get(job.user_id, job.role)
        body = sign_request(job.xml, keys.xml.key, keys.xml.cert)
        service = web_service_for(job.command_variant) or "serviceS"
        self.stats.posted += 1
        try:
            async with self._session.post(
                f"{self.url}/api/v1/{service}",
                data=body,
                headers={"Content-Type": "application/xml"},
            ) as resp:
                document = await resp.content.read(_MAX_ANSWER_BYTES)
                answer = read_answer(resp.status, document)
        except TimeoutError:
            answer = DuisAnswer(0, "-", "failed", reason=f"no answer within {self.timeout_s} s")
        except aiohttp.ClientError as exc:
            answer = DuisAnswer(0, "-", "failed", reason=f"{type(exc).__name__}: {exc}")
        latency_s = time.monotonic() - started
        s = self.stats
        s.http_status[str(answer.http_status)] += 1
        s.sync_codes[answer.response_code] += 1
        s.sync_outcomes[answer.outcome] += 1
        if answer.outcome == "failed":
            s.failures[answer.reason.split(":")[0][:60]] += 1
        elif len(s.latencies_s) < _LATENCY_SAMPLES:
            s.latencies_s.append(latency_s)
        waited_s = started - (self._t0 + due_s) if self._t0 is not None else 0.0
        s.queue_wait_max_s = max(s.queue_wait_max_s, waited_s)
        if self.on_answer is not None:
            self.on_answer(job, answer, latency_s)

    def set_clock(self, t0_monotonic_s: float) -> None:
        """The monotonic time of the run's second 0 (`submit`'s `now_s` counts from it)."""
        self._t0 = t0_monotonic_s
