"""A fast producer for load generation: confluent-kafka (librdkafka) instead of aiokafka.

aiokafka spends about 7 us of Python per record; librdkafka batches in C, about four
times faster on the embedded broker (BROKER-NOTES section 9), so a load generator built on
it does not become the bottleneck of what it measures. Keys are placed with
`partitioner=murmur2_random`, Kafka's murmur2 as in aiokafka and the Java client, so a
User's requests land on the partition the gateway expects.

`produce()` never blocks on the network: records are queued in librdkafka and sent by its
own threads. Only failed deliveries are reported back (`delivery.report.only.error`), so a
successful record costs no Python callback; `poll()` must be called now and then (the
runner does it every tick) to run those reports.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from broker.errors import BrokerError, DeliveryError
from broker.security import KafkaSecurity, librdkafka_config

__all__ = ["FastProducer", "Headers"]

Headers = list[tuple[str, str | bytes | None]]

_QUEUE_FULL_WAIT_S = 0.01


class FastProducer:
    """A librdkafka producer for `bootstrap`.

    linger_ms: how long records wait to fill a batch (default 5). acks: `all` (default),
    `1` or `0`. queue_records: records queued at most before `produce()` has to wait.
    security: TLS and SASL, as every other client of the project (broker/security.py maps
    them to librdkafka's names).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "dccgate-loadtest",
        linger_ms: int = 5,
        acks: str = "all",
        queue_records: int = 1_000_000,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.failed = 0
        self.produced = 0
        self.last_error: str | None = None
        try:
            self._producer = Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "client.id": client_id,
                    "partitioner": "murmur2_random",
                    "linger.ms": linger_ms,
                    "acks": acks,
                    "batch.num.messages": 10_000,
                    "batch.size": 1_000_000,
                    "queue.buffering.max.messages": queue_records,
                    "queue.buffering.max.kbytes": 1_048_576,
                    "delivery.report.only.error": True,
                    # The gateway under test may stop first; that is not worth a log line.
                    "log.connection.close": False,
                    "on_delivery": self._on_delivery,
                    **librdkafka_config(security or KafkaSecurity()),
                }
            )
        except KafkaException as exc:
            raise BrokerError(f"cannot create a producer for {bootstrap}: {exc}") from exc

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            self.last_error = f"{msg.topic()}: {err.str()}"

    def produce(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None
    ) -> None:
        """Queue one record; waits (polling) only while librdkafka's queue is full.

        headers: a list the caller may share between records (it is not copied).
        """
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
            except BufferError:
                self._producer.poll(_QUEUE_FULL_WAIT_S)
                continue
            except KafkaException as exc:
                raise BrokerError(f"cannot queue a record for {topic}: {exc}") from exc
            self.produced += 1
            return

    def produce_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        headers: Headers | None = None,
    ) -> None:
        """Queue (key, value) records, all with `headers`: `produce` without a Python call
        per record (the load generator's hot path)."""
        produce = self._producer.produce
        done = 0
        try:
            for key, value in records:
                produce(topic, value, key, headers=headers)
                done += 1
        except BufferError:
            pass
        except KafkaException as exc:
            raise BrokerError(f"cannot queue a record for {topic}: {exc}") from exc
        self.produced += done
        for key, value in records[done:]:
            self.produce(topic, key, value, headers)

    def poll(self) -> None:
        """Run pending delivery reports without waiting."""
        self._producer.poll(0)

    @property
    def in_flight(self) -> int:
        """Records queued or sent but not yet acknowledged."""
        return len(self._producer)

    def close(self) -> None:
        """Drop the connection (librdkafka closes it when the last reference goes)."""
        self.__dict__.pop("_producer", None)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued record is acknowledged; raise DeliveryError if some
        were not within `timeout_s`, or failed."""
        deadline = time.monotonic() + timeout_s
        remaining = self._producer.flush(timeout_s)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            raise DeliveryError(f"{remaining} records not acknowledged within {timeout_s:.0f} s")
        if self.failed:
            raise DeliveryError(f"{self.failed} records failed; last: {self.last_error}")
