"""The quarantine service (SEC G6 (c), Appendix AA): the User decides, live.

It runs in the admin process. Its state is `dcc.sr.quarantine` itself, read from the start
into an `adt.QuarantineBook`: the routers write a `quarantined` record (with the original
request bytes) for each request held, and this service writes `released`, `deleted` and
`expired` records when a decision is taken. A restart replays the topic to the same state.

A release forwards the original bytes to `dcc.sr.outbound` and answers `released` (Q4); a
delete answers `deleted` (Q5); a request pending longer than `pending_max_s` (14 days) is
answered `deleted` with a reason saying it expired. A decision is final: deciding twice is
refused with the current state. Each decision is audited on `dcc.audit`.

Exactly once: within one admin process a request is released once (the book refuses a
second decision). The decision record is written after the forward and the answer are
acknowledged, so a crash between the two leaves the request pending: released again, it is
forwarded again (at-least-once; downstream de-duplicates by request_id as for every
forward). Not yet: a released request is not counted in the owning router's ADT windows
(`record_released`), and the pending bytes are held in this process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from adt import (
    AlreadyDecidedError,
    Deleted,
    Expired,
    QuarantineBook,
    Quarantined,
    QuarantineEntry,
    Released,
    UnknownEntryError,
)
from broker.consumer import Record
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.schemas import AuditRecord, QuarantinedRequest, UserResponse
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.codes import ResponseCodes
from workers.control.tokens import Principal
from workers.control.writer import ControlWriter

__all__ = ["DecisionRefusedError", "QuarantineService"]

log = logging.getLogger(__name__)

_Event = QuarantinedRequest | Released | Deleted | Expired
_decode = msgspec.json.Decoder(_Event).decode
_encode = msgspec.json.Encoder().encode
EXPIRY_INTERVAL_S = 30.0


class DecisionRefusedError(Exception):
    """A decision that cannot be taken (already decided); the message says why."""


class QuarantineService:
    """Keeps the quarantine book from `dcc.sr.quarantine` and carries out decisions."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        producer: BatchProducer,
        writer: ControlWriter,
        codes: ResponseCodes,
    ) -> None:
        self._topics = topics
        self._producer = producer
        self._writer = writer
        self._codes = codes
        self.book = QuarantineBook()
        self._held: dict[str, QuarantinedRequest] = {}
        self._follower = TopicFollower(
            settings, topics.sr_quarantine, self._apply, name="quarantine"
        )
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Rebuild the book from the topic, then expire overdue requests periodically."""
        await self._follower.start()
        await self._follower.wait_caught_up()
        self._task = asyncio.create_task(self._expire_forever(), name="quarantine-expiry")

    async def stop(self) -> None:
        """Stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._follower.stop()

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            try:
                event = _decode(rec.value or b"")
            except msgspec.DecodeError as exc:
                log.warning("dcc.sr.quarantine offset %d skipped: %s", rec.offset, exc)
                continue
            if isinstance(event, QuarantinedRequest):
                applied = self.book.apply(
                    Quarantined(id=event.id, user_id=event.user_id, srv=event.srv,
                                kind=event.kind, rule=event.rule, reason=event.reason,
                                at_s=event.at_s)
                )  # fmt: skip
                if applied:
                    self._held[event.id] = event
            elif self.book.apply(event):
                self._held.pop(event.id, None)

    # --- the API's view ----------------------------------------------------------------

    def list(self, user_id: str | None) -> list[dict[str, Any]]:
        """Pending requests (all, or one User's), oldest first."""
        return [self._entry(e) for e in self.book.select(state="pending", user_id=user_id)]

    def _entry(self, entry: QuarantineEntry) -> dict[str, Any]:
        doc: dict[str, Any] = msgspec.to_builtins(entry)
        held = self._held.get(entry.id)
        if held is not None:
            doc.update(observed=held.observed, limit=held.limit, code=held.response_code)
        return doc

    async def decide(
        self, request_id: str, decision: str, principal: Principal
    ) -> dict[str, Any] | None:
        """Release or delete `request_id`; None if it is not in quarantine."""
        async with self._lock:
            entry = self.book.get(request_id)
            if entry is None:
                return None
            held = self._held.get(request_id)
            now_s = time.time()
            try:
                if decision == "release":
                    if held is None:
                        raise DecisionRefusedError(
                            f"request {request_id} is {entry.state}, not pending; "
                            "a quarantine decision is final"
                        )
                    # Refuse a second decision before anything is forwarded.
                    self.book._pending(request_id, "release")
                    await self._forward(held)
                    event: Released | Deleted = self.book.release(
                        request_id, principal.label(), now_s
                    )
                    code, outcome = self._codes.released, "released"
                    reason = f"released from quarantine by {principal.label()}; forwarded"
                else:
                    event = self.book.delete(request_id, principal.label(), now_s)
                    code, outcome = self._codes.deleted, "deleted"
                    reason = f"deleted from quarantine by {principal.label()}; not processed"
            except (AlreadyDecidedError, UnknownEntryError) as exc:
                raise DecisionRefusedError(str(exc)) from None
            await self._answer(entry.user_id, request_id, code, outcome, reason, entry.rule)
            await self._producer.send_one(
                self._topics.sr_quarantine, entry.user_id.encode(), _encode(event)
            )
            self._held.pop(request_id, None)
            await self._writer.record(
                AuditRecord(
                    at_ms=int(now_s * 1000),
                    by=principal.label(),
                    action=f"quarantine.{decision}",
                    key=f"quarantine/{request_id}",
                    old=msgspec.Raw(_encode({"state": "pending", "rule": entry.rule})),
                    new=msgspec.Raw(_encode({"state": outcome})),
                )
            )
            decided = self.book.get(request_id)
            return self._entry(decided) if decided is not None else {"id": request_id}

    async def _forward(self, held: QuarantinedRequest) -> None:
        target = held.id.split(":")[1]
        await self._producer.send_one(
            self._topics.sr_outbound, target.encode(), bytes(held.request)
        )

    async def _answer(
        self, user_id: str, request_id: str, code: str, outcome: str, reason: str, rule: str
    ) -> None:
        answer = UserResponse(
            request_id=request_id,
            user_id=user_id,
            response_code=code,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            rule=rule,
            at_ms=time.time_ns() // 1_000_000,
        )
        await self._producer.send_one(
            self._topics.user_responses, user_id.encode(), _encode(answer)
        )

    async def expire_due(self, now_s: float) -> int:
        """Answer every request pending too long as deleted (expired); return how many."""
        async with self._lock:
            expired = self.book.expire_due(now_s)
            for event in expired:
                entry = self.book.get(event.id)
                user_id = entry.user_id if entry else event.id.partition(":")[0]
                rule = entry.rule if entry else ""
                note = f"deleted: {event.note}"
                await self._answer(user_id, event.id, self._codes.deleted, "deleted", note, rule)
                await self._producer.send_one(
                    self._topics.sr_quarantine, user_id.encode(), _encode(event)
                )
                self._held.pop(event.id, None)
            return len(expired)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL_S)
            try:
                await self.expire_due(time.time())
            except Exception:
                log.exception("quarantine expiry failed; retrying in %.0f s", EXPIRY_INTERVAL_S)
