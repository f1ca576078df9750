"""How the exactly_once setting resolves without asking a broker, and the fencing ids."""

from __future__ import annotations

import pytest

from broker.consumer import TopicPartition
from broker.errors import TransactionsUnavailableError
from broker.settings import KafkaSettings
from broker.transactions import resolve_exactly_once, transactional_id

# Nothing listens here: a test that reached the broker would fail to connect.
UNREACHABLE = KafkaSettings(bootstrap="127.0.0.1:9", request_timeout_ms=1_000)


def test_the_transactional_id_names_group_topic_and_partition() -> None:
    tp = TopicPartition("dcc.sr.inbound", 3)
    assert transactional_id("dccgate-router", tp) == "dccgate-router.dcc.sr.inbound.3"
    # Every worker of a group derives the same id, so the next owner fences the last one;
    # another group or partition never shares it.
    assert transactional_id("dccgate-router", tp) == transactional_id("dccgate-router", tp)
    ids = {
        transactional_id(group, TopicPartition(topic, p))
        for group in ("dccgate-router", "dccgate-alerts")
        for topic in ("dcc.sr.inbound", "dcc.alerts.inbound")
        for p in range(12)
    }
    assert len(ids) == 2 * 2 * 12


async def test_off_never_asks_the_broker() -> None:
    resolved = await resolve_exactly_once(
        KafkaSettings(bootstrap="x:1", exactly_once=True), "off", embedded=False
    )
    assert not resolved.exactly_once


async def test_auto_is_off_on_the_embedded_broker_without_asking() -> None:
    assert not (await resolve_exactly_once(UNREACHABLE, "auto", embedded=True)).exactly_once


async def test_on_is_refused_on_the_embedded_broker_saying_what_to_do() -> None:
    with pytest.raises(TransactionsUnavailableError, match="DCCGATE_EXACTLY_ONCE=auto or off"):
        await resolve_exactly_once(UNREACHABLE, "on", embedded=True)


async def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly_once must be one of"):
        await resolve_exactly_once(UNREACHABLE, "maybe", embedded=True)


def test_every_consumer_reads_committed_records_only() -> None:
    assert UNREACHABLE.consumer_kwargs()["isolation_level"] == "read_committed"
