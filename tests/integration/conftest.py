"""Integration fixtures: one real broker per session, the embedded one (tansu, the default)
or Apache Kafka (`--broker kafka`, see tests/integration/brokers.py).

Never a mock of Kafka. Tests isolate themselves with unique topic prefixes and group ids
(one broker serves the whole session; the embedded one has no delete_records and keeps
everything in memory).

A test that depends on one broker's behaviour says so, and is skipped on the other:
`@pytest.mark.embedded_only(reason=...)` (it tests the embedded broker itself, or a defect of
it that is the test's subject) or `@pytest.mark.kafka_only(reason=...)` (it needs what only
Apache Kafka does). The reason is required; the skip shows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from broker.settings import KafkaSettings
from broker.topics import ensure_topics
from tests.integration.brokers import (
    BrokerKind,
    SessionBroker,
    session_broker,
    tuned_kafka_settings,
)
from workers.config.settings import Settings

pytestmark = pytest.mark.integration

_ONLY = {"embedded_only": "embedded", "kafka_only": "kafka"}


def _broker_kind(config: pytest.Config) -> BrokerKind:
    kind: BrokerKind = config.getoption("--broker")
    return kind


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked for the other broker, with the marker's reason."""
    kind = _broker_kind(config)
    for item in items:
        for marker_name, only_on in _ONLY.items():
            marker = item.get_closest_marker(marker_name)
            if marker is None:
                continue
            reason = marker.kwargs.get("reason")
            if not reason:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.{marker_name} needs reason='...' "
                    "(why the test holds on one broker only)"
                )
            if kind != only_on:
                item.add_marker(pytest.mark.skip(reason=f"{marker_name}: {reason}"))


@pytest.fixture(scope="session")
def kafka_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionBroker]:
    """The session's broker (`--broker embedded|kafka`) on free loopback ports."""
    kind = _broker_kind(request.config)
    with session_broker(kind, tmp_path_factory.mktemp(kind)) as broker:
        yield broker


@pytest.fixture
def settings() -> Settings:
    """Gateway settings with a topic prefix of this test's own."""
    return Settings(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", partitions=3)


@pytest.fixture
def kafka(kafka_broker: SessionBroker, settings: Settings) -> KafkaSettings:
    """Client settings for the session broker, tuned for tests (quick joins and fetches)."""
    return tuned_kafka_settings(kafka_broker, settings)


@pytest.fixture
async def topics_ready(kafka: KafkaSettings, settings: Settings) -> None:
    """The contract's nine topics, created under this test's prefix."""
    await ensure_topics(kafka, settings.topics.specs(partitions=settings.partitions))
