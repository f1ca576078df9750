"""`dccgate_router_user_decisions_total{user,outcome}`: counted per batch, registered Users only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch
from broker.topics import Topics
from tests.conftest import USER_A, USER_B, RequestFactory
from tests.unit.records import FakeRecord
from throttling import Allocation, SystemView, TrafficManager, TrafficPolicy
from workers.config.codes import ResponseCodes
from workers.duis import DuisValidator, load_catalogue
from workers.router.processor import RouterMetrics, RouterProcessor
from workers.router.traffic import TrafficControl, TrafficMetrics
from workers.runtime.metrics import CommonMetrics

TOPICS = Topics.with_prefix("")
TP = TopicPartition(TOPICS.sr_inbound, 0)
STRANGER = "90-B3-D5-1F-30-09-00-00"  # not registered anywhere
NAME = "dccgate_router_user_decisions_total"


def _router(
    registered: frozenset[str], manager: TrafficManager | None = None
) -> tuple[RouterProcessor, CollectorRegistry]:
    registry = CollectorRegistry()
    validator = DuisValidator(load_catalogue())
    validator.set_users({USER_A: ["IS"], USER_B: ["IS"]})
    control = TrafficControl("peer-1")
    control.registered_users = registered
    control.manager = manager
    common = CommonMetrics(registry, version="test")
    processor = RouterProcessor(
        topics=TOPICS,
        validator=validator,
        codes=ResponseCodes(),
        metrics=RouterMetrics(common, TrafficMetrics(registry, control)),
        traffic=control,
    )
    return processor, registry


def _record(value: bytes, user: str, offset: int) -> Record:
    return FakeRecord(topic=TOPICS.sr_inbound, offset=offset, key=user.encode(), value=value)


def _decide(processor: RouterProcessor, records: list[Record]) -> None:
    out = OutputBatch({t: 3 for t in TOPICS.all()})
    processor.after_send(processor.process({TP: records}, out, 5_000), 5_000)


def _count(registry: CollectorRegistry, user: str, outcome: str) -> float | None:
    return registry.get_sample_value(NAME, {"user": user, "outcome": outcome})


def test_decisions_are_counted_per_registered_user_and_outcome(
    make_request: RequestFactory,
) -> None:
    processor, registry = _router(frozenset({USER_A}))
    records = [
        _record(make_request(user=USER_A, counter=1), USER_A, 0),
        _record(make_request(user=USER_A, counter=2), USER_A, 1),
        _record(make_request(user=USER_A, counter=2), USER_A, 2),  # a replay: E102
        _record(make_request(user=USER_B, counter=1), USER_B, 3),
        _record(make_request(user=STRANGER, counter=1), STRANGER, 4),  # not registered: E1
    ]
    _decide(processor, records)
    assert _count(registry, USER_A, "accepted") == 2
    assert _count(registry, USER_A, "rejected") == 1
    # USER_B is valid for DUIS but not registered on dcc.control here: its label is "other",
    # like the stranger's; neither ID becomes a label value.
    assert _count(registry, "other", "accepted") == 1
    assert _count(registry, "other", "rejected") == 1
    assert _count(registry, USER_B, "accepted") is None
    assert _count(registry, STRANGER, "rejected") is None
    # The batch's counts are added once more with the next batch, not replaced.
    _decide(processor, [_record(make_request(user=USER_A, counter=3), USER_A, 5)])
    assert _count(registry, USER_A, "accepted") == 3


def test_throttled_requests_are_counted_for_their_user(make_request: RequestFactory) -> None:
    policy = TrafficPolicy(
        capacity_per_s=100,
        operating_threshold_per_s=10,
        default_allocation=Allocation(rate_per_s=1, burst=1),
    )
    manager = TrafficManager(policy, peer_id="peer-1")
    # The system is at 50/s, User A alone at 50/s: active, and A is over its allocation.
    for i in range(200):
        manager.record_admitted(USER_A, "4.1.1", 1.0 + i / 200)
    manager.update_view(SystemView(at_s=5.0, admitted_per_s=50.0, user_rates={USER_A: 50.0}))
    processor, registry = _router(frozenset({USER_A, USER_B}), manager)
    records = [
        _record(
            make_request(user=USER_A, counter=n, target=f"00-DB-00-00-00-00-00-{n:02X}"),
            USER_A,
            n,
        )
        for n in range(1, 21)
    ]
    _decide(processor, records)
    throttled = _count(registry, USER_A, "throttled")
    accepted = _count(registry, USER_A, "accepted") or 0
    assert throttled is not None
    assert throttled > 0
    assert throttled + accepted == 20
    assert (
        registry.get_sample_value(
            "dccgate_router_decisions_total", {"outcome": "throttled", "code": "T1"}
        )
        == throttled
    )
