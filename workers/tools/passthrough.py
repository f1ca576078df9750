"""The baseline of `dccgate bench`: a plain aiokafka pass-through loop.

What an operator would write with aiokafka alone: fetch a batch, `send()` every record
unchanged to another topic on the same partition, gather the acknowledgements, commit.
It lives here because only `broker/` talks to aiokafka.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from broker.settings import KafkaSettings

__all__ = ["passthrough"]


async def passthrough(settings: KafkaSettings, src: str, dst: str, records: int) -> float:
    """Copy `records` records from `src` to `dst`; return the seconds from the first record
    fetched to the commit of the last (a fresh consumer group, so from the beginning)."""
    consumer = AIOKafkaConsumer(
        src, group_id=f"bench-pt-{uuid.uuid4().hex[:8]}", **settings.consumer_kwargs()
    )
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await consumer.start()
    await producer.start()
    try:
        done, started = 0, None
        while done < records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=settings.max_poll_records)
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()
            futures = []
            for tp, recs in batch.items():
                for rec in recs:
                    futures.append(
                        await producer.send(dst, rec.value, key=rec.key, partition=tp.partition)
                    )
                done += len(recs)
            await asyncio.gather(*futures)
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
        if started is None:
            raise RuntimeError("the pass-through loop saw no record")
        return time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
