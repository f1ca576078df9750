"""The router's decisions: Service Requests from `dcc.sr.inbound` to devices or back to the User.

Per request, in this order (docs/how-it-works.md):
1. decode: not JSON, or the wrong shape -> `dcc.deadletter` with the reason;
2. DUIS validation (`workers.duis`) -> a `rejected` answer with an E code and the reason;
3. traffic management (SECMP0067, `workers.router.traffic`) -> a `throttled` answer with a
   retry time; a throttled request was never processed, so it counts for nothing after;
4. anomaly detection (SEC G6, `workers.router.adt`): the excess over a count threshold, or a
   body value outside a rule -> `dcc.sr.quarantine` and a `quarantined` answer;
5. forward the original bytes to `dcc.sr.outbound` (key: the target device ID) and answer
   `accepted` (I99) on `dcc.user.responses` (key: the User ID).
The ADT counts a batch changed go to `dcc.state.router` with the batch
(`workers.router.adt_state`).
"""

from __future__ import annotations

import collections
import logging
import math

import msgspec
from prometheus_client import Counter

from adt import Breach
from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch, partition_for_key
from broker.schemas import QuarantinedRequest, ServiceRequest, UserResponse
from broker.topics import Topics
from broker.wire_guard import record_problem
from throttling import RULE_CAPACITY, TrafficDecision
from throttling import reason as traffic_reason
from workers.config.codes import ResponseCodes
from workers.duis import DuisValidator, Rejection, Validated
from workers.duis.request_id import PAIR_CHARS as _PAIR
from workers.router.adt import AdtControl
from workers.router.adt_state import AdtStateStore
from workers.router.traffic import TrafficControl, TrafficMetrics
from workers.runtime.deadletter import deadletter, processing_error
from workers.runtime.headers import own_headers_dropped, srv_headers
from workers.runtime.metrics import LATENCY_BUCKETS_S, BatchHistogram, CommonMetrics

__all__ = ["PRUNE_INTERVAL_S", "SERVICE", "RouterMetrics", "RouterProcessor", "RouterReport"]

log = logging.getLogger(__name__)

SERVICE = "router"

_decode_request = msgspec.json.Decoder(ServiceRequest).decode
_QUARANTINE_CODE = {
    "user_adt": "quarantined_user_adt",
    "dcc_adt": "quarantined_dcc_adt",
    "data_value": "quarantined_data_value",
}
_encode = msgspec.json.Encoder().encode

_NO_VALUE = "the record has no value (a null/tombstone)"

PRUNE_INTERVAL_S = 60.0
"""How often the router frees the ADT windows and keys that hold nothing (at a batch's end)."""
_RAW_NULL = msgspec.Raw(b"null")


def _finite(value: float) -> float | None:
    """`value` rounded for an answer, or None when it is not finite (no limit)."""
    return round(value, 3) if math.isfinite(value) else None


class _Tally:
    """What one batch decided, counted locally and flushed into metrics after its acks."""

    __slots__ = (
        "accepted_by_user",
        "by_user",
        "deadlettered",
        "decisions",
        "forward_ts_ms",
        "quarantined",
        "throttled",
        "would_quarantine",
        "would_throttle",
    )

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], int] = {}
        self.deadlettered: dict[str, int] = {}
        self.forward_ts_ms: list[int] = []
        self.throttled: dict[tuple[str, str], int] = {}
        self.would_throttle: dict[str, int] = {}
        self.quarantined: dict[tuple[str, str], int] = {}
        self.would_quarantine: dict[str, int] = {}
        # Per User ID as sent (labelled in after_send: registered Users, else "other").
        self.accepted_by_user: dict[str, int] = {}
        self.by_user: dict[tuple[str, str], int] = {}  # (User ID, outcome): the others


RouterReport = _Tally
"""What `RouterProcessor.process` returns for `after_send` (opaque outside this module)."""


class RouterMetrics:
    """The router's own metrics, on the shared registry."""

    def __init__(self, common: CommonMetrics, traffic: TrafficMetrics | None = None) -> None:
        registry = common.registry
        self.common = common
        self.traffic = traffic
        self.decisions = Counter(
            "dccgate_router_decisions",
            "Service Requests decided, by outcome and response code.",
            ["outcome", "code"],
            registry=registry,
        )
        self.quarantined = Counter(
            "dccgate_adt_quarantined",
            "Requests quarantined by anomaly detection, by kind (user_adt Q1, dcc_adt Q2, "
            "data_value Q3) and SRV.",
            ["kind", "srv"],
            registry=registry,
        )
        self.would_quarantine = Counter(
            "dccgate_adt_shadow_would_quarantine",
            "Breaches of ADT rules in shadow mode (the request was processed), by kind.",
            ["kind"],
            registry=registry,
        )
        self.user_decisions = Counter(
            "dccgate_router_user_decisions",
            "Service Requests decided, by User (registered Users; others as 'other') and "
            "outcome (accepted, rejected, throttled, quarantined).",
            ["user", "outcome"],
            registry=registry,
        )
        self.forward_latency = BatchHistogram(
            "dccgate_forward_latency_seconds",
            "From a request's record timestamp on dcc.sr.inbound to its forward being "
            "acknowledged on dcc.sr.outbound.",
            LATENCY_BUCKETS_S,
            registry,
        )


class RouterProcessor:
    """Decides every request of a batch and writes the outputs (no I/O of its own).

    Parameters:
        topics: the topic names.
        validator: DUIS validation with its anti-replay state.
        codes: response codes to use.
        metrics: where decisions are counted.
    """

    def __init__(
        self,
        *,
        topics: Topics,
        validator: DuisValidator,
        codes: ResponseCodes,
        metrics: RouterMetrics,
        traffic: TrafficControl | None = None,
        adt: AdtControl | None = None,
        adt_state: AdtStateStore | None = None,
    ) -> None:
        self._topics = topics
        self._validator = validator
        self._codes = codes
        self._metrics = metrics
        self._traffic = traffic
        self._adt = adt
        self._adt_state = adt_state
        self._next_prune_s = 0.0
        self.windows_pruned = 0
        """Count windows whose arrays `AdtEngine.prune` freed, since start."""
        # SRV -> the pre-encoded middle of an accepted answer (code, outcome, reason) and the
        # answer's `dccgate-srv` header (the actuals count per SRV): one lookup per request.
        self._accepted_parts: dict[str, tuple[bytes, tuple[tuple[str, bytes], ...]]] = {}

    def process(  # noqa: PLR0915 - one hot loop; helpers would cost a call per record
        self, batch: dict[TopicPartition, list[Record]], out: OutputBatch, now_ms: int
    ) -> _Tally:
        """Decide each record of `batch`, adding forwards, answers and dead letters to `out`."""
        tally = _Tally()
        # Records are placed straight into the partition lists (no method call per record);
        # a User's answer partition is computed once per batch.
        forwards = out.partition_lists(self._topics.sr_outbound)
        answers = out.partition_lists(self._topics.user_responses)
        n_forwards, n_answers = len(forwards), len(answers)
        answer_partition: dict[bytes, int] = {}
        check = self._validator.check
        record_accepted = self._validator.record_accepted
        self._validator.journal.clear()  # what this batch accepts, for `abandon`
        accepted_parts = self._accepted_parts
        forward_ts = tally.forward_ts_ms
        accepted_users: list[str] = []  # the User of each accepted request, in order
        # The accepted answer is assembled from bytes: every part is either validated to
        # [0-9A-F:-] (request_id, User ID) or pre-encoded JSON, so no escaping is needed.
        # tests/unit/workers/router/test_router_processor.py checks it equals msgspec's encoding.
        suffix = (
            b',"rule":null,"retry_after_ms":null,"at_ms":%d,"observed":null,"limit":null}' % now_ms
        )
        # SECMP0067: None while no traffic management is configured (nothing throttled).
        traffic = self._traffic.manager if self._traffic is not None else None
        # SEC G6: None while no ADT values are configured at all.
        adt = self._adt.engine if self._adt is not None and self._adt.configured else None
        now_s = now_ms / 1000
        # Users whose ADT counts this batch changed -> their input partition (snapshots).
        touched: dict[str, int] = {}
        # The anti-replay changelog: one record per accepted (or held) request, on the
        # User's partition of dcc.state.router (workers/router/adt_state.py).
        state = self._adt_state
        replay_lists = out.partition_lists(state.topic) if state is not None else None
        for tp, records in batch.items():
            replay_log = None
            if replay_lists is not None:
                replay_log = replay_lists[tp.partition % len(replay_lists)]
            for rec in records:
                stage = "decode"
                try:
                    value = rec.value
                    if value is None:
                        self._deadletter(out, rec, "invalid_json", _NO_VALUE, now_ms, tally)
                        continue
                    # Input hygiene before any decoder sees the bytes: UTF-8, nesting depth,
                    # duplicate keys (the forwarded bytes must mean what was validated).
                    refused = record_problem(value)
                    if refused is not None:
                        self._deadletter(out, rec, *refused, now_ms, tally)
                        continue
                    try:
                        req = _decode_request(value)
                        # ServiceRequest.body_is_object inlined: a method call is a third
                        # of it. Most requests have no xml: a Raw equal to null needs no look.
                        body = memoryview(req.body)
                        if not body or body[0] != 0x7B:  # "{"
                            raise msgspec.ValidationError("Expected `object` - at `$.body`")
                        if req.xml != _RAW_NULL and not req.xml_is_string_or_null():
                            raise msgspec.ValidationError("Expected `str | null` - at `$.xml`")
                    except msgspec.ValidationError as exc:
                        self._deadletter(out, rec, "invalid_schema", str(exc), now_ms, tally)
                        continue
                    except msgspec.DecodeError as exc:
                        self._deadletter(out, rec, "invalid_json", str(exc), now_ms, tally)
                        continue
                    key = rec.key
                    try:
                        key_user = key.decode() if key is not None else None
                    except UnicodeDecodeError:
                        key_user = repr(key)[:80]
                    stage = "duis"
                    verdict = check(req, key_user)
                    if isinstance(verdict, Rejection):
                        self._reject(out, req, key_user, verdict, now_ms, tally)
                        continue
                    user_id, target_id, _, _, srv = verdict  # one unpack, not six lookups
                    srv_name = srv.srv
                    if traffic is not None:
                        stage = "traffic"
                        # Traffic management before anomaly detection: a throttled request was
                        # never processed, so it neither counts for ADT nor uses its counter.
                        decision = traffic.decide(user_id, srv_name, now_s)
                        if decision.would_throttle:
                            if not decision.allowed:
                                self._throttle(out, req, verdict, decision, now_ms, tally)
                                continue
                            user = self._traffic.user_label(user_id)  # type: ignore[union-attr]
                            tally.would_throttle[user] = tally.would_throttle.get(user, 0) + 1
                        traffic.record_admitted(user_id, srv_name, now_s)
                    if adt is not None:
                        stage = "adt"
                        # Anomaly detection counts what is processed; only the excess over a
                        # threshold (or a bad data value) is held in quarantine. One call
                        # decides and, unless it quarantines, counts the request.
                        found = adt.check_and_record(user_id, srv_name, req.body_values, now_s)
                        if found.shadow_breaches:
                            for breach in found.shadow_breaches:
                                tally.would_quarantine[breach.kind] = (
                                    tally.would_quarantine.get(breach.kind, 0) + 1
                                )
                        if found.breach is not None and found.quarantined:
                            record_accepted(verdict)  # held, not lost: a resend is a replay
                            if replay_log is not None:
                                rid = req.request_id.encode()
                                replay_log.append((rid[:_PAIR], rid[_PAIR + 1 :], (), None))
                            self._quarantine(out, req, verdict, found.breach, value, now_ms, tally)
                            continue
                        touched[user_id] = tp.partition
                    stage = "forward"
                    record_accepted(verdict)
                    # The request_id is validated USER:TARGET:COUNTER with fixed-width IDs and
                    # COUNTER without leading zeros: its bytes cut at _PAIR are the pair and
                    # b"%d" % counter (tests/unit/workers/router/test_router_processor.py).
                    rid = req.request_id.encode()
                    if replay_log is not None:
                        replay_log.append((rid[:_PAIR], rid[_PAIR + 1 :], (), None))
                    if key is None:
                        key = user_id.encode()
                    target = target_id.encode()
                    headers = rec.headers
                    forwards[partition_for_key(target, n_forwards)].append(
                        (target, value, own_headers_dropped(headers) if headers else (), None)
                    )
                    parts = accepted_parts.get(req.srv)  # the catalogue key of verdict.srv
                    if parts is None:
                        parts = self._parts_for(req.srv, verdict)
                    p = answer_partition.get(key)
                    if p is None:
                        p = answer_partition[key] = partition_for_key(key, n_answers)
                    answers[p].append(
                        (
                            key,
                            b"".join(
                                (b'{"request_id":"', rid, b'","user_id":"', key, parts[0], suffix)
                            ),
                            parts[1],
                            None,
                        )
                    )
                    forward_ts.append(rec.timestamp)
                    accepted_users.append(user_id)  # counted once, after the loop
                except Exception as exc:  # no record may stop the router
                    # Per-record isolation: whatever a stage raised on this record, the
                    # record is dead-lettered with the stage and the error, and the batch
                    # goes on (docs/contract.md, "processing_error").
                    self._deadletter(
                        out, rec, "processing_error", processing_error(stage, exc), now_ms, tally
                    )
        if accepted_users:
            tally.decisions[("accepted", self._codes.accepted)] = len(accepted_users)
            tally.accepted_by_user = collections.Counter(accepted_users)  # counted in C
        if state is not None:
            state.write_replay_evictions(out)
            if adt is not None:
                # SEC G6: the counts survive this router (workers/router/adt_state.py).
                state.write(out, touched, now_s)
        if adt is not None and now_s >= self._next_prune_s:
            # Once a minute, after the snapshots: windows that have emptied give their
            # arrays back, and Users whose keys all hold nothing drop them (made again on
            # their next request), so the memory follows the Users sending, not all
            # configured (docs/anomaly-detection.md).
            self._next_prune_s = now_s + PRUNE_INTERVAL_S
            self.windows_pruned += adt.prune(now_s)
        return tally

    def _parts_for(
        self, key: str, verdict: Validated
    ) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
        srv = verdict.srv
        reason = f"accepted: SRV {srv.srv} ({srv.name}) forwarded to the device"
        middle = b'","response_code":%s,"outcome":"accepted","reason":%s' % (
            _encode(self._codes.accepted),
            _encode(reason),
        )
        parts = self._accepted_parts[key] = (middle, srv_headers(srv.srv))
        return parts

    def _quarantine(
        self,
        out: OutputBatch,
        req: ServiceRequest,
        verdict: Validated,
        breach: Breach,
        value: bytes,
        now_ms: int,
        tally: _Tally,
    ) -> None:
        code = getattr(self._codes, _QUARANTINE_CODE[breach.kind])
        key = verdict.user_id.encode()
        out.add(
            self._topics.sr_quarantine,
            key,
            _encode(
                QuarantinedRequest(
                    id=req.request_id,
                    user_id=verdict.user_id,
                    srv=verdict.srv.srv,
                    kind=breach.kind,
                    rule=breach.rule,
                    reason=breach.reason,
                    at_s=now_ms / 1000,
                    observed=breach.observed,
                    limit=breach.limit,
                    response_code=code,
                    request=msgspec.Raw(value),
                )
            ),
        )
        out.add(
            self._topics.user_responses,
            key,
            _encode(
                UserResponse(
                    request_id=req.request_id,
                    user_id=verdict.user_id,
                    response_code=code,
                    outcome="quarantined",
                    reason=f"quarantined by anomaly detection (SEC G6): {breach.reason}; "
                    f"it is held until released (POST /v1/quarantine/{req.request_id}/release) "
                    f"or deleted (POST /v1/quarantine/{req.request_id}/delete)",
                    rule=breach.rule,
                    at_ms=now_ms,
                    observed=breach.observed,
                    limit=breach.limit,
                )
            ),
            srv_headers(verdict.srv.srv),
        )
        dk = ("quarantined", code)
        tally.decisions[dk] = tally.decisions.get(dk, 0) + 1
        uk = (verdict.user_id, "quarantined")
        tally.by_user[uk] = tally.by_user.get(uk, 0) + 1
        qk = (breach.kind, verdict.srv.srv)
        tally.quarantined[qk] = tally.quarantined.get(qk, 0) + 1

    def _throttle(
        self,
        out: OutputBatch,
        req: ServiceRequest,
        verdict: Validated,
        decision: TrafficDecision,
        now_ms: int,
        tally: _Tally,
    ) -> None:
        code = self._codes.throttled
        out.add(
            self._topics.user_responses,
            verdict.user_id.encode(),
            _encode(
                UserResponse(
                    request_id=req.request_id,
                    user_id=verdict.user_id,
                    response_code=code,
                    outcome="throttled",
                    reason=traffic_reason(decision),
                    rule=decision.rule,
                    retry_after_ms=decision.retry_after_ms,
                    at_ms=now_ms,
                    # The User's rate against its limit (requests/s), as `reason` says.
                    observed=round(decision.user_rate_per_s, 3),
                    limit=_finite(decision.limit_per_s),
                )
            ),
            srv_headers(verdict.srv.srv),
        )
        dk = ("throttled", code)
        tally.decisions[dk] = tally.decisions.get(dk, 0) + 1
        uk = (verdict.user_id, "throttled")
        tally.by_user[uk] = tally.by_user.get(uk, 0) + 1
        label = (
            self._traffic.user_label(verdict.user_id) if self._traffic is not None else "other",
            "capacity" if decision.rule == RULE_CAPACITY else "allocation",
        )
        tally.throttled[label] = tally.throttled.get(label, 0) + 1

    def _reject(
        self,
        out: OutputBatch,
        req: ServiceRequest,
        key_user: str | None,
        verdict: Rejection,
        now_ms: int,
        tally: _Tally,
    ) -> None:
        code = self._codes.for_rejection(verdict.kind)
        user_id = key_user or req.request_id.partition(":")[0]
        out.add(
            self._topics.user_responses,
            user_id.encode(),
            _encode(
                UserResponse(
                    request_id=req.request_id,
                    user_id=user_id,
                    response_code=code,
                    outcome="rejected",
                    reason=verdict.reason,
                    rule=f"duis.{verdict.kind}",
                    at_ms=now_ms,
                )
            ),
            srv_headers(req.srv),
        )
        dk = ("rejected", code)
        tally.decisions[dk] = tally.decisions.get(dk, 0) + 1
        uk = (user_id, "rejected")
        tally.by_user[uk] = tally.by_user.get(uk, 0) + 1

    def _deadletter(
        self,
        out: OutputBatch,
        rec: Record,
        kind: str,
        reason: str,
        now_ms: int,
        tally: _Tally,
    ) -> None:
        deadletter(
            out,
            self._topics.deadletter,
            rec,
            service=SERVICE,
            kind=kind,
            reason=reason,
            at_ms=now_ms,
        )
        tally.deadlettered[kind] = tally.deadlettered.get(kind, 0) + 1

    def abandon(self, batch: dict[TopicPartition, list[Record]]) -> None:
        """`process(batch)` raised after deciding some of it; its outputs were dropped and
        the loop decides it again in halves (workers.runtime.loop.RedoingProcessor). The
        replay memory takes back the COUNTERs that attempt accepted, so the redo decides
        each request as the first time, and a real replay is still refused. (Traffic and
        ADT counts of the attempt stay: a User may be counted twice, never zero times.)"""
        del batch  # the journal knows what the attempt accepted
        self._validator.undo()

    def after_send(self, report: _Tally, now_ms: int) -> None:
        """Flush a batch's counts into the metrics, now that its outputs are acknowledged."""
        m = self._metrics
        for (outcome, code), n in report.decisions.items():
            m.decisions.labels(outcome, code).inc(n)
        for kind, n in report.deadlettered.items():
            m.common.deadlettered.labels(SERVICE, kind).inc(n)
        if m.traffic is not None:
            for (user, rule), n in report.throttled.items():
                m.traffic.throttled.labels(user, rule).inc(n)
            for user, n in report.would_throttle.items():
                m.traffic.would_throttle.labels(user).inc(n)
        for (kind, srv), n in report.quarantined.items():
            m.quarantined.labels(kind, srv).inc(n)
        for kind, n in report.would_quarantine.items():
            m.would_quarantine.labels(kind).inc(n)
        if report.forward_ts_ms:
            m.forward_latency.observe_ages_ms(now_ms, report.forward_ts_ms)
        self._flush_user_decisions(report)

    def _flush_user_decisions(self, report: _Tally) -> None:
        # STYLE: a `user` label only for Users registered on dcc.control, all others
        # "other", so an unregistered or forged User ID cannot grow the label set.
        registered = self._traffic.registered_users if self._traffic is not None else ()
        counts: dict[tuple[str, str], int] = {}
        by_user = [((u, "accepted"), n) for u, n in report.accepted_by_user.items()]
        for (user_id, outcome), n in [*by_user, *report.by_user.items()]:
            key = (user_id if user_id in registered else "other", outcome)
            counts[key] = counts.get(key, 0) + n
        for (user, outcome), n in counts.items():
            self._metrics.user_decisions.labels(user, outcome).inc(n)
