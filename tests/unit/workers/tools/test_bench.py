"""workers.tools.bench: the all-checks benchmark decides what a production router would, and
every request of its input is accepted (a benchmark that throttled, rejected or quarantined
would measure a different path)."""

from __future__ import annotations

import collections

import msgspec
from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.schemas import UserResponse
from broker.topics import Topics
from tests.unit.records import FakeRecord, written
from workers.alerts import AlertProcessor
from workers.alerts.metrics import AlertMetrics
from workers.config.codes import ResponseCodes
from workers.duis import DuisValidator, load_catalogue
from workers.router.adt import AdtControl
from workers.router.processor import RouterMetrics, RouterProcessor
from workers.runtime.metrics import CommonMetrics
from workers.tools.bench import (
    ADT_WINDOWS_S,
    BENCH_EXCLUSIONS,
    alerts_all_checks,
    bench_adt_values,
    bench_users,
    make_alerts,
    make_requests,
)

TOPICS = Topics.with_prefix("")


def test_every_benchmark_request_is_accepted_with_every_check_on() -> None:
    validator = DuisValidator(load_catalogue())
    validator.set_users(bench_users())
    adt = AdtControl()
    users, dcc = bench_adt_values(0.0)
    for user, values in users.items():
        adt.engine.set_user_values(user, values)
    adt.engine.set_dcc_values(dcc)
    adt.configured = True
    processor = RouterProcessor(
        topics=TOPICS,
        validator=validator,
        codes=ResponseCodes(),
        metrics=RouterMetrics(CommonMetrics(CollectorRegistry(), version="t")),
        adt=adt,
    )
    requests = make_requests(3_000)
    tp = TopicPartition(TOPICS.sr_inbound, 0)
    records: list[Record] = [
        FakeRecord(topic=TOPICS.sr_inbound, offset=n, key=key, value=value)
        for n, (key, value) in enumerate(requests)
    ]
    out = OutputBatch({t: 6 for t in TOPICS.all()})
    processor.process({tp: records}, out, 1_700_000_000_000)
    outcomes = collections.Counter(
        msgspec.json.decode(w.value or b"", type=UserResponse).outcome
        for w in written(out, TOPICS.user_responses)
    )
    assert outcomes == {"accepted": 3_000}
    srvs = {msgspec.json.decode(v)["srv"] for _, v in requests}
    assert {"2.2", "11.3"} <= srvs  # the value rules are met on the way
    # 9 windows per request: the User's SRV and "*" thresholds, and the DCC-wide SRV ones.
    assert len(ADT_WINDOWS_S) == 3
    some_user = next(iter(users.values()))
    assert {t.srv for t in some_user.thresholds} >= {"*"}


def _alert_outputs(processor: AlertProcessor, records: list[tuple[bytes, bytes]]) -> list[bytes]:
    tp = TopicPartition(TOPICS.alerts_inbound, 0)
    batch: list[Record] = [
        FakeRecord(topic=TOPICS.alerts_inbound, offset=n, key=key, value=value)
        for n, (key, value) in enumerate(records)
    ]
    out = OutputBatch({t: 6 for t in TOPICS.all()})
    processor.process({tp: batch}, out, 1_700_000_000_000)
    assert not list(written(out, TOPICS.deadletter))
    return [w.value or b"" for w in written(out, TOPICS.alerts_outbound)]


def test_the_alert_benchmark_with_every_check_on_forwards_what_the_plain_worker_does() -> None:
    """`alerts_all_checks` turns every check on, and the benchmark's alerts pass them all
    as the plain worker passes them: nothing held by MP102 or the regional gate, the storm
    caught the same way (a benchmark that held alerts would stall its commit)."""
    alerts = make_alerts(5_000)

    def new() -> AlertProcessor:
        return AlertProcessor(
            topics=TOPICS, metrics=AlertMetrics(CommonMetrics(CollectorRegistry(), version="t"))
        )

    plain, everything = new(), new()
    alerts_all_checks(everything, 1_700_000_000.0)
    assert everything.outlet.active
    assert everything.outlet.rule_on
    assert everything.outlet.rule.stats().watched_now == 10_000
    assert everything.guard.exclusions == frozenset(BENCH_EXCLUSIONS)
    assert len(everything.guard.policy.per_code) > 1
    forwarded = _alert_outputs(everything, alerts)
    assert forwarded == _alert_outputs(plain, alerts)
    assert everything.outlet.depth() == 0
    assert everything.held_floor() == {}
    codes = collections.Counter(msgspec.json.decode(v)["alert_code"] for v in forwarded)
    assert {"AD1", *BENCH_EXCLUSIONS} <= set(codes)  # MP102 and the exclusions were met
    assert len(forwarded) < 1.5 * len(alerts)  # the storm in the input was caught
