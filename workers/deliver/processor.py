"""The deliverer's batch processor: answers of `dcc.user.responses` in, per-User delivery
queues out, input offsets held until delivered (at-least-once).

Each record is checked like any input (`broker.wire_guard`), decoded as a
`broker.schemas.UserResponse`, rendered as a DUIS `sr:Response` and queued for its User's
response_url. A record that cannot be read or rendered becomes a dead letter with its
reason; an answer for a User with no response_url is counted and passed over. Queued
answers are held (`held_floor`): the loop commits no input offset past the oldest answer of
its partition that is neither delivered nor dead-lettered. `tick` collects the finished
answers, writes the dead letters of those given up on and lets their offsets go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.schemas import UserResponse
from broker.topics import Topics
from broker.wire_guard import record_problem
from workers.config.snapshot import ConfigSnapshot
from workers.deliver.dispatcher import Dispatcher, Pending
from workers.deliver.ledger import OffsetLedger
from workers.deliver.metrics import DeliverMetrics
from workers.duis.response_xml import ResponseXmlError, response_from_answer, response_id_for
from workers.runtime.deadletter import deadletter, processing_error

__all__ = ["MAX_QUEUED_TOTAL", "SERVICE", "DeliverProcessor", "DeliverReport"]

log = logging.getLogger(__name__)

SERVICE = "deliver"
MAX_QUEUED_TOTAL = 100_000
"""Answers queued over every User at once (about 1-2 KB each) before the deliverer stops
reading: a bound on its memory whatever the number of Users."""

_decode = msgspec.json.Decoder(UserResponse).decode


@dataclass(slots=True)
class DeliverReport:
    """Counts of one batch or tick, for the metrics once its outputs are acknowledged."""

    deadletters: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


class DeliverProcessor:
    """Decides each answer record: queue it for delivery, pass it over, or dead-letter it.

    Parameters:
        topics: the topic names (the dead-letter topic).
        dispatcher: the per-User queues.
        metrics: the deliverer's metrics.
        clock_s: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        topics: Topics,
        dispatcher: Dispatcher,
        metrics: DeliverMetrics,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deadletter_topic = topics.deadletter
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._clock_s = clock_s
        self._ledger: OffsetLedger[TopicPartition] = OffsetLedger()
        self._urls: Mapping[str, str] = {}
        self._users: frozenset[str] = frozenset()

    # --- configuration ---

    def apply(self, snapshot: ConfigSnapshot) -> None:
        """Take the Users and their response_url from a configuration snapshot."""
        users = snapshot.users
        self.set_users(
            {uid: u.response_url for uid, u in users.items() if u.response_url is not None},
            registered=users.keys(),
        )

    def set_users(
        self, urls: Mapping[str, str], *, registered: Iterable[str] | None = None
    ) -> None:
        """Set the response_url per User (`registered`: every registered User ID, for the
        skip reason; default the keys of `urls`)."""
        self._urls = dict(urls)
        self._users = frozenset(urls if registered is None else registered)

    def url_for(self, user_id: str) -> str | None:
        """The User's response_url now, or None."""
        return self._urls.get(user_id)

    # --- the loop's side ---

    def process(
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> DeliverReport:
        report = DeliverReport()
        now_s = self._clock_s()
        for tp, records in batch.items():
            for rec in records:
                try:
                    self._take(tp, rec, out, now_ms, now_s, report)
                except Exception as exc:  # a record may not stop the loop (docs/contract.md)
                    log.exception("%s/%d offset %d raised", tp.topic, tp.partition, rec.offset)
                    reason = processing_error("queue", exc)
                    self._dead(out, rec, "processing_error", reason, now_ms, report)
        return report

    def _take(
        self,
        tp: TopicPartition,
        rec: Record,
        out: OutputBatch,
        now_ms: int,
        now_s: float,
        report: DeliverReport,
    ) -> None:
        value = rec.value
        if value is None:
            self._dead(out, rec, "invalid_json", "invalid_json: a tombstone", now_ms, report)
            return
        problem = record_problem(value)
        if problem is not None:
            self._dead(out, rec, problem[0], problem[1], now_ms, report)
            return
        try:
            answer = _decode(value)
        except msgspec.ValidationError as exc:
            self._dead(out, rec, "invalid_schema", f"invalid_schema: {exc}", now_ms, report)
            return
        except msgspec.DecodeError as exc:
            self._dead(out, rec, "invalid_json", f"invalid_json: {exc}", now_ms, report)
            return
        user = answer.user_id
        if rec.key != user.encode("utf-8", "surrogatepass"):
            self._dead(
                out,
                rec,
                "invalid_schema",
                "invalid_schema: the record key is not the answer's user_id (answers are "
                "keyed by their User, docs/contract.md)",
                now_ms,
                report,
            )
            return
        url = self._urls.get(user)
        if url is None:
            reason = "no_response_url" if user in self._users else "unknown_user"
            report.skipped[reason] = report.skipped.get(reason, 0) + 1
            return
        try:
            document = response_from_answer(answer)
        except ResponseXmlError as exc:
            self._dead(out, rec, "invalid_answer", f"invalid_answer: {exc}", now_ms, report)
            return
        pending = Pending(
            record=rec,
            tp=tp,
            user_id=user,
            response_id=response_id_for(answer),
            document=document,
            at_ms=answer.at_ms,
            queued_s=now_s,
        )
        # Held only once queued: nothing that raises comes between the two.
        self._dispatcher.submit(pending)
        self._ledger.hold(tp, rec.offset)

    def _dead(
        self,
        out: OutputBatch,
        rec: Record,
        kind: str,
        reason: str,
        now_ms: int,
        report: DeliverReport,
    ) -> None:
        deadletter(
            out,
            self._deadletter_topic,
            rec,
            service=SERVICE,
            kind=kind,
            reason=reason,
            at_ms=now_ms,
        )
        report.deadletters[kind] = report.deadletters.get(kind, 0) + 1

    def tick(self, out: OutputBatch, now_ms: int) -> DeliverReport | None:
        """Collect the finished answers: dead-letter those given up on and release every
        finished offset. None when nothing finished."""
        finished = self._dispatcher.harvest()
        if not finished:
            return None
        report = DeliverReport()
        for done in finished:
            pending = done.pending
            if done.outcome == "deadlettered":
                self._dead(out, pending.record, "undeliverable", done.reason, now_ms, report)
                log.warning(
                    "answer %s for User %s dead-lettered: %s",
                    pending.response_id,
                    pending.user_id,
                    done.reason,
                )
            self._ledger.release(pending.tp, pending.record.offset)
        return report

    def after_send(self, report: DeliverReport, now_ms: int) -> None:
        common = self._metrics.common
        for kind, n in report.deadletters.items():
            common.deadlettered.labels(SERVICE, kind).inc(n)
        for reason, n in report.skipped.items():
            self._metrics.skipped(reason, n)

    def held_floor(self) -> Mapping[TopicPartition, int]:
        return self._ledger.floors()

    def wants_input(self) -> bool:
        dispatcher = self._dispatcher
        return not dispatcher.any_full() and dispatcher.queued < MAX_QUEUED_TOTAL

    def revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """Forget the answers of revoked partitions: their next owner delivers them."""
        dropped = self._dispatcher.drop(partitions)
        self._ledger.drop(partitions)
        if dropped:
            log.info("%d queued answers left to the next owner of %s", dropped, sorted(partitions))
