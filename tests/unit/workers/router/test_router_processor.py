from __future__ import annotations

from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.schemas import UserResponse
from broker.topics import Topics
from tests.conftest import DEVICE, USER_A, USER_B, RequestFactory
from tests.unit.records import FakeRecord, Written, written
from workers.config.codes import ResponseCodes
from workers.duis import DuisValidator, load_catalogue
from workers.router.processor import RouterMetrics, RouterProcessor, RouterReport
from workers.router.traffic import TrafficControl, TrafficMetrics
from workers.runtime.metrics import CommonMetrics

TOPICS = Topics.with_prefix("")
TP = TopicPartition(TOPICS.sr_inbound, 0)


def _record(value: bytes | None, *, key: bytes | None = USER_A.encode(), offset: int = 0) -> Record:
    """A request as read from dcc.sr.inbound, written at 1,000 ms with one header of its own."""
    return FakeRecord(
        topic=TOPICS.sr_inbound, offset=offset, key=key, value=value, headers=[("h", b"1")]
    )


def _validator() -> DuisValidator:
    """DUIS validation with USER_A and USER_B registered in every role."""
    validator = DuisValidator(load_catalogue())
    roles = ["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]
    validator.set_users({USER_A: roles, USER_B: roles})
    return validator


@pytest.fixture
def router() -> tuple[RouterProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    processor = RouterProcessor(
        topics=TOPICS,
        validator=_validator(),
        codes=ResponseCodes(),
        metrics=RouterMetrics(CommonMetrics(registry, version="test")),
    )
    return processor, registry


def _run(processor: RouterProcessor, records: list[Record]) -> tuple[OutputBatch, RouterReport]:
    out = OutputBatch({t: 3 for t in TOPICS.all()})
    report = processor.process({TP: records}, out, 5_000)
    return out, report


def _value(w: Written) -> bytes:
    assert w.value is not None, f"a tombstone on {w.topic}"
    return w.value


def _answers(out: OutputBatch) -> list[UserResponse]:
    return [
        msgspec.json.decode(_value(w), type=UserResponse)
        for w in written(out, TOPICS.user_responses)
    ]


def test_valid_request_is_forwarded_unchanged_and_accepted(
    router: tuple[RouterProcessor, CollectorRegistry], make_request: RequestFactory
) -> None:
    processor, registry = router
    raw = make_request(counter=7)
    out, report = _run(processor, [_record(raw)])
    forwards = written(out, TOPICS.sr_outbound)
    assert [(f.key, f.value, list(f.headers)) for f in forwards] == [
        (DEVICE.encode(), raw, [("h", b"1")])
    ]
    [answer] = _answers(out)
    assert (answer.outcome, answer.response_code, answer.user_id) == ("accepted", "I99", USER_A)
    assert answer.at_ms == 5_000
    # The hand-assembled bytes are exactly what msgspec would write for the same answer.
    [raw_answer] = written(out, TOPICS.user_responses)
    assert raw_answer.value == msgspec.json.encode(answer)
    assert answer.reason == (
        "accepted: SRV 4.1.1 (Read Instantaneous Import Registers) forwarded to the device"
    )
    processor.after_send(report, 5_250)
    accepted = registry.get_sample_value(
        "dccgate_router_decisions_total", {"outcome": "accepted", "code": "I99"}
    )
    assert accepted == 1.0
    assert registry.get_sample_value("dccgate_forward_latency_seconds_count") == 1.0
    assert registry.get_sample_value("dccgate_forward_latency_seconds_sum") == 4.25


@pytest.mark.parametrize(
    ("overrides", "code", "words"),
    [
        ({"role": "ED", "srv": "7.2", "cv": 4}, "E2", "may not use SRV 7.2"),
        ({"srv": "4.1.1", "cv": 5}, "E12", "command_variant 5"),
        ({"srv": "99.1"}, "E101", "99.1"),
        ({"role": "XX"}, "E1", "not a DUIS User Role"),
    ],
)
def test_invalid_request_is_rejected_with_code_and_reason(
    router: tuple[RouterProcessor, CollectorRegistry],
    make_request: RequestFactory,
    overrides: dict[str, Any],
    code: str,
    words: str,
) -> None:
    processor, _ = router
    out, _ = _run(processor, [_record(make_request(**overrides))])
    assert written(out, TOPICS.sr_outbound) == []
    [answer] = _answers(out)
    assert (answer.outcome, answer.response_code) == ("rejected", code)
    assert words in answer.reason


def test_xml_is_forwarded_untouched(
    router: tuple[RouterProcessor, CollectorRegistry], make_request: RequestFactory
) -> None:
    processor, _ = router
    raw = make_request(xml='<sr:Request schemaVersion="5.4">\u00e9</sr:Request>')
    out, _ = _run(processor, [_record(raw)])
    [forward] = written(out, TOPICS.sr_outbound)
    assert forward.value == raw


def test_request_under_another_users_key_is_rejected(
    router: tuple[RouterProcessor, CollectorRegistry], make_request: RequestFactory
) -> None:
    processor, _ = router
    out, _ = _run(processor, [_record(make_request(user=USER_A), key=USER_B.encode())])
    [answer] = _answers(out)
    assert answer.response_code == "E1"
    assert answer.user_id == USER_B  # the answer goes to whoever sent it


def test_replayed_counter_is_rejected_after_acceptance(
    router: tuple[RouterProcessor, CollectorRegistry], make_request: RequestFactory
) -> None:
    processor, _ = router
    out, _ = _run(
        processor,
        [_record(make_request(counter=5)), _record(make_request(counter=5), offset=1)],
    )
    codes = [a.response_code for a in _answers(out)]
    assert codes == ["I99", "E102"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"not json", "invalid_json"),
        (None, "invalid_json"),
        (b'{"request_id": "x"}', "invalid_schema"),
        (b"[1, 2]", "invalid_schema"),
        (
            b'{"request_id":"a","user_role":"IS","srv":"4.1.1","command_variant":1,"body":[]}',
            "invalid_schema",
        ),
        (
            b'{"request_id":"a","user_role":"IS","srv":"4.1.1","command_variant":1,"xml":{}}',
            "invalid_schema",
        ),
    ],
)
def test_undecodable_records_are_dead_lettered_with_reason(
    router: tuple[RouterProcessor, CollectorRegistry], value: bytes | None, kind: str
) -> None:
    processor, registry = router
    out, report = _run(processor, [_record(value, offset=42)])
    [dead] = written(out, TOPICS.deadletter)
    assert (dead.key, dead.value) == (USER_A.encode(), value)
    h = dict(dead.headers)
    assert h["dccgate-dlq-kind"] == kind.encode()
    assert h["dccgate-dlq-reason"]
    assert h["dccgate-dlq-offset"] == b"42"
    assert h["h"] == b"1"  # the original headers are kept
    assert _answers(out) == []
    processor.after_send(report, 5_000)
    assert (
        registry.get_sample_value(
            "dccgate_deadletter_records_total", {"service": "router", "reason": kind}
        )
        == 1.0
    )


def test_one_bad_record_does_not_stop_the_batch(
    router: tuple[RouterProcessor, CollectorRegistry], make_request: RequestFactory
) -> None:
    processor, _ = router
    records = [
        _record(make_request(counter=1)),
        _record(b"\xff\xfe", offset=1),
        _record(make_request(counter=2), offset=2),
    ]
    out, _ = _run(processor, records)
    assert len(written(out, TOPICS.sr_outbound)) == 2
    assert len(written(out, TOPICS.deadletter)) == 1


def _traffic_router(
    shadow: bool = False,
) -> tuple[RouterProcessor, CollectorRegistry, TrafficControl]:
    from throttling import Allocation, SystemView, TrafficManager, TrafficPolicy

    registry = CollectorRegistry()
    control = TrafficControl("peer-1")
    control.registered_users = frozenset({USER_A})
    policy = TrafficPolicy(
        capacity_per_s=100,
        operating_threshold_per_s=10,
        default_allocation=Allocation(rate_per_s=1, burst=1),
        shadow=shadow,
    )
    control.manager = TrafficManager(policy, peer_id="peer-1")
    common = CommonMetrics(registry, version="test")
    processor = RouterProcessor(
        topics=TOPICS,
        validator=_validator(),
        codes=ResponseCodes(),
        metrics=RouterMetrics(common, TrafficMetrics(registry, control)),
        traffic=control,
    )
    # The system is at 50/s, User A alone at 50/s: active, and A is over its allocation.
    for i in range(200):
        control.manager.record_admitted(USER_A, "4.1.1", 1.0 + i / 200)
    control.manager.update_view(
        SystemView(at_s=5.0, admitted_per_s=50.0, user_rates={USER_A: 50.0})
    )
    return processor, registry, control


def test_a_user_over_its_allocation_is_throttled_not_forwarded(
    make_request: RequestFactory,
) -> None:
    processor, registry, control = _traffic_router()
    # Each to another device, so each request's counter is its pair's first.
    records = [
        _record(make_request(counter=n, target=f"00-DB-00-00-00-00-00-{n:02X}"), offset=n)
        for n in range(1, 41)
    ]
    out = OutputBatch({t: 3 for t in TOPICS.all()})
    report = processor.process({TP: records}, out, 5_000)
    answers = _answers(out)
    throttled = [a for a in answers if a.outcome == "throttled"]
    assert throttled
    assert len(written(out, TOPICS.sr_outbound)) == 40 - len(throttled)
    first = throttled[0]
    assert first.response_code == "T1"
    assert first.retry_after_ms is not None
    assert first.retry_after_ms > 0
    assert first.rule == f"traffic.allocation.{USER_A}"
    assert "allocation of 1.0/s" in first.reason
    assert "operating threshold of 10.0/s" in first.reason
    # The numbers of the reason are in the answer too: the User's rate and its limit.
    assert isinstance(first.observed, float)
    assert isinstance(first.limit, float)
    assert f"sending {first.observed:.1f} requests/s" in first.reason
    assert f"limited to {first.limit:.1f} requests/s" in first.reason
    processor.after_send(report, 5_000)
    assert registry.get_sample_value(
        "dccgate_traffic_throttled_total", {"user": USER_A, "rule": "allocation"}
    ) == len(throttled)
    assert registry.get_sample_value("dccgate_traffic_active") == 1.0
    # A throttled request did not use its counter: the same RequestID may be sent again.
    control.manager = None  # traffic management off now
    retry = [
        r
        for r in records
        if r.value is not None and msgspec.json.decode(r.value)["request_id"] == first.request_id
    ]
    out2, _ = _run(processor, retry)
    assert [(a.request_id, a.outcome) for a in _answers(out2)] == [(first.request_id, "accepted")]


def test_shadow_mode_throttles_nothing_but_counts(make_request: RequestFactory) -> None:
    processor, registry, _ = _traffic_router(shadow=True)
    records = [_record(make_request(counter=n), offset=n) for n in range(1, 41)]
    out, report = _run(processor, records)
    assert {a.outcome for a in _answers(out)} == {"accepted"}
    assert len(written(out, TOPICS.sr_outbound)) == 40
    processor.after_send(report, 5_000)
    assert (
        registry.get_sample_value("dccgate_traffic_shadow_would_throttle_total", {"user": USER_A})
        or 0
    ) > 0


def _adt_router(
    values: dict[str, Any], dcc: dict[str, Any] | None = None
) -> tuple[RouterProcessor, CollectorRegistry]:
    from adt import convert_values
    from workers.router.adt import AdtControl

    control = AdtControl()
    control.engine.set_user_values(USER_A, convert_values(values))
    if dcc is not None:
        control.engine.set_dcc_values(convert_values(dcc))
    control.configured = True
    registry = CollectorRegistry()
    processor = RouterProcessor(
        topics=TOPICS,
        validator=_validator(),
        codes=ResponseCodes(),
        metrics=RouterMetrics(CommonMetrics(registry, version="test")),
        adt=control,
    )
    return processor, registry


def test_only_the_excess_over_a_user_adt_is_quarantined(make_request: RequestFactory) -> None:
    from broker.schemas import QuarantinedRequest

    processor, registry = _adt_router({"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 3}]})
    records = [
        _record(make_request(counter=n, srv="7.2", cv=4, body={"n": n}), offset=n)
        for n in range(1, 6)
    ]
    out, report = _run(processor, records)
    answers = _answers(out)
    assert [a.outcome for a in answers] == ["accepted"] * 3 + ["quarantined"] * 2
    held = answers[3]
    assert held.response_code == "Q1"
    assert held.rule == f"user:{USER_A}:7.2:3600"
    assert "/release" in held.reason
    assert (held.observed, held.limit) == (4, 3)
    assert (answers[0].observed, answers[0].limit) == (None, None)  # accepted: no rule
    assert len(written(out, TOPICS.sr_outbound)) == 3
    quarantine = [
        msgspec.json.decode(_value(w), type=QuarantinedRequest)
        for w in written(out, TOPICS.sr_quarantine)
    ]
    assert [q.id for q in quarantine] == [answers[3].request_id, answers[4].request_id]
    assert bytes(quarantine[0].request) == records[3].value  # the original bytes, for release
    assert (quarantine[0].observed, quarantine[0].limit) == (4, 3)
    processor.after_send(report, 5_000)
    assert (
        registry.get_sample_value(
            "dccgate_adt_quarantined_total", {"kind": "user_adt", "srv": "7.2"}
        )
        == 2
    )


def test_a_data_value_out_of_range_is_quarantined_q3(make_request: RequestFactory) -> None:
    processor, _ = _adt_router(
        {"value_rules": [{"srv": "2.2", "field": "amount", "min": 0, "max": 500}]}
    )
    ok = make_request(counter=1, srv="2.2", body={"amount": 20})
    bad = make_request(counter=2, srv="2.2", body={"amount": 5000})
    out, _ = _run(processor, [_record(ok), _record(bad, offset=1)])
    assert [(a.outcome, a.response_code) for a in _answers(out)] == [
        ("accepted", "I99"),
        ("quarantined", "Q3"),
    ]


def test_shadow_adt_rules_count_but_quarantine_nothing(make_request: RequestFactory) -> None:
    processor, registry = _adt_router(
        {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 1}], "shadow": True}
    )
    records = [_record(make_request(counter=n, srv="7.2", cv=4), offset=n) for n in range(1, 4)]
    out, report = _run(processor, records)
    assert {a.outcome for a in _answers(out)} == {"accepted"}
    processor.after_send(report, 5_000)
    assert (
        registry.get_sample_value("dccgate_adt_shadow_would_quarantine_total", {"kind": "user_adt"})
        == 2
    )


# --- the hot loop's shortcuts against the straightforward way ----------------------------------


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ({}, None),
        ({"xml": None}, None),
        ({"xml": "<sr:Request/>"}, None),
        ({"body": {"a": 1}}, None),
        ({"body": "x"}, "invalid_schema"),
        ({"body": 1}, "invalid_schema"),
        ({"body": None}, "invalid_schema"),
        ({"xml": 1}, "invalid_schema"),
        ({"xml": True}, "invalid_schema"),
        ({"xml": []}, "invalid_schema"),
    ],
)
def test_body_must_be_an_object_and_xml_a_string_or_null(
    router: tuple[RouterProcessor, CollectorRegistry],
    make_request: RequestFactory,
    extra: dict[str, Any],
    kind: str | None,
) -> None:
    processor, _ = router
    out, _ = _run(processor, [_record(make_request(**extra))])
    dead = written(out, TOPICS.deadletter)
    if kind is None:
        assert dead == []
        assert [a.outcome for a in _answers(out)] == ["accepted"]
    else:
        assert [dict(d.headers)["dccgate-dlq-kind"] for d in dead] == [kind.encode()]


def test_every_output_of_a_mixed_batch_is_what_the_straightforward_way_writes(
    make_request: RequestFactory,
) -> None:
    """Forwards, answers and replay changelog records of a batch, checked against
    partition_for_key, own_headers_dropped and msgspec's encoding, record by record."""
    from broker.producer import partition_for_key
    from workers.config.settings import Settings
    from workers.router.adt import AdtControl
    from workers.router.adt_state import AdtStateStore
    from workers.runtime.headers import own_headers_dropped

    validator = _validator()
    store = AdtStateStore(
        Settings().kafka("127.0.0.1:1", embedded=True),
        TOPICS.sr_inbound,
        TOPICS.state_router,
        AdtControl(),
        validator,
    )
    processor = RouterProcessor(
        topics=TOPICS,
        validator=validator,
        codes=ResponseCodes(),
        metrics=RouterMetrics(CommonMetrics(CollectorRegistry(), version="test")),
        adt_state=store,
    )
    targets = [DEVICE, "00-DB-00-00-00-00-00-01", "00-DB-FF-FF-FF-FF-FF-FF"]
    cases = [
        (USER_A, targets[0], 0, "4.1.1", [("h", b"1")]),
        (USER_B, targets[1], 7, "4.1.1", []),
        (USER_A, targets[2], 2**64 - 1, "6.2.1", [("dccgate-x", b"1"), ("keep", b"2")]),
        (USER_B, targets[0], 1_700_000_000_000, "7.2", [("DCCGATE-SRV", b"9")]),
        (USER_A, targets[0], 0, "4.1.1", []),  # a replay: rejected, nothing forwarded
    ]
    records: list[Record] = []
    for offset, (user, target, counter, srv, headers) in enumerate(cases):
        cv = 4 if srv == "7.2" else 2 if srv == "6.2.1" else 1  # 7.2 is critical: CV 4
        value = make_request(user=user, target=target, counter=counter, srv=srv, cv=cv)
        records.append(
            FakeRecord(
                topic=TOPICS.sr_inbound,
                partition=1,
                offset=offset,
                key=user.encode(),
                value=value,
                headers=headers,
            )
        )
    out = OutputBatch({t: 3 for t in TOPICS.all()})
    processor.process({TopicPartition(TOPICS.sr_inbound, 1): records}, out, 5_000)
    accepted = cases[:4]
    forwards = written(out, TOPICS.sr_outbound)
    # (written() lists by partition, then in the order added: compared as sorted lists)
    assert sorted((f.partition, f.key, f.value, tuple(f.headers)) for f in forwards) == sorted(
        (
            partition_for_key(target.encode(), 3),
            target.encode(),
            rec.value,
            tuple(own_headers_dropped(rec.headers)),
        )
        for (_, target, _, _, _), rec in zip(accepted, records, strict=False)
    )
    answers = [a for a in written(out, TOPICS.user_responses) if b'"accepted"' in _value(a)]
    catalogue = load_catalogue()
    assert sorted((a.partition, a.key, a.value) for a in answers) == sorted(
        (
            partition_for_key(user.encode(), 3),
            user.encode(),
            msgspec.json.encode(
                UserResponse(
                    request_id=f"{user}:{target}:{counter}",
                    user_id=user,
                    response_code="I99",
                    outcome="accepted",
                    reason=f"accepted: SRV {srv} ({catalogue[srv].name}) forwarded to the device",
                    at_ms=5_000,
                )
            ),
        )
        for user, target, counter, srv, _ in accepted
    )
    assert sorted(dict(a.headers)["dccgate-srv"] for a in answers) == sorted(
        srv.encode() for *_, srv, _ in accepted
    )
    # The replay changelog: one record per accepted request on the input's partition, its
    # key the pair and its value the COUNTER, as b"%d" writes it.
    replay = written(out, TOPICS.state_router)
    assert [(r.partition, r.key, r.value) for r in replay] == [
        (1, f"{user}:{target}".encode(), b"%d" % counter)
        for user, target, counter, _, _ in accepted
    ]


def test_the_router_prunes_emptied_adt_windows_once_a_minute(
    make_request: RequestFactory,
) -> None:
    from workers.router.processor import PRUNE_INTERVAL_S

    processor, _ = _adt_router({"thresholds": [{"srv": "7.2", "window_s": 60, "max": 100}]})
    engine = processor._adt.engine  # type: ignore[union-attr]
    topics = {t: 3 for t in TOPICS.all()}

    def at(now_ms: int, counter: int) -> None:
        record = _record(make_request(counter=counter, srv="7.2", cv=4, body={}), offset=counter)
        processor.process({TP: [record]}, OutputBatch(topics), now_ms)

    at(1_000_000, 1)  # the first batch prunes (nothing to free yet), then once a minute
    assert engine.usage(USER_A, 1_000.0)[0].count == 1
    at(1_030_000, 2)  # 30 s on: not due, and the window still holds both
    assert processor.windows_pruned == 0
    # Two minutes on, the minute window has emptied: the next batch due frees its array.
    at(1_000_000 + int(PRUNE_INTERVAL_S * 1000) + 125_000, 3)
    assert processor.windows_pruned == 0  # the new request keeps this User's window counting
    processor.process({TP: []}, OutputBatch(topics), 1_000_000 + 2 * 125_000 + 90_000)
    assert processor.windows_pruned == 1
    assert engine.usage(USER_A, 1_340.0)[0].count == 0
