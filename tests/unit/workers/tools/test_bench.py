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
from workers.config.codes import ResponseCodes
from workers.duis import DuisValidator, load_catalogue
from workers.router.adt import AdtControl
from workers.router.processor import RouterMetrics, RouterProcessor
from workers.runtime.metrics import CommonMetrics
from workers.tools.bench import ADT_WINDOWS_S, bench_adt_values, bench_users, make_requests

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
