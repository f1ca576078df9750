"""Consumer lag: the broker wrapper's high watermarks, the loop's decided offsets, and the
collector that turns them into `dccgate_consumer_lag_records` at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from broker.consumer import BatchConsumer, TopicPartition
from broker.producer import OutputBatch
from broker.settings import KafkaSettings
from workers.runtime.loop import ServiceLoop
from workers.runtime.metrics import CommonMetrics, ConsumerLag

NAME = "dccgate_consumer_lag_records"
T0 = TopicPartition("dcc.sr.inbound", 0)
T1 = TopicPartition("dcc.sr.inbound", 1)
T2 = TopicPartition("dcc.sr.inbound", 2)


class _FakeAiokafka:
    """What `BatchConsumer.highwaters` reads of aiokafka's consumer."""

    def __init__(self, highwaters: dict[TopicPartition, int | None]) -> None:
        self._highwaters = highwaters

    def assignment(self) -> set[TopicPartition]:
        return set(self._highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwaters[tp]


class _Nothing:
    """A processor that decides nothing (never called here)."""

    def process(self, batch: object, out: OutputBatch, now_ms: int) -> None:
        return None

    def after_send(self, report: None, now_ms: int) -> None:
        return None


def _lag(registry: CollectorRegistry, service: str, tp: TopicPartition) -> float | None:
    labels = {"service": service, "topic": tp.topic, "partition": str(tp.partition)}
    return registry.get_sample_value(NAME, labels)


async def test_highwaters_are_those_of_assigned_partitions_already_fetched() -> None:
    consumer = BatchConsumer(KafkaSettings(bootstrap="127.0.0.1:1"), ["t"], group_id="g")
    real, consumer._consumer = consumer._consumer, _FakeAiokafka({T0: 10, T1: None})
    try:
        assert consumer.highwaters() == {T0: 10}
    finally:
        consumer._consumer = real
        await consumer.stop()  # never started; stopped so that aiokafka does not warn


def test_the_collector_reports_every_tracked_service_once() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag(registry)
    lag.track("router", lambda: [("dcc.sr.inbound", 0, 5), ("dcc.sr.inbound", 1, 0)])
    lag.track("alerts", lambda: [("dcc.alerts.inbound", 3, 7)])
    assert _lag(registry, "router", T0) == 5
    assert _lag(registry, "router", T1) == 0
    assert (
        registry.get_sample_value(
            NAME, {"service": "alerts", "topic": "dcc.alerts.inbound", "partition": "3"}
        )
        == 7
    )
    page = generate_latest(registry).decode()
    assert page.count(f"# TYPE {NAME} gauge") == 1


async def test_a_loop_reports_the_records_after_its_latest_decided_batch() -> None:
    registry = CollectorRegistry()
    loop = ServiceLoop(
        name="router",
        settings=KafkaSettings(bootstrap="127.0.0.1:1"),
        input_topics=["dcc.sr.inbound"],
        output_topics=[],
        group_id="g",
        processor=_Nothing(),
        metrics=CommonMetrics(registry, version="t"),
    )
    try:
        # Nothing fetched yet: no series at all.
        assert _lag(registry, "router", T0) is None
        fake = _FakeAiokafka({T0: 120, T1: 50, T2: 9})
        real, loop._consumer._consumer = loop._consumer._consumer, fake
        loop._decided.update({T0: 100, T1: 50})
        assert _lag(registry, "router", T0) is None  # not running: it owns nothing
        loop.status.running = True
        assert _lag(registry, "router", T0) == 20
        assert _lag(registry, "router", T1) == 0
        # T2 was fetched but no batch of it decided since its assignment: its position is
        # not known without asking the broker, so it is left out rather than guessed.
        assert _lag(registry, "router", T2) is None
        assert sorted(loop.lag()) == [("dcc.sr.inbound", 0, 20), ("dcc.sr.inbound", 1, 0)]
        loop._consumer._consumer = real
    finally:
        # Never started; stopped so that aiokafka's clients do not warn when collected.
        await loop._consumer.stop()
        await loop._producer.stop()
