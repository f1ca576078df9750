"""Read some partitions of a topic from the beginning to their end, once.

For state that moves with partitions: a worker assigned input partition p replays partition
p of the state changelog before it processes p's first record (docs/contract.md, the
`dcc.state.*` topics). "The end" is the high watermark each fetch reports, which every
broker reports correctly (the embedded broker's ListOffsets "latest" is wrong, so
`end_offsets()` is not used).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from broker.consumer import Record
from broker.errors import BrokerError
from broker.settings import KafkaSettings

__all__ = ["replay_partitions"]

log = logging.getLogger(__name__)


async def replay_partitions(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    on_records: Callable[[list[Record]], None],
    *,
    name: str,
    max_records: int = 5000,
) -> int:
    """Hand every record of `partitions` of `topic` to `on_records`, in offset order per
    partition, then return how many there were.

    Records written after the replay started may or may not be included: the caller is the
    only writer of these partitions (it owns them), so there are none. Raise BrokerError
    when the topic or a partition does not exist.
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return 0
    kwargs = settings.consumer_kwargs()
    kwargs["client_id"] = f"{settings.client_id}-{name}"
    consumer = AIOKafkaConsumer(group_id=None, **kwargs)
    try:
        await consumer.start()
    except KafkaError as exc:
        raise BrokerError(f"cannot replay {topic}: {exc}") from exc
    try:
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
        remaining = set(tps)
        total = 0
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=max_records)
            for records in batch.values():
                if records:
                    on_records(records)
                    total += len(records)
            for tp in list(remaining):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    remaining.discard(tp)
        return total
    except KafkaError as exc:
        raise BrokerError(f"replaying {topic} partitions {wanted} failed: {exc}") from exc
    finally:
        await consumer.stop()
