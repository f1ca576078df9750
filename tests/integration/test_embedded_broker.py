from __future__ import annotations

import socket
from pathlib import Path

import pytest

from broker.embedded import EmbeddedBroker, _probe, find_tansu
from broker.errors import EmbeddedBrokerError
from broker.settings import KafkaSettings
from broker.topics import Topics, ensure_topics


def test_the_binary_comes_from_the_pinned_package() -> None:
    assert find_tansu().name.startswith("tansu")


def test_a_bad_override_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DCCGATE_TANSU_BIN", str(tmp_path / "missing"))
    with pytest.raises(EmbeddedBrokerError, match="unset it"):
        find_tansu()


def test_start_answers_and_stop_frees_the_port(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "b.log")
    broker.start_blocking()
    try:
        assert _probe(broker.host, broker.port, 1.0)
    finally:
        broker.stop_blocking()
    assert not _probe(broker.host, broker.port, 0.2)
    with socket.socket() as s:  # the port is free again
        s.bind((broker.host, broker.port))


def test_a_port_in_use_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        broker = EmbeddedBroker(port=s.getsockname()[1], log_path=tmp_path / "b.log")
        with pytest.raises(EmbeddedBrokerError, match="log"):
            broker.start_blocking()


async def test_topic_creation_is_idempotent(kafka_broker: EmbeddedBroker) -> None:
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    specs = Topics.with_prefix("idem.").specs(partitions=3)
    first = await ensure_topics(kafka, specs)
    second = await ensure_topics(kafka, specs)
    assert sorted(first) == sorted(s.name for s in specs)
    assert second == []
