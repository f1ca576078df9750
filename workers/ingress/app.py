"""The DUIS web services: `POST /api/v1/serviceD`, `/serviceS`, `/serviceT`.

Each request is one DUIS `sr:Request` (`application/xml`). The ingress reads it safely and
checks its envelope (`workers.duis.xml_request`), its signature, certificate and the
signing-key separation control (`workers.duis.signature`), then the router's own DUIS rules
(`workers.duis.validate`, with the role registered with the certificate). What passes goes
to `dcc.sr.inbound` in the contract's JSON form, with the original XML in `xml`, the
verified role in `user_role` and the header `dccgate-duis-verified` (the signing
certificate's SHA-256 fingerprint). The answer is an `sr:Response`: the ingress's refusal,
the router's decision for the request if it comes within the wait, or I99 "pending".
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from broker.errors import DeliveryError
from broker.schemas import AuditRecord, ServiceRequest, UserResponse
from broker.topics import Topics
from workers.config.codes import ResponseCodes
from workers.config.snapshot import ConfigSnapshot
from workers.duis.catalogue import Srv
from workers.duis.certificates import CertificateIndex
from workers.duis.response_xml import render_response, response_id_for
from workers.duis.signature import SignatureRefusal, Verified, verify_request
from workers.duis.validate import DuisValidator, Rejection
from workers.duis.xml_request import (
    DEFAULT_MAX_REQUEST_BYTES,
    WEB_SERVICES,
    DuisRequest,
    WebService,
    XmlRefusal,
    read_request,
)
from workers.ingress.codes import PENDING_CODE, REFUSALS
from workers.ingress.correlator import AlreadyWaitingError, AnswerWaiter
from workers.ingress.metrics import IngressMetrics
from workers.ingress.publisher import Publisher
from workers.runtime.loop import LoopStatus

__all__ = [
    "BODY_TIMEOUT_S",
    "VERIFIED_HEADER",
    "IngressApp",
]

log = logging.getLogger(__name__)

VERIFIED_HEADER = "dccgate-duis-verified"
"""Header on `dcc.sr.inbound` records the ingress wrote: the SHA-256 fingerprint of the
registered certificate whose signature it verified (docs/contract.md)."""
COMMAND_CERT_HEADER = "dccgate-duis-command-certificate"
"""On Signed Pre-Commands: the fingerprint of the command-signing certificate whose key
signed the GBCS command."""
BODY_TIMEOUT_S = 10.0
"""A request body must have arrived in full this many seconds after its head."""
_AUTH_CODES = frozenset({"E1", "E2", "E3", "E4", "E5"})
_AUTH_REJECTIONS = frozenset({"unknown_user", "invalid_role", "role_not_held", "role_not_eligible"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_json = msgspec.json.Encoder()


class _Refused(Exception):
    def __init__(
        self, check: str, reason: str, request_id: str | None, user_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.check = check
        self.reason = reason
        self.request_id = request_id
        self.user_id = user_id


class IngressApp:
    """The DUIS web services over a publisher (`GroupPublisher`: concurrent requests'
    records go to Kafka in one batch), an answer waiter and the configuration.

    answer_wait_s: how long a request waits for the router's decision before the answer
    is I99 "pending" (the decision then reaches the User only asynchronously).
    max_request_bytes: the size limit of one request (256 KiB).
    """

    def __init__(
        self,
        *,
        topics: Topics,
        producer: Publisher,
        waiter: AnswerWaiter,
        metrics: IngressMetrics,
        codes: ResponseCodes,
        catalogue: Mapping[str, Srv],
        answer_wait_s: float,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        clock: Callable[[], float] = time.time,
        status: LoopStatus | None = None,
    ) -> None:
        self._topics = topics
        self._producer = producer
        self._waiter = waiter
        self._metrics = metrics
        self._codes = codes
        self._catalogue = catalogue
        self._answer_wait_s = answer_wait_s
        self._max_bytes = max_request_bytes
        self._clock = clock
        self._status = status or LoopStatus()
        # Replay is the router's to judge (its memory survives restarts); the ingress never
        # records a counter, so this validator checks Users, roles, SRVs and CVs only.
        self._validator = DuisValidator(catalogue, replay_pairs_per_user=1)
        self._validator.set_users({})
        self._index = CertificateIndex([])

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Follow the configuration: registered Users and roles, registered certificates."""
        self._validator.set_users({u: user.roles for u, user in snapshot.users.items()})
        self._index = CertificateIndex.build(snapshot.certificates)

    def install(self, app: web.Application) -> None:
        """Add the three web services to `app`."""
        for service in WEB_SERVICES:
            app.router.add_post(f"/api/v1/{service}", self._handler(service))  # type: ignore[arg-type]

    def _handler(self, service: WebService) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self.answer(service, request)

        return handle

    async def answer(self, service: WebService, request: web.Request) -> web.Response:
        """Check, publish and answer one request."""
        started = time.perf_counter()
        self._status.records += 1
        self._status.last_batch_at_s = self._clock()
        try:
            data = await self._body(request)
            duis, verified = self._check(service, data)
            await self._check_rules(duis, verified)
            response, outcome = await self._submit(service, duis, verified)
        except _Refused as refused:
            self._metrics.refused(refused.check, refused.user_id)
            if refused.check == "key_separation":
                await self._audit(refused)
            response, outcome = self._refusal(refused), "refused"
        self._metrics.answered(service, outcome, time.perf_counter() - started)
        return response

    async def _body(self, request: web.Request) -> bytes:
        if request.content_type not in _XML_TYPES:
            raise _Refused(
                "unsupported_media_type",
                f"Content-Type is {request.content_type[:60]!r}; send the DUIS request as "
                "application/xml",
                None,
            )
        length = request.content_length
        if length is not None and length > self._max_bytes:
            raise _Refused(
                "too_large",
                f"the request is {length} bytes; at most {self._max_bytes} are accepted",
                None,
            )
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                data = await request.read()
        except TimeoutError:
            raise _Refused(
                "malformed_xml", f"the body did not arrive within {BODY_TIMEOUT_S:g} s", None
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(
                "too_large", f"the request is over {self._max_bytes} bytes; refused", None
            ) from None
        return data

    def _check(self, service: WebService, data: bytes) -> tuple[DuisRequest, Verified]:
        try:
            duis = read_request(
                data, service=service, catalogue=self._catalogue, max_bytes=self._max_bytes
            )
        except XmlRefusal as exc:
            raise _Refused(exc.kind, exc.reason, exc.request_id) from None
        try:
            verified = verify_request(duis, self._index, now_ms=int(self._clock() * 1000))
        except SignatureRefusal as exc:
            raise _Refused(exc.kind, exc.reason, duis.request_id, duis.user_id) from None
        return duis, verified

    async def _check_rules(self, duis: DuisRequest, verified: Verified) -> None:
        # The DUIS rules read the header fields only: no body, no XML encoded here.
        request = ServiceRequest(
            request_id=duis.request_id,
            user_role=verified.role,
            srv=duis.srv.srv,
            command_variant=duis.command_variant,
        )
        verdict = self._validator.check(request, duis.user_id)
        if isinstance(verdict, Rejection):
            raise _Refused(f"duis.{verdict.kind}", verdict.reason, duis.request_id, duis.user_id)

    def _service_request(
        self, duis: DuisRequest, verified: Verified, *, xml: str
    ) -> ServiceRequest:
        return ServiceRequest(
            request_id=duis.request_id,
            user_role=verified.role,
            srv=duis.srv.srv,
            command_variant=duis.command_variant,
            body=msgspec.Raw(_json.encode(duis.body_values())),
            xml=msgspec.Raw(_json.encode(xml)),
        )

    async def _submit(
        self, service: WebService, duis: DuisRequest, verified: Verified
    ) -> tuple[web.Response, str]:
        try:
            future = self._waiter.expect(duis.request_id)
        except AlreadyWaitingError:
            raise _Refused(
                "in_flight",
                f"a request with RequestID {duis.request_id} is already waiting for its "
                "answer; a RequestID is used once",
                duis.request_id,
                duis.user_id,
            ) from None
        try:
            record = self._service_request(duis, verified, xml=duis.raw.decode("utf-8"))
            headers = [(VERIFIED_HEADER, verified.fingerprint_sha256.encode("ascii"))]
            if verified.command_fingerprint_sha256 is not None:
                headers.append(
                    (COMMAND_CERT_HEADER, verified.command_fingerprint_sha256.encode("ascii"))
                )
            try:
                await self._producer.send_one(
                    self._topics.sr_inbound,
                    duis.user_id.encode("ascii"),
                    _json.encode(record),
                    headers=headers,
                )
            except DeliveryError as exc:
                log.warning("request %s not queued: %s", duis.request_id, exc)
                raise _Refused(
                    "unavailable",
                    "the gateway could not queue the request (Kafka did not acknowledge it); "
                    "send it again later",
                    duis.request_id,
                    duis.user_id,
                ) from None
            self._metrics.waiting.inc()
            try:
                answer = await asyncio.wait_for(asyncio.shield(future), self._answer_wait_s)
            except TimeoutError:
                return self._pending(duis), "pending"
            finally:
                self._metrics.waiting.dec()
            return self._decision(answer), answer.outcome
        finally:
            self._waiter.forget(duis.request_id)
            if not future.done():
                future.cancel()

    def _now(self) -> tuple[int, datetime]:
        now_s = self._clock()
        return int(now_s * 1000), datetime.fromtimestamp(now_s, tz=UTC)

    def _render(
        self,
        *,
        request_id: str,
        user_id: str,
        code: str,
        outcome: str,
        reason: str,
        status: int,
        details: dict[str, str],
        at_ms: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        now_ms, moment = self._now()
        when = now_ms if at_ms is None else at_ms
        # The ResponseID the response deliverer gives the same answer (response_xml), so a
        # User can drop the pushed copy of a decision it already had synchronously.
        response_id = response_id_for(
            UserResponse(
                request_id=request_id,
                user_id=user_id,
                response_code=code,
                outcome="rejected",
                reason=reason,
                at_ms=when,
            )
        )
        if at_ms is not None:
            moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
        document = render_response(
            request_id=request_id,
            response_code=code,
            response_id=response_id,
            response_datetime=moment,
            reason=reason,
            body={"outcome": outcome, **details},
        )
        return web.Response(
            body=document,
            status=status,
            content_type="application/xml",
            charset="utf-8",
            headers=headers,
        )

    def _refusal(self, refused: _Refused) -> web.Response:
        if refused.check.startswith("duis."):
            kind = refused.check[len("duis.") :]
            code = self._codes.for_rejection(kind)  # type: ignore[arg-type]
            status = 403 if kind in _AUTH_REJECTIONS else 400
        else:
            code, status = REFUSALS[refused.check]
        return self._render(
            request_id=refused.request_id or "",
            user_id=refused.user_id or "",
            code=code,
            outcome="refused",
            reason=refused.reason,
            status=status,
            details={"check": refused.check},
        )

    def _pending(self, duis: DuisRequest) -> web.Response:
        wait_ms = round(self._answer_wait_s * 1000)
        return self._render(
            request_id=duis.request_id,
            user_id=duis.user_id,
            code=PENDING_CODE,
            outcome="pending",
            reason=(
                "the request was verified and queued; the gateway's decision did not come "
                f"within {wait_ms} ms and follows asynchronously to the User's response "
                "endpoint"
            ),
            status=202,
            details={"wait_ms": str(wait_ms)},
        )

    def _decision(self, answer: UserResponse) -> web.Response:
        details = {"user_id": answer.user_id}
        headers = None
        if answer.rule is not None:
            details["rule"] = answer.rule
        if answer.retry_after_ms is not None:
            details["retry_after_ms"] = str(answer.retry_after_ms)
            headers = {"Retry-After": str(max(1, math.ceil(answer.retry_after_ms / 1000)))}
        status = {
            "accepted": 200,
            "throttled": 429,
            "quarantined": 202,
            "released": 200,
            "deleted": 200,
        }.get(answer.outcome, 403 if answer.response_code in _AUTH_CODES else 400)
        return self._render(
            request_id=answer.request_id,
            user_id=answer.user_id,
            code=answer.response_code,
            outcome=answer.outcome,
            reason=answer.reason,
            status=status,
            details=details,
            at_ms=answer.at_ms,
            headers=headers,
        )

    async def _audit(self, refused: _Refused) -> None:
        """Key-separation refusals go to the audit trail (`dcc.audit`)."""
        record = AuditRecord(
            at_ms=int(self._clock() * 1000),
            by="ingress",
            action="duis.key-separation-refused",
            key=f"certificates/{refused.user_id}",
            new=msgspec.Raw(
                _json.encode({"request_id": refused.request_id, "reason": refused.reason})
            ),
        )
        try:
            await self._producer.send_one(
                self._topics.audit, record.key.encode(), _json.encode(record)
            )
        except DeliveryError as exc:
            log.error("key-separation refusal of %s not audited: %s", refused.request_id, exc)
