"""The quarantine service (SEC G6 (c), Appendix AA): the User decides, live.

It runs in the admin process. Its state is `dcc.sr.quarantine` itself, read from the start
into an `adt.QuarantineBook`: the routers write a `quarantined` record (with the original
request bytes) for each request held, and this service writes `released`, `deleted` and
`expired` records when a decision is taken. A restart replays the topic to the same state.

A release forwards the original bytes to `dcc.sr.outbound` and answers `released` (Q4); a
delete answers `deleted` (Q5); a request pending longer than `pending_max_s` (14 days,
`DCCGATE_QUARANTINE_PENDING_MAX_S`) is answered `deleted` with a reason saying it expired.
A decision is final: deciding twice is refused with the current state. Each decision is
audited on `dcc.audit`. Bulk decisions (`decide_many`: by User, rule, kind and time range)
decide each matching pending request the same way and report the others as skipped.

Exactly once: within one admin process a request is released once (the book refuses a
second decision). The decision record is written after the forward and the answer are
acknowledged, so a crash between the two leaves the request pending: released again, it is
forwarded again (at-least-once; downstream de-duplicates by request_id as for every
forward). A `released` record names the User and the SRV, so the router that owns the User
counts the released request in its ADT windows (workers/router/adt_state.py). The pending bytes
are held in this process's memory (bounded by the expiry: 14 days of quarantined requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from prometheus_client import CollectorRegistry

from adt import (
    AlreadyDecidedError,
    BreachKind,
    Deleted,
    Expired,
    QuarantineBook,
    Quarantined,
    QuarantineEntry,
    QuarantineState,
    Released,
    UnknownEntryError,
)
from adt.quarantine import DEFAULT_PENDING_MAX_S
from broker.consumer import Record
from broker.follower import TopicFollower
from broker.producer import BatchProducer
from broker.schemas import AuditRecord, QuarantinedRequest, UserResponse
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.admin.quarantine_metrics import Decision, QuarantineMetrics
from workers.admin.tokens import Principal
from workers.admin.writer import ControlWriter
from workers.config.codes import ResponseCodes

__all__ = ["BULK_LIMIT", "DecisionKind", "DecisionRefusedError", "QuarantineService", "Selection"]

log = logging.getLogger(__name__)

_Event = QuarantinedRequest | Released | Deleted | Expired
_decode = msgspec.json.Decoder(_Event).decode
_encode = msgspec.json.Encoder().encode
EXPIRY_INTERVAL_S = 30.0
EXPIRY_BY = "dccgate:expiry"
"""Who expired a request, in the audit trail."""
BULK_LIMIT = 1000
"""Most requests one bulk decision decides: bounded work per API call; call again for more."""

DecisionKind = Literal["release", "delete"]
# Aliases: inside QuarantineService, `list` is its method.
_Entries = list[QuarantineEntry]
_Docs = list[dict[str, Any]]
_Events = list[Released | Deleted]
_RELEASED: Decision = "released"
_DELETED: Decision = "deleted"


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """Which quarantined requests a listing or a bulk decision is about; every filter given
    must match. from_s <= at_s < until_s (epoch s, when quarantined). state None: any."""

    user_id: str | None = None
    rule: str | None = None
    kind: BreachKind | None = None
    state: QuarantineState | None = "pending"
    from_s: float | None = None
    until_s: float | None = None


class DecisionRefusedError(Exception):
    """A decision that cannot be taken (already decided); the message says why."""


class QuarantineService:
    """Keeps the quarantine book from `dcc.sr.quarantine` and carries out decisions.

    pending_max_s: a pending request expires (answered deleted) after this, default 14 days.
    registry: where the quarantine metrics go (a fresh registry if None).
    clock: epoch seconds now, default `time.time`; tests inject theirs.
    expiry_interval_s: how often overdue requests are looked for, default 30 s.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        producer: BatchProducer,
        writer: ControlWriter,
        codes: ResponseCodes,
        *,
        pending_max_s: float = DEFAULT_PENDING_MAX_S,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        expiry_interval_s: float = EXPIRY_INTERVAL_S,
    ) -> None:
        self._topics = topics
        self._producer = producer
        self._writer = writer
        self._codes = codes
        self._clock = clock
        self._expiry_interval_s = expiry_interval_s
        self.book = QuarantineBook(pending_max_s=pending_max_s)
        self.metrics = QuarantineMetrics(registry or CollectorRegistry(), self.book, clock)
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

    def list(
        self, user_id: str | None, selection: Selection | None = None, *, limit: int | None = None
    ) -> _Docs:
        """Requests matching `selection` (default: pending), of `user_id` if given (it
        overrides the selection's), oldest first, at most `limit`."""
        selection = selection or Selection()
        if user_id is not None:
            selection = msgspec.structs.replace(selection, user_id=user_id)
        entries = self._select(selection)
        return [self._entry(e) for e in entries[:limit]]

    def _select(self, s: Selection) -> _Entries:
        return self.book.select(
            state=s.state, user_id=s.user_id, rule=s.rule, kind=s.kind,
            from_s=s.from_s, until_s=s.until_s,
        )  # fmt: skip

    def _entry(self, entry: QuarantineEntry) -> dict[str, Any]:
        doc: dict[str, Any] = msgspec.to_builtins(entry)
        held = self._held.get(entry.id)
        if held is not None:
            doc.update(observed=held.observed, limit=held.limit, code=held.response_code)
        return doc

    async def decide(
        self, request_id: str, decision: DecisionKind, principal: Principal
    ) -> dict[str, Any] | None:
        """Release or delete `request_id`; None if it is not in quarantine; raise
        DecisionRefusedError if it is no longer pending."""
        async with self._lock:
            entry = self.book.get(request_id)
            if entry is None:
                return None
            if entry.state != "pending" or (decision == "release" and entry.id not in self._held):
                # Refused before anything is forwarded or answered.
                raise DecisionRefusedError(self._refusal(entry, decision))
            await self._carry_out([entry], decision, principal, bulk=None)
            decided = self.book.get(request_id)
            return self._entry(decided) if decided is not None else {"id": request_id}

    async def decide_many(
        self,
        decision: DecisionKind,
        principal: Principal,
        selection: Selection,
        *,
        limit: int = BULK_LIMIT,
    ) -> dict[str, Any]:
        """Release or delete every pending request `selection` matches (its `state` is
        ignored), oldest first, at most `limit`; the matching requests that are no longer
        pending are skipped, each with the reason (a decision is final).

        Returns `decided` (the entries as decided), `skipped` ({id, state, reason}, at most
        `limit`), and `more`: true when pending requests beyond `limit` still match.
        """
        async with self._lock:
            matched = self._select(msgspec.structs.replace(selection, state=None))
            todo: _Entries = []
            skipped: _Docs = []
            more = False
            for entry in matched:
                if entry.state == "pending" and (decision == "delete" or entry.id in self._held):
                    if len(todo) < limit:
                        todo.append(entry)
                    else:
                        more = True
                elif len(skipped) < limit:
                    reason = self._refusal(entry, decision)
                    skipped.append({"id": entry.id, "state": entry.state, "reason": reason})
            filters = {k: v for k, v in msgspec.to_builtins(selection).items() if k != "state"}
            await self._carry_out(todo, decision, principal, bulk=filters)
            decided = [self.book.get(e.id) for e in todo]
            return {
                "decision": decision,
                "decided": [self._entry(e) for e in decided if e is not None],
                "skipped": skipped,
                "more": more,
            }

    def _refusal(self, entry: QuarantineEntry, decision: DecisionKind) -> str:
        try:
            self.book._pending(entry.id, decision)
        except (AlreadyDecidedError, UnknownEntryError) as exc:
            return str(exc)
        return (
            f"cannot {decision} request {entry.id}: its original bytes are not held by this "
            "admin process (is it still reading dcc.sr.quarantine?); try again shortly"
        )

    async def _carry_out(
        self,
        entries: _Entries,
        decision: DecisionKind,
        principal: Principal,
        *,
        bulk: dict[str, Any] | None,
    ) -> None:
        """Decide `entries` (all pending; under the lock): forward (release), then record
        in the book, answer the Users, close the log entries and audit each decision.

        The decision records are written after the forwards are acknowledged: a crash in
        between leaves the requests pending (a second release forwards again; downstream
        de-duplicates by request_id)."""
        if not entries:
            return
        now_s = self._clock()
        by = principal.label()
        if decision == "release":
            await asyncio.gather(*(self._forward(self._held[e.id]) for e in entries))
            events: _Events = [self.book.release(e.id, by, now_s) for e in entries]
            code, outcome = self._codes.released, _RELEASED
            reason = f"released from quarantine by {by}; forwarded"
        else:
            events = [self.book.delete(e.id, by, now_s) for e in entries]
            code, outcome = self._codes.deleted, _DELETED
            reason = f"deleted from quarantine by {by}; not processed"
        self.metrics.decided(outcome, "operator" if principal.is_operator else "user", len(events))
        await asyncio.gather(
            *(self._answer(e.user_id, e.id, code, outcome, reason, e.rule) for e in entries),
            *(
                self._producer.send_one(
                    self._topics.sr_quarantine, e.user_id.encode(), _encode(event)
                )
                for e, event in zip(entries, events, strict=True)
            ),
        )
        for e in entries:
            self._held.pop(e.id, None)
        new: dict[str, Any] = {"state": outcome}
        if bulk is not None:
            new["bulk"] = bulk
        await self._writer.record_many(
            [
                AuditRecord(
                    at_ms=int(now_s * 1000),
                    by=by,
                    action=f"quarantine.{decision}",
                    key=f"quarantine/{e.id}",
                    old=msgspec.Raw(_encode({"state": "pending", "rule": e.rule})),
                    new=msgspec.Raw(_encode(new)),
                )
                for e in entries
            ]
        )

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
            at_ms=int(self._clock() * 1000),
        )
        await self._producer.send_one(
            self._topics.user_responses, user_id.encode(), _encode(answer)
        )

    async def expire_due(self, now_s: float) -> int:
        """Answer every request pending too long as deleted (expired), and forget the
        decisions older than the book's retention; return how many expired."""
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
                self.metrics.decided("expired", "expiry")
            await self._writer.record_many(
                [
                    AuditRecord(
                        at_ms=int(now_s * 1000),
                        by=EXPIRY_BY,
                        action="quarantine.expire",
                        key=f"quarantine/{event.id}",
                        old=msgspec.Raw(_encode({"state": "pending"})),
                        new=msgspec.Raw(_encode({"state": "expired", "note": event.note})),
                    )
                    for event in expired
                ]
            )
            self.book.prune(now_s)
            return len(expired)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_interval_s)
            try:
                await self.expire_due(self._clock())
            except Exception:
                log.exception(
                    "quarantine expiry failed; retrying in %.0f s", self._expiry_interval_s
                )
