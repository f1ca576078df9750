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

A decision is final only once Kafka has acknowledged everything it writes, in this order:
the forward (a release), then the User's answer, then the audit record, and last the
decision record on `dcc.sr.quarantine` (the commit point); only then does the book say
released or deleted. While that is under way the request is *being decided*: a second
decision on it is refused (409, "being decided") instead of waiting. If a send is not
acknowledged the mark is cleared and the request stays pending, so the caller may simply
try again (503); a retry repeats the steps already done (at-least-once: downstream
de-duplicates forwards by request_id, and the audit trail may show the attempt twice, never
zero times). A crash between the steps leaves the request pending likewise. A `released`
record names the User and the SRV, so the router that owns the User counts the released
request in its ADT windows (workers/router/adt_state.py). The pending bytes are held in
this process's memory (bounded by the expiry: 14 days of quarantined requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

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
from broker.errors import BrokerError
from broker.follower import TopicFollower
from broker.schemas import AuditRecord, QuarantinedRequest, UserResponse
from broker.settings import KafkaSettings
from broker.topics import Topics
from workers.admin.quarantine_metrics import Decision, QuarantineMetrics
from workers.admin.quarantine_txn import DecisionTransactions
from workers.admin.tokens import Principal
from workers.config.codes import ResponseCodes

__all__ = [
    "BULK_LIMIT",
    "AuditWriter",
    "DecisionKind",
    "DecisionNotSentError",
    "DecisionRefusedError",
    "QuarantineService",
    "RecordSender",
    "Selection",
]

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


def _iso(at_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC, to the second."""
    return datetime.datetime.fromtimestamp(at_s, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DecisionRefusedError(Exception):
    """A decision that cannot be taken (already decided, or being decided right now); the
    message says why."""


class DecisionNotSentError(Exception):
    """Kafka did not acknowledge a decision's records: nothing was decided, the request is
    still pending and may be decided again; the message says why."""


class RecordSender(Protocol):
    """Sends one record and waits for its acknowledgement (`broker.producer.BatchProducer`);
    raises `broker.errors.BrokerError` when it is not acknowledged."""

    async def send_one(
        self, topic: str, key: bytes | None, value: bytes | None
    ) -> tuple[int, int]: ...


class AuditWriter(Protocol):
    """Writes audit records to `dcc.audit` (`workers.admin.writer.ControlWriter`)."""

    async def record_many(self, audits: list[AuditRecord]) -> None: ...


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
        producer: RecordSender,
        writer: AuditWriter,
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
        # Requests being decided right now (sends not yet all acknowledged): id -> decision.
        self._deciding: dict[str, DecisionKind] = {}
        self._follower = TopicFollower(
            settings, topics.sr_quarantine, self._apply, name="quarantine"
        )
        # Exactly-once: each decision's records in one transaction (quarantine_txn.py).
        self._transactions = (
            DecisionTransactions(settings, topics) if settings.exactly_once else None
        )
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._expiry_problem: str | None = None
        self._answers: set[asyncio.Task[None]] = set()
        self.duplicates = 0
        """Quarantine records of requests already in the book (answered, not held twice)."""

    @property
    def problem(self) -> str | None:
        """Why the book cannot be kept current or expired now, or None."""
        return self._follower.problem or self._expiry_problem

    async def start(self) -> None:
        """Rebuild the book from the topic, then expire overdue requests periodically."""
        if self._transactions is not None:
            # First: fences a predecessor and settles a decision it left half-written.
            await self._transactions.start()
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
        for task in list(self._answers):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        if self._transactions is not None:
            await self._transactions.stop()

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
                elif self._follower.caught_up:
                    # The same request quarantined a second time (its router had lost its
                    # replay memory): never held twice; the User is told its current state.
                    self._answer_duplicate(event)
            elif self.book.apply(event):
                self._held.pop(event.id, None)

    def _answer_duplicate(self, event: QuarantinedRequest) -> None:
        entry = self.book.get(event.id)
        if entry is None:
            return
        self.duplicates += 1
        outcome, code = {
            "pending": ("quarantined", event.response_code),
            "released": ("released", self._codes.released),
        }.get(entry.state, ("deleted", self._codes.deleted))
        reason = (
            f"request {event.id} was quarantined already at {_iso(entry.at_s)} by rule "
            f"{entry.rule}; it is {entry.state}, and this copy is not held again"
        )
        task = asyncio.get_running_loop().create_task(
            self._answer(event.user_id, event.id, code, outcome, reason, entry.rule)
        )
        self._answers.add(task)
        task.add_done_callback(self._answer_done)

    def _answer_done(self, task: asyncio.Task[None]) -> None:
        self._answers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a duplicate's answer was not sent: %s", task.exception())

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

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The entry of `request_id` (pending or decided, while the book keeps it), or None."""
        entry = self.book.get(request_id)
        return None if entry is None else self._entry(entry)

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
        """Release or delete `request_id`; None if it is not in quarantine.

        Raises DecisionRefusedError if it is no longer pending or is being decided right
        now, DecisionNotSentError if Kafka did not acknowledge the decision (it is then
        still pending: try again)."""
        async with self._lock:
            entry = self.book.get(request_id)
            if entry is None:
                return None
            refusal = self._refusal(entry, decision)
            if refusal is not None:
                # Refused before anything is forwarded or answered.
                raise DecisionRefusedError(refusal)
            self._claim([entry], decision)
        try:
            _, failed = await self._carry_out([entry], decision, principal, bulk=None)
        finally:
            self._unclaim([entry])
        if failed:
            raise DecisionNotSentError(
                f"the {decision} of request {request_id} was not acknowledged by Kafka "
                f"({failed[request_id]}); nothing was decided and it is still pending: try "
                "again"
            )
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
        pending, or are being decided by another call, are skipped, each with the reason.

        Returns `decided` (the entries as decided), `skipped` ({id, state, reason}, at most
        `limit`), `more`: true when pending requests beyond `limit` still match, and
        `failed` ({id, reason}): those whose records Kafka did not acknowledge, still
        pending; when there are any, `error` says what happened and what to do.
        """
        async with self._lock:
            matched = self._select(msgspec.structs.replace(selection, state=None))
            todo: _Entries = []
            skipped: _Docs = []
            more = False
            for entry in matched:
                reason = self._refusal(entry, decision)
                if reason is None:
                    if len(todo) < limit:
                        todo.append(entry)
                    else:
                        more = True
                elif len(skipped) < limit:
                    skipped.append({"id": entry.id, "state": entry.state, "reason": reason})
            self._claim(todo, decision)
        filters = {k: v for k, v in msgspec.to_builtins(selection).items() if k != "state"}
        try:
            done, failed = await self._carry_out(todo, decision, principal, bulk=filters)
        finally:
            self._unclaim(todo)
        decided = [self.book.get(e.id) for e in done]
        result: dict[str, Any] = {
            "decision": decision,
            "decided": [self._entry(e) for e in decided if e is not None],
            "skipped": skipped,
            "more": more,
            "failed": [{"id": i, "reason": why} for i, why in failed.items()],
        }
        if failed:
            first = next(iter(failed.values()))
            result["error"] = (
                f"{len(failed)} of {len(todo)} decisions ({decision}) were not acknowledged "
                f"by Kafka ({first}); they are still pending and were not decided, the other "
                f"{len(done)} are: call again with the same filters to {decision} the rest"
            )
        return result

    def _refusal(self, entry: QuarantineEntry, decision: DecisionKind) -> str | None:
        """Why `entry` cannot be decided now, or None if it can."""
        try:
            self.book._pending(entry.id, decision)
        except (AlreadyDecidedError, UnknownEntryError) as exc:
            return str(exc)
        other = self._deciding.get(entry.id)
        if other is not None:
            return (
                f"cannot {decision} request {entry.id}: it is being decided right now (a "
                f"{other} not yet acknowledged); if that fails, try again"
            )
        if decision == "release" and entry.id not in self._held:
            return (
                f"cannot {decision} request {entry.id}: its original bytes are not held by this "
                "admin process (is it still reading dcc.sr.quarantine?); try again shortly"
            )
        return None

    def _claim(self, entries: _Entries, decision: DecisionKind) -> None:
        for e in entries:
            self._deciding[e.id] = decision

    def _unclaim(self, entries: _Entries) -> None:
        for e in entries:
            self._deciding.pop(e.id, None)

    async def _carry_out(
        self,
        entries: _Entries,
        decision: DecisionKind,
        principal: Principal,
        *,
        bulk: dict[str, Any] | None,
    ) -> tuple[_Entries, dict[str, str]]:
        """Decide `entries` (pending, claimed by the caller): forward (release), answer the
        Users, audit, and write the decision records; each step only for the entries whose
        earlier steps Kafka acknowledged, and each step's records sent together. The
        entries with every record acknowledged are then decided in the book.

        Returns (decided, failed: id -> why); a failed entry is left pending."""
        failed: dict[str, str] = {}
        if not entries:
            return [], failed
        now_s = self._clock()
        by = principal.label()
        if self._transactions is not None:
            todo = await self._decide_atomic(entries, failed, decision, by, now_s, bulk)
            outcome = _RELEASED if decision == "release" else _DELETED
            self.metrics.decided(
                outcome, "operator" if principal.is_operator else "user", len(todo)
            )
            return todo, failed
        events: dict[str, Released | Deleted]
        todo = entries
        if decision == "release":
            held = {e.id: self._held[e.id] for e in entries}  # claimed: _refusal checked
            todo = await self._each(todo, failed, lambda e: self._forward(held[e.id]))
            events = {
                e.id: Released(id=e.id, by=by, at_s=now_s, user_id=e.user_id, srv=e.srv)
                for e in todo
            }
            code, outcome = self._codes.released, _RELEASED
            reason = f"released from quarantine by {by}; forwarded"
        else:
            events = {e.id: Deleted(id=e.id, by=by, at_s=now_s) for e in todo}
            code, outcome = self._codes.deleted, _DELETED
            reason = f"deleted from quarantine by {by}; not processed"
        todo = await self._each(
            todo, failed, lambda e: self._answer(e.user_id, e.id, code, outcome, reason, e.rule)
        )
        todo = await self._audit(todo, failed, decision, by, now_s, outcome, bulk)
        todo = await self._each(
            todo,
            failed,
            lambda e: self._producer.send_one(
                self._topics.sr_quarantine, e.user_id.encode(), _encode(events[e.id])
            ),
        )
        # Every record of these is acknowledged: now, and only now, they are decided. (The
        # follower may have applied our own decision record already; apply is idempotent.)
        for e in todo:
            self.book.apply(events[e.id])
            self._held.pop(e.id, None)
        self.metrics.decided(outcome, "operator" if principal.is_operator else "user", len(todo))
        if failed:
            log.warning(
                "quarantine %s by %s: %d of %d not acknowledged, left pending: %s",
                decision, by, len(failed), len(entries), next(iter(failed.values())),
            )  # fmt: skip
        return todo, failed

    async def _decide_atomic(
        self,
        entries: _Entries,
        failed: dict[str, str],
        decision: DecisionKind,
        by: str,
        now_s: float,
        bulk: dict[str, Any] | None,
    ) -> _Entries:
        """Exactly-once (quarantine_txn.py): audit `entries`, then write every forward,
        answer and decision record of them in one transaction; the entries decided (all
        audited ones, or none: then each is in `failed` and still pending)."""
        transactions = self._transactions
        if transactions is None:
            raise RuntimeError("_decide_atomic needs exactly-once")
        outcome = _RELEASED if decision == "release" else _DELETED
        todo = await self._audit(entries, failed, decision, by, now_s, outcome, bulk)
        if not todo:
            return todo
        events: dict[str, Released | Deleted]
        out = transactions.batch()
        if decision == "release":
            events = {
                e.id: Released(id=e.id, by=by, at_s=now_s, user_id=e.user_id, srv=e.srv)
                for e in todo
            }
            code, reason = self._codes.released, f"released from quarantine by {by}; forwarded"
            for e in todo:
                held = self._held[e.id]  # claimed: _refusal checked
                out.add(self._topics.sr_outbound, e.id.split(":")[1].encode(), bytes(held.request))
        else:
            events = {e.id: Deleted(id=e.id, by=by, at_s=now_s) for e in todo}
            code, reason = self._codes.deleted, f"deleted from quarantine by {by}; not processed"
        for e in todo:
            answer = self._response(e.user_id, e.id, code, outcome, reason, e.rule)
            out.add(self._topics.user_responses, e.user_id.encode(), answer)
            out.add(self._topics.sr_quarantine, e.user_id.encode(), _encode(events[e.id]))
        try:
            await transactions.write(out)
        except BrokerError as exc:
            failed.update((e.id, str(exc)) for e in todo)
            log.warning(
                "quarantine %s by %s: the transaction of %d decisions was not committed, "
                "all left pending: %s", decision, by, len(todo), exc,
            )  # fmt: skip
            return []
        for e in todo:
            self.book.apply(events[e.id])
            self._held.pop(e.id, None)
        return todo

    async def _each(
        self,
        entries: _Entries,
        failed: dict[str, str],
        send: Callable[[QuarantineEntry], Awaitable[object]],
    ) -> _Entries:
        """`send` for every entry at once; the entries whose send was acknowledged. Those
        refused by Kafka (BrokerError) go to `failed` with the reason."""
        if not entries:
            return entries
        results = await asyncio.gather(*(send(e) for e in entries), return_exceptions=True)
        ok: _Entries = []
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, BrokerError):
                failed[entry.id] = str(result)
            elif isinstance(result, BaseException):
                raise result  # not a delivery failure: a bug, or cancellation
            else:
                ok.append(entry)
        return ok

    async def _audit(
        self,
        entries: _Entries,
        failed: dict[str, str],
        decision: DecisionKind,
        by: str,
        now_s: float,
        outcome: Decision,
        bulk: dict[str, Any] | None,
    ) -> _Entries:
        """Audit the decisions of `entries` (all or none); the entries audited."""
        if not entries:
            return entries
        new: dict[str, Any] = {"state": outcome}
        if bulk is not None:
            new["bulk"] = bulk
        try:
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
        except (BrokerError, TimeoutError) as exc:
            why = str(exc) or "the audit record was not readable on dcc.audit within 5 s"
            failed.update((e.id, why) for e in entries)
            return []
        return entries

    async def _forward(self, held: QuarantinedRequest) -> None:
        target = held.id.split(":")[1]
        await self._producer.send_one(
            self._topics.sr_outbound, target.encode(), bytes(held.request)
        )

    async def _answer(
        self, user_id: str, request_id: str, code: str, outcome: str, reason: str, rule: str
    ) -> None:
        answer = self._response(user_id, request_id, code, outcome, reason, rule)
        await self._producer.send_one(self._topics.user_responses, user_id.encode(), answer)

    def _response(
        self, user_id: str, request_id: str, code: str, outcome: str, reason: str, rule: str
    ) -> bytes:
        """The User's answer about a decision, encoded."""
        answer = UserResponse(
            request_id=request_id,
            user_id=user_id,
            response_code=code,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            rule=rule,
            at_ms=int(self._clock() * 1000),
        )
        return _encode(answer)

    async def expire_due(self, now_s: float) -> int:
        """Answer every request pending too long as deleted (expired), and forget the
        decisions older than the book's retention; return how many expired."""
        async with self._lock:
            cutoff = now_s - self.book.pending_max_s
            due_deciding = [
                e.id
                for e in map(self.book.get, self._deciding)
                if e is not None and e.state == "pending" and e.at_s <= cutoff
            ]
            if due_deciding:
                # A decision on one of them is being sent: it wins if acknowledged, else
                # the request expires at the next round (the book expires all due at once).
                log.info("quarantine expiry deferred: %s being decided", due_deciding[0])
                return 0
            # Each expiry is final only once its answer, audit record and log record are
            # acknowledged, as a decision is: a send that fails leaves it, and those after
            # it, pending for the next round.
            expired = 0
            for event in self.book.due(now_s):
                entry = self.book.get(event.id)
                user_id = entry.user_id if entry else event.id.partition(":")[0]
                rule = entry.rule if entry else ""
                note = f"deleted: {event.note}"
                if self._transactions is None:
                    await self._answer(
                        user_id, event.id, self._codes.deleted, "deleted", note, rule
                    )
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
                    ]
                )
                if self._transactions is None:
                    await self._producer.send_one(
                        self._topics.sr_quarantine, user_id.encode(), _encode(event)
                    )
                else:  # exactly-once: the answer and the expiry record together
                    out = self._transactions.batch()
                    answer = self._response(
                        user_id, event.id, self._codes.deleted, "deleted", note, rule
                    )
                    out.add(self._topics.user_responses, user_id.encode(), answer)
                    out.add(self._topics.sr_quarantine, user_id.encode(), _encode(event))
                    await self._transactions.write(out)
                self.book.apply(event)
                self._held.pop(event.id, None)
                self.metrics.decided("expired", "expiry")
                expired += 1
            self.book.prune(now_s)
            return expired

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_interval_s)
            try:
                await self.expire_due(self._clock())
            except Exception as exc:
                self._expiry_problem = f"quarantine expiry failed: {type(exc).__name__}: {exc}"
                log.exception(
                    "quarantine expiry failed; retrying in %.0f s", self._expiry_interval_s
                )
            else:
                self._expiry_problem = None
