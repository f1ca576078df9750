"""Read some partitions of a topic from the beginning to their end, once.

For state that moves with partitions: a worker assigned input partition p replays partition
p of its state changelog before it processes p's first record (docs/contract.md, the
`dcc.state.*` topics). "The end" is what the first fetch answer for each partition says
can be read: its last stable offset when reading read_committed (records of a transaction
still open are not decided yet), else its high watermark; every broker reports these
correctly (the embedded broker's ListOffsets "latest" is wrong, so `end_offsets()` is not
used). Records written after that are not included.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from broker.consumer import Record, readable_end
from broker.errors import BrokerError
from broker.settings import KafkaSettings

__all__ = ["read_to_end", "replay_partitions"]


async def replay_partitions(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    on_records: Callable[[list[Record]], None],
    *,
    name: str,
    timeout_s: float = 60.0,
    max_records: int = 10_000,
) -> int:
    """Hand every record of `partitions` of `topic`, up to each partition's end, to
    `on_records` (in offset order per partition); return how many there were.

    Raise BrokerError when the topic lacks one of the partitions, or when reading takes
    longer than `timeout_s`.
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return 0
    kwargs = settings.consumer_kwargs()
    kwargs["client_id"] = f"{settings.client_id}-{name}-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(group_id=None, **kwargs)
    try:
        await consumer.start()
        existing = consumer.partitions_for_topic(topic)
        if not existing:
            await consumer._client.force_metadata_update()
            existing = consumer.partitions_for_topic(topic) or set()
        missing = [p for p in wanted if p not in existing]
        if missing:
            raise BrokerError(
                f"{topic} has no partition {missing}: it must have as many partitions as the "
                "input topic it follows; recreate it with the same partition count"
            )
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}
        done: set[TopicPartition] = set()
        total = 0
        deadline = time.monotonic() + timeout_s
        while len(done) < len(tps):
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"reading {topic} partitions {wanted} took over {timeout_s:.0f} s; "
                    "check the cluster, or that the topic is not enormous"
                )
            batch = await consumer.getmany(*tps, timeout_ms=200, max_records=max_records)
            for tp in tps:
                if tp in done:
                    continue
                if tp not in ends:
                    # read_committed: the last stable offset, so a transaction still open
                    # is neither waited for nor read (its outputs are not decided yet).
                    end_now = readable_end(consumer, tp)
                    if end_now is not None:
                        ends[tp] = end_now
                end = ends.get(tp)
                records = [r for r in batch.get(tp, ()) if end is None or r.offset < end]
                if records:
                    on_records(records)
                    total += len(records)
                if end is not None and await consumer.position(tp) >= end:
                    done.add(tp)
                    consumer.pause(tp)
        return total
    except KafkaError as exc:
        raise BrokerError(f"cannot read {topic} partitions {wanted}: {exc}") from exc
    finally:
        await consumer.stop()


async def read_to_end(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    *,
    name: str,
    timeout_s: float = 60.0,
) -> list[Record]:
    """`replay_partitions` collected into one list, for small changelogs."""
    records: list[Record] = []
    await replay_partitions(
        settings, topic, partitions, records.extend, name=name, timeout_s=timeout_s
    )
    return records
