"""Check that aiokafka works against a running Kafka: what dccgate and its tests rely on.

    .venv/bin/python deploy/kafka/smoke.py [--bootstrap 127.0.0.1:19092] [--replicas N]

Run it after `make kafka-up` (and again after changing the pinned Kafka or aiokafka version).
Each check prints `ok` or `FAIL` and what it saw; the exit code is 1 if any failed. It creates
topics and groups with a random suffix and deletes the topics at the end. Topics get
min(3, brokers) replicas unless --replicas says otherwise.

Checks:
- admin: create topics with configs, describe, a duplicate refused;
- produce (acks=all, idempotent), consume in a group of two with session_timeout_ms=1000,
  commit, committed offsets read back three ways;
- transactions: a consume-transform-produce loop (begin, send, send_offsets_to_transaction,
  commit; every third batch aborted), read_committed hides the aborted records;
- offsets: end_offsets, auto_offset_reset="latest", seek_to_end, offsets_for_times (all
  wrong on the embedded tansu broker);
- admin: alter/describe configs, create_partitions, delete_records, list/describe groups;
- compaction with small per-topic settings; segment.bytes below 1 MiB (refused by Kafka 4);
- auto topic creation is off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

RECORDS = 300
PARTITIONS = 3
# Settings the test suite uses with the embedded broker; Kafka must accept them too
# (group.min.session.timeout.ms is lowered in kafka.py for this).
GROUP_KW: dict[str, Any] = {
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 100,
    "fetch_max_wait_ms": 50,
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
}


def _short(result: Any) -> str:
    return str(result)[:80] + "..." if len(str(result)) > 80 else str(result)


class Smoke:
    def __init__(self, bootstrap: str, replicas: int) -> None:
        self.bootstrap = bootstrap
        self.replicas = replicas
        self.suffix = uuid.uuid4().hex[:8]
        self.topics: list[str] = []
        self.failed: list[str] = []
        self._admin: AIOKafkaAdminClient | None = None

    @property
    def admin(self) -> AIOKafkaAdminClient:
        assert self._admin is not None, "run() starts the admin client"
        return self._admin

    def name(self, what: str) -> str:
        return f"smoke-{what}-{self.suffix}"

    async def check(self, title: str, body: Callable[[], Awaitable[str]]) -> None:
        started = time.monotonic()
        try:
            seen = await body()
        except Exception as exc:  # a smoke check reports every failure and goes on
            self.failed.append(title)
            print(f"FAIL {title}: {type(exc).__name__}: {exc}", flush=True)
        else:
            print(f"ok   {title} ({time.monotonic() - started:.2f} s): {seen}", flush=True)

    async def create(
        self, what: str, partitions: int = PARTITIONS, configs: dict[str, str] | None = None
    ) -> str:
        topic = self.name(what)
        response = await self.admin.create_topics(
            [NewTopic(topic, partitions, self.replicas, topic_configs=configs or {})]
        )
        for _name, code, *rest in response.topic_errors:
            if code:
                raise RuntimeError(f"create_topics {topic}: error {code} {rest}")
        self.topics.append(topic)
        return topic

    # --- the checks ---------------------------------------------------------------------

    async def admin_topics(self) -> str:
        topic = await self.create(
            "admin", configs={"retention.ms": "3600000", "min.insync.replicas": "1"}
        )
        duplicate = await self.admin.create_topics([NewTopic(topic, 1, self.replicas)])
        dup_code = duplicate.topic_errors[0][1]
        if dup_code != 36:  # TOPIC_ALREADY_EXISTS
            raise RuntimeError(f"creating {topic} twice gave error {dup_code}, not 36")
        described = await self.admin.describe_topics([topic])
        partitions = described[0]["partitions"]
        replicas = {len(p["replicas"]) for p in partitions}
        return (
            f"{len(partitions)} partitions, replicas per partition {replicas}, "
            f"duplicate refused (36); topics listed: {topic in await self.admin.list_topics()}"
        )

    async def _produce(self, topic: str, prefix: str) -> None:
        """RECORDS values `<prefix><i>` over 20 keys, acks=all, idempotent."""
        async with AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        ) as producer:
            for i in range(RECORDS):
                await producer.send(topic, f"{prefix}{i}".encode(), key=f"k{i % 20}".encode())
            await producer.flush()

    async def produce_consume_commit(self) -> str:
        topic = await self.create("data")
        await self._produce(topic, "v")
        group = self.name("group")
        consumers = [
            AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group, **GROUP_KW)
            for _ in range(2)
        ]
        started = time.monotonic()
        for consumer in consumers:
            await consumer.start()
        seen: list[bytes] = []
        try:
            deadline = time.monotonic() + 30
            while len(seen) < RECORDS and time.monotonic() < deadline:
                for consumer in consumers:
                    batch = await consumer.getmany(timeout_ms=200)
                    for records in batch.values():
                        seen.extend(r.value for r in records if r.value is not None)
                    if batch:
                        await consumer.commit()
            elapsed = time.monotonic() - started
            assignments = [sorted(p.partition for p in c.assignment()) for c in consumers]
            committed = {}
            for p in range(PARTITIONS):
                tp = TopicPartition(topic, p)
                owner = next(c for c in consumers if tp in c.assignment())
                committed[p] = await owner.committed(tp)
            end = await consumers[0].end_offsets(
                [TopicPartition(topic, p) for p in range(PARTITIONS)]
            )
        finally:
            for consumer in consumers:
                await consumer.stop()
        if len(seen) != RECORDS or len(set(seen)) != RECORDS:
            raise RuntimeError(f"consumed {len(seen)} ({len(set(seen))} unique) of {RECORDS}")
        if sum(committed.values()) != RECORDS:
            raise RuntimeError(f"committed offsets {committed} do not add up to {RECORDS}")
        if {tp.partition: o for tp, o in end.items()} != committed:
            raise RuntimeError(f"end_offsets {end} != committed {committed}")
        fetched = await self.admin.list_consumer_group_offsets(group)
        if {tp.partition: o.offset for tp, o in fetched.items()} != committed:
            raise RuntimeError(f"admin list_consumer_group_offsets {fetched} != {committed}")
        return (
            f"{RECORDS} records consumed once by 2 members {assignments} in {elapsed:.2f} s; "
            f"committed {committed} == end_offsets == admin list_consumer_group_offsets"
        )

    async def transactions(self) -> str:
        source = await self.create("txn-in")
        sink = await self.create("txn-out")
        group = self.name("txn-group")
        await self._produce(source, "in")
        consumer = AIOKafkaConsumer(
            source,
            bootstrap_servers=self.bootstrap,
            group_id=group,
            isolation_level="read_committed",
            **GROUP_KW,
        )
        txn_producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, transactional_id=self.name("txn")
        )
        committed_out = aborted_out = batches = 0
        await consumer.start()
        await txn_producer.start()
        try:
            consumed = 0
            deadline = time.monotonic() + 30
            while consumed < RECORDS and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200, max_records=50)
                if not batch:
                    continue
                batches += 1
                abort = batches % 3 == 0
                await txn_producer.begin_transaction()
                count = 0
                for records in batch.values():
                    for r in records:
                        await txn_producer.send(sink, b"out-" + (r.value or b""), key=r.key)
                        count += 1
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                await txn_producer.send_offsets_to_transaction(offsets, group)
                if abort:
                    await txn_producer.abort_transaction()
                    aborted_out += count
                    # The aborted batch is redone: rewind to the last committed offsets.
                    for tp in batch:
                        committed = await consumer.committed(tp)
                        consumer.seek(tp, committed or 0)
                else:
                    await txn_producer.commit_transaction()
                    committed_out += count
                    consumed += count
        finally:
            await txn_producer.stop()
            await consumer.stop()
        if committed_out != RECORDS:
            raise RuntimeError(f"committed {committed_out} outputs, expected {RECORDS}")
        fetched = await self.admin.list_consumer_group_offsets(group)
        group_total = sum(o.offset for o in fetched.values())
        if group_total != RECORDS:
            raise RuntimeError(f"group offsets via the transaction add up to {group_total}")
        counts = {
            isolation: await self._read_all(sink, isolation)
            for isolation in ("read_committed", "read_uncommitted")
        }
        rc = counts["read_committed"]
        if len(rc) != RECORDS or len(set(rc)) != RECORDS:
            raise RuntimeError(f"read_committed saw {len(rc)} ({len(set(rc))} unique)")
        ru = len(counts["read_uncommitted"])
        if ru != RECORDS + aborted_out:
            raise RuntimeError(f"read_uncommitted saw {ru}, expected {RECORDS + aborted_out}")
        return (
            f"{batches} transactions, {committed_out} records committed and {aborted_out} "
            f"aborted; read_committed sees {len(rc)}, read_uncommitted {ru}; "
            f"group offsets committed through the transaction: {group_total}"
        )

    async def _read_all(self, topic: str, isolation: str) -> list[bytes]:
        """Every value in `topic` from the start, read without a group."""
        reader = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            isolation_level=isolation,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await reader.start()
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                batch = await reader.getmany(timeout_ms=500)
                if not batch and values:
                    break
                for records in batch.values():
                    values.extend(r.value or b"" for r in records)
        finally:
            await reader.stop()
        return values

    async def compaction(self) -> str:
        topic = await self.create(
            "compact",
            partitions=1,
            configs={
                "cleanup.policy": "compact",
                "segment.ms": "100",
                "min.cleanable.dirty.ratio": "0.01",
                "delete.retention.ms": "100",
                "min.compaction.lag.ms": "0",
            },
        )
        keys, rounds = 10, 50
        async with AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all") as producer:
            for r in range(rounds):
                for k in range(keys):
                    await producer.send(topic, f"{r}".encode(), key=f"k{k}".encode())
                await producer.flush()
                await asyncio.sleep(0.01)
            total = keys * rounds
            started = time.monotonic()
            remaining = total
            while time.monotonic() - started < 30:
                # Another write rolls the active segment (segment.ms passed), so what came
                # before becomes cleanable.
                await producer.send_and_wait(topic, b"tick", key=b"tick")
                remaining = len(await self._read_all(topic, "read_uncommitted"))
                if remaining < total // 2:
                    break
                await asyncio.sleep(0.5)
        if remaining >= total // 2:
            raise RuntimeError(f"still {remaining} of {total} records after 30 s")
        return (
            f"{total} writes to {keys} keys compacted to {remaining} records in "
            f"{time.monotonic() - started:.1f} s (segment.ms=100, min.cleanable.dirty.ratio=0.01)"
        )

    async def offsets(self) -> str:
        """What tansu gets wrong: end offsets, seek_to_end, "latest", offsets_for_times."""
        topic = await self.create("offsets", partitions=1)
        tp = TopicPartition(topic, 0)
        stamp_ms = int(time.time() * 1000) - 60_000
        # acks=all: with 3 replicas, an acks=1 write is acknowledged before the followers
        # have it, and the end offset (the high watermark) lags behind for a moment.
        async with AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=50, acks="all"
        ) as producer:
            for i in range(50):  # one batch of 50, as in BROKER-NOTES.md section 3
                await producer.send(topic, b"x", partition=0, timestamp_ms=stamp_ms + i * 1000)
            await producer.flush()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, auto_offset_reset="latest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            latest_position = await consumer.position(tp)
            await consumer.seek_to_end(tp)
            after_seek = await consumer.position(tp)
            found = (await consumer.offsets_for_times({tp: stamp_ms + 10_500}))[tp]
        finally:
            await consumer.stop()
        if (end, latest_position, after_seek) != (50, 50, 50):
            raise RuntimeError(f"end {end}, latest {latest_position}, seek_to_end {after_seek}")
        if found is None or found.offset != 11:
            raise RuntimeError(f"offsets_for_times gave {found}, expected offset 11")
        return (
            "end_offsets, auto_offset_reset=latest and seek_to_end give 50 of 50; "
            "offsets_for_times uses record timestamps (offset 11)"
        )

    async def admin_extras(self) -> str:
        """Admin calls the embedded broker lacks: configs, partitions, records, groups.
        Each call is tried on its own, so the report names every one that fails."""
        topic = await self.create("extras", partitions=1)
        tp = TopicPartition(topic, 0)
        async with AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all") as producer:
            for _ in range(10):
                await producer.send(topic, b"x", partition=0)
        retention = ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "7200000"})
        steps: dict[str, Callable[[], Awaitable[Any]]] = {
            "alter_configs": lambda: self.admin.alter_configs([retention]),
            "describe_configs": lambda: self._retention_ms(topic),
            "create_partitions": lambda: self.admin.create_partitions({topic: NewPartitions(3)}),
            "delete_records": lambda: self.admin.delete_records({tp: RecordsToDelete(4)}),
            "list_consumer_groups": self.admin.list_consumer_groups,
            # One group only: aiokafka 0.14 decodes DescribeGroups v3 answers with the v2
            # schema (DescribeGroupsRequest_v3.RESPONSE_TYPE), which lacks the per-group
            # authorized_operations field; with two groups or more the decoder runs off the
            # end ("Buffer underrun decoding string") and drops the connection. Any broker
            # that speaks v3 (Kafka 2.3+) shows it; dccgate does not call it.
            "describe_consumer_groups": lambda: self.admin.describe_consumer_groups(
                [self.name("group")]
            ),
        }
        seen, failed = [], []
        for name, call in steps.items():
            try:
                result = await call()
            except Exception as exc:  # report each call's failure, go on with the next
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
            else:
                seen.append(f"{name} {_short(result)}")
        if failed:
            raise RuntimeError("; ".join(failed) + " (worked: " + "; ".join(seen) + ")")
        return "; ".join(seen)

    async def _retention_ms(self, topic: str) -> str:
        # The controller commits the change; each broker applies it from the metadata log a
        # moment later, and describe_configs may ask another broker: poll.
        started = time.monotonic()
        while True:
            described = await self.admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
            )
            entries = {entry[0]: entry[1] for entry in described[0].resources[0][4]}
            if entries.get("retention.ms") == "7200000":
                waited = time.monotonic() - started
                return f"retention.ms=7200000 after alter_configs (seen after {waited:.2f} s)"
            if time.monotonic() - started > 5:
                raise RuntimeError(f"retention.ms is {entries.get('retention.ms')} after alter")
            await asyncio.sleep(0.05)

    async def tiny_segment_bytes(self) -> str:
        topic = self.name("tiny")
        response = await self.admin.create_topics(
            [NewTopic(topic, 1, self.replicas, topic_configs={"segment.bytes": "1024"})]
        )
        _name, code, *rest = response.topic_errors[0]
        if not code:
            self.topics.append(topic)
            return "segment.bytes=1024 accepted"
        return f"segment.bytes=1024 refused as expected on Kafka 4 (error {code}: {rest})"

    async def no_auto_create(self) -> str:
        topic = self.name("missing")
        async with AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, request_timeout_ms=3000
        ) as producer:
            try:
                await producer.send_and_wait(topic, b"x")
            except KafkaError as exc:
                return f"producing to a missing topic fails: {type(exc).__name__}"
        self.topics.append(topic)
        raise RuntimeError("a produce to a missing topic created it (auto-create is on)")

    async def run(self) -> int:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self.admin.start()
        if not self.replicas:
            self.replicas = min(3, len((await self.admin.describe_cluster())["brokers"]))
        print(f"{self.bootstrap}: topics with {self.replicas} replica(s)")
        try:
            await self.check("admin: create/describe/duplicate topics", self.admin_topics)
            await self.check("produce + group consume + commit", self.produce_consume_commit)
            await self.check("transactions (consume-transform-produce)", self.transactions)
            await self.check("offsets: end, latest, seek_to_end, by time", self.offsets)
            await self.check("admin: configs, partitions, records, groups", self.admin_extras)
            await self.check("compaction with small per-topic settings", self.compaction)
            await self.check("segment.bytes below 1 MiB", self.tiny_segment_bytes)
            await self.check("auto topic creation is off", self.no_auto_create)
        finally:
            with contextlib.suppress(KafkaError):
                await self.admin.delete_topics(self.topics)
            await self.admin.close()
        print(f"{len(self.failed)} failed: {self.failed}" if self.failed else "all ok")
        return 1 if self.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--replicas", type=int, default=0, help="default: min(3, brokers)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    return asyncio.run(Smoke(args.bootstrap, args.replicas).run())


if __name__ == "__main__":
    sys.exit(main())
