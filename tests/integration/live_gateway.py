"""A live gateway for the hostile-input tests: a real `dccgate run --bootstrap` process on the
session's embedded broker, configured through its admin API, and everything it writes read
back from the start of each output topic.

The process is the one operators run (router, alert worker, admin API and quarantine service
in one), so "the gateway is alive" means what it says: the process has not exited and its
`/healthz` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from broker.embedded import free_port
from broker.follower import partition_counts
from broker.settings import KafkaSettings
from tests.integration.helpers import health, wait_healthy
from workers.config.settings import Settings

OPERATOR_TOKEN = "hostile-input-tests-operator-token-0123456789"
"""The first operator token of the live gateway (longer than 32 characters, as issue 12
asks of production tokens)."""

Header = tuple[str, bytes | None]


class Seen(NamedTuple):
    """One record read back from an output topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


class Placed(NamedTuple):
    """Where the broker put a record the test sent."""

    partition: int
    offset: int


class LiveGateway:
    """A `dccgate run` process on the test's topics; see `live_gateway`."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def alive(self) -> bool:
        """The process has not exited."""
        return self.proc.poll() is None

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the process's output, for failure messages."""
        text = self.log.read_text(errors="replace")
        return text[-chars:]

    def health(self) -> tuple[int, dict[str, Any]]:
        """GET /healthz: (status, body)."""
        return health(self.port)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One admin API call as the operator: (status, decoded JSON answer)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {OPERATOR_TOKEN}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def put(self, path: str, body: Any) -> None:
        """PUT a configuration item; fail the test with the API's answer unless 200."""
        status, doc = self.api("PUT", path, body)
        assert status == 200, f"PUT {path}: {status} {doc}"

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of /metrics: (name, labels) -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric_sum(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and want <= ls)


@contextlib.contextmanager
def live_gateway(
    bootstrap: str, settings: Settings, log: Path, *, env: dict[str, str] | None = None
) -> Iterator[LiveGateway]:
    """`dccgate run --bootstrap` on `settings`' topics, healthy; on exit it is stopped with
    SIGTERM (and killed if it does not drain in 40 s)."""
    port = free_port()
    full_env = {
        **os.environ,
        "DCCGATE_TOPIC_PREFIX": settings.topic_prefix,
        "DCCGATE_PARTITIONS": str(settings.partitions),
        "DCCGATE_TOKEN": OPERATOR_TOKEN,
        "DCCGATE_SESSION_TIMEOUT_MS": "1000",
        "DCCGATE_HEARTBEAT_INTERVAL_MS": "100",
        "DCCGATE_FETCH_MAX_WAIT_MS": "20",
        "DCCGATE_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run", "--bootstrap", bootstrap,
             "--http-port", str(port)],
            env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    gateway = LiveGateway(proc, port, log)
    try:
        wait_healthy(port, proc, log, timeout_s=60)
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Sender:
    """Sends records as a hostile producer would (any key, value, headers, timestamp) and
    tells where each one landed. Values up to 8 MiB."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=8 * 1024 * 1024,
            max_batch_size=1024 * 1024,
        )

    async def __aenter__(self) -> Sender:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, Sequence[Header], int | None]],
    ) -> list[Placed]:
        """Send (key, value, headers, timestamp_ms) records in order; wait for every ack."""
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        futures = []
        for i, (key, value, headers, ts) in enumerate(records):
            if key is None and value is None:
                # aiokafka's send() refuses a record with neither (a Kafka producer may send
                # one all the same): a batch of its own, on a partition picked here.
                batch = producer.create_batch()
                batch.append(timestamp=ts, key=None, value=None, headers=list(headers))
                partition = partitions[i % len(partitions)]
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            else:
                futures.append(
                    await producer.send(
                        topic, value, key=key, headers=list(headers), timestamp_ms=ts
                    )
                )
        metas = await asyncio.gather(*futures)
        return [Placed(int(m.partition), int(m.offset)) for m in metas]


class TopicLog:
    """Every record of some topics from their first offset, read in the background into
    `records[topic]` (no consumer group)."""

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str]) -> None:
        self._kafka = kafka
        self._topics = list(topics)
        self.records: dict[str, list[Seen]] = {t: [] for t in topics}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def __aenter__(self) -> TopicLog:
        counts = await partition_counts(self._kafka, self._topics)
        consumer = self._consumer
        await consumer.start()
        partitions = [TopicPartition(t, p) for t in self._topics for p in range(counts[t])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
                for tp, recs in batch.items():
                    into = self.records[tp.topic]
                    into.extend(
                        Seen(tp.topic, tp.partition, r.offset, r.key, r.value,
                             tuple(r.headers or ()))
                        for r in recs
                    )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # surfaced by check(); a reader must not hide a failure
            self.error = exc

    def check(self) -> None:
        """Fail if the background reader failed."""
        assert self.error is None, f"reading the outputs failed: {self.error!r}"

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
