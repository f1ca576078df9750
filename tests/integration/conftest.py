"""Integration fixtures: one real embedded Kafka-protocol broker (tansu) per session.

Never a mock of Kafka. Tests isolate themselves with unique topic prefixes and group ids
(the broker has no delete_records and keeps everything in memory).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from broker.embedded import EmbeddedBroker
from broker.settings import KafkaSettings
from broker.topics import ensure_topics
from workers.config.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The session's embedded broker on a free loopback port."""
    log_dir: Path = tmp_path_factory.mktemp("tansu")
    broker = EmbeddedBroker(log_path=log_dir / "tansu.log")
    broker.start_blocking()
    try:
        yield broker
    finally:
        broker.stop_blocking()


@pytest.fixture
def settings() -> Settings:
    """Gateway settings with a topic prefix of this test's own."""
    return Settings(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", partitions=3)


@pytest.fixture
def kafka(kafka_broker: EmbeddedBroker, settings: Settings) -> KafkaSettings:
    """Client settings for the session broker, tuned for tests (quick joins and fetches)."""
    return msgspec.structs.replace(
        settings.kafka(kafka_broker.bootstrap, embedded=True),
        session_timeout_ms=1_000,
        heartbeat_interval_ms=100,
        fetch_max_wait_ms=20,
        max_poll_records=500,
    )


@pytest.fixture
async def topics_ready(kafka: KafkaSettings, settings: Settings) -> None:
    """The contract's nine topics, created under this test's prefix."""
    await ensure_topics(kafka, settings.topics.specs(partitions=settings.partitions))
