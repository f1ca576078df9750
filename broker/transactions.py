"""Exactly-once on brokers with transactions: who gets which transactional id, and whether
the cluster has transactions at all.

aiokafka 0.14 has transactional producers but not KIP-447 (a transaction fenced by the
consumer group's generation), so fencing rests on the transactional id alone, as Faust did:
one transactional producer per assigned input partition, with an id derived from (group,
topic, partition). The worker that is assigned a partition registers that id
(InitProducerId) before it reads the partition's committed offset; the coordinator then
aborts whatever the partition's previous owner left open (a worker killed mid-transaction)
and fences that owner, so a zombie can never commit outputs or offsets for a partition it
lost. Offsets are committed with `send_offsets_to_transaction` inside the same transaction
as the outputs (consume-transform-produce).

The embedded broker (tansu) has no usable transactions (BROKER-NOTES.md: aiokafka's
InitProducerId is refused and read_committed does not hide aborted records), so there the
workers keep the at-least-once path.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Final, Literal

import msgspec

from broker.consumer import TopicPartition
from broker.errors import BrokerError, TransactionsUnavailableError
from broker.producer import BatchProducer
from broker.settings import KafkaSettings

__all__ = [
    "EXACTLY_ONCE_MODES",
    "PROBE_ID_PREFIX",
    "ExactlyOnceMode",
    "PartitionProducers",
    "probe_transactions",
    "resolve_exactly_once",
    "transactional_id",
]

log = logging.getLogger(__name__)

ExactlyOnceMode = Literal["auto", "on", "off"]
EXACTLY_ONCE_MODES: Final[tuple[ExactlyOnceMode, ...]] = ("auto", "on", "off")

_PROBE_TIMEOUT_S = 15.0
"""How long the probe waits for a producer id (a fresh cluster creates
`__transaction_state` on the first request, which takes a few seconds)."""


PROBE_ID_PREFIX: Final = "dccgate.probe."
"""The exactly-once probe's transactional ids: the topic prefix, this, a random suffix."""


def transactional_id(group_id: str, tp: TopicPartition) -> str:
    """The transactional id of the producer that writes the outputs of input partition `tp`
    for consumer group `group_id`: the same in every worker of the group, so the next owner
    of the partition fences the previous one."""
    return f"{group_id}.{tp.topic}.{tp.partition}"


async def probe_transactions(
    settings: KafkaSettings, *, timeout_s: float | None = None
) -> str | None:
    """None if the cluster gives a transactional producer a producer id and commits an
    empty transaction; otherwise why not. Tries rather than reads ApiVersions: a broker
    may list the transaction APIs and still refuse aiokafka's InitProducerId (tansu).

    `timeout_s`: how long to wait for the producer id; default the request timeout, at most
    15 s (a fresh cluster creates `__transaction_state` on the first request).
    """
    if timeout_s is None:
        timeout_s = min(_PROBE_TIMEOUT_S, settings.request_timeout_ms / 1000)
    probe = BatchProducer(
        msgspec.structs.replace(settings, request_timeout_ms=int(timeout_s * 1000)),
        # Prefixed like every id of the deployment, so ACLs grant it per deployment.
        transactional_id=f"{settings.topic_prefix}{PROBE_ID_PREFIX}{uuid.uuid4().hex[:12]}",
    )
    try:
        async with asyncio.timeout(timeout_s + 5):
            await probe.start()
            try:
                await probe.init_transactions()
            finally:
                await probe.stop()
    except (BrokerError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    return None


async def resolve_exactly_once(
    settings: KafkaSettings, mode: str, *, embedded: bool
) -> KafkaSettings:
    """`settings` with `exactly_once` decided from `mode` (`auto`, `on` or `off`): `off`
    never; `auto` where the cluster supports transactions (never on the embedded broker);
    `on` always, and TransactionsUnavailableError at start where the cluster cannot."""
    if mode not in EXACTLY_ONCE_MODES:
        raise ValueError(f"exactly_once must be one of {EXACTLY_ONCE_MODES}, got {mode!r}")
    if mode == "off":
        return msgspec.structs.replace(settings, exactly_once=False)
    if embedded:
        if mode == "on":
            raise TransactionsUnavailableError(
                "exactly_once = on, but the embedded broker (tansu) has no usable "
                "transactions; run against Apache Kafka (--bootstrap HOST:PORT), or set "
                "DCCGATE_EXACTLY_ONCE=auto or off"
            )
        return msgspec.structs.replace(settings, exactly_once=False)
    why_not = await probe_transactions(settings)
    if why_not is None:
        log.info("exactly-once on: %s supports transactions", settings.bootstrap)
        return msgspec.structs.replace(settings, exactly_once=True)
    if mode == "on":
        raise TransactionsUnavailableError(
            f"exactly_once = on, but {settings.bootstrap} does not support transactions "
            f"({why_not}); use a broker that does (Apache Kafka 0.11 or later), or set "
            "DCCGATE_EXACTLY_ONCE=auto or off"
        )
    log.warning(
        "exactly-once off: %s does not support transactions (%s); at-least-once, with the "
        "duplicate window of docs/operations.md",
        settings.bootstrap,
        why_not,
    )
    return msgspec.structs.replace(settings, exactly_once=False)


class PartitionProducers:
    """One transactional producer per assigned input partition of consumer group
    `group_id`; `partitions` are the output topics' partition counts."""

    def __init__(
        self, settings: KafkaSettings, group_id: str, partitions: Mapping[str, int]
    ) -> None:
        self._settings = settings
        self.group_id = group_id
        self._partitions = dict(partitions)
        self._producers: dict[TopicPartition, BatchProducer] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self._producers

    def get(self, tp: TopicPartition) -> BatchProducer:
        """The producer of input partition `tp` (BrokerError if it is not open)."""
        producer = self._producers.get(tp)
        if producer is None:
            raise BrokerError(f"no transactional producer for {tp}: it is not assigned here")
        return producer

    @property
    def open_partitions(self) -> frozenset[TopicPartition]:
        return frozenset(self._producers)

    async def assign(self, assigned: Iterable[TopicPartition]) -> None:
        """Close the producers of partitions no longer assigned; open and register one for
        each newly assigned partition (which fences its previous owner, and waits until
        any transaction that owner left open is finished)."""
        wanted = frozenset(assigned)
        await self.close(self.open_partitions - wanted)
        new = [tp for tp in sorted(wanted - self.open_partitions) if tp not in self._producers]
        opened = await asyncio.gather(*(self._open(tp) for tp in new), return_exceptions=True)
        failure: BaseException | None = None
        for tp, result in zip(new, opened, strict=True):
            if isinstance(result, BatchProducer):
                self._producers[tp] = result
            elif failure is None:
                failure = result
        if failure is not None:
            raise failure

    async def _open(self, tp: TopicPartition) -> BatchProducer:
        producer = BatchProducer(
            self._settings, transactional_id=transactional_id(self.group_id, tp)
        )
        producer.adopt(self._partitions)
        await producer.start()
        try:
            await producer.init_transactions()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def close(self, partitions: Iterable[TopicPartition]) -> None:
        """Close the producers of `partitions` (after their transactions are finished)."""
        closing = [self._producers.pop(tp) for tp in list(partitions) if tp in self._producers]
        results = await asyncio.gather(*(p.stop() for p in closing), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            if isinstance(result, Exception):
                log.warning("closing a transactional producer: %r", result)

    async def close_all(self) -> None:
        """Close every producer."""
        await self.close(self.open_partitions)
