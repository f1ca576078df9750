"""Which input offsets are still undelivered, per partition (pure bookkeeping).

At-least-once: the deliverer may commit an input offset only when every answer before it
in that partition has been delivered or dead-lettered. Answers of different Users finish
out of order; the ledger remembers the offsets still held and answers the lowest one per
partition, which is where the commit must stop (`workers.runtime.loop.HoldingProcessor`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["OffsetLedger"]

P = TypeVar("P")
"""A partition id (the service uses `broker.consumer.TopicPartition`)."""


class OffsetLedger(Generic[P]):
    """Offsets held per partition; each is held once, in increasing order per partition,
    and released in any order. Costs O(1) amortised per offset."""

    def __init__(self) -> None:
        self._held: dict[P, deque[int]] = {}
        self._released: dict[P, set[int]] = {}

    def hold(self, partition: P, offset: int) -> None:
        """Hold `offset`; it must be above every offset held before on `partition`."""
        held = self._held.setdefault(partition, deque())
        if held and offset <= held[-1]:
            raise ValueError(
                f"offset {offset} held after {held[-1]} on {partition!r}: offsets must be "
                "held in increasing order"
            )
        held.append(offset)

    def release(self, partition: P, offset: int) -> bool:
        """Release a held `offset`; False if it was not held (e.g. its partition was
        dropped meanwhile)."""
        held = self._held.get(partition)
        if not held or offset < held[0]:
            return False
        released = self._released.setdefault(partition, set())
        if offset in released:
            return False
        released.add(offset)
        while held and held[0] in released:
            released.discard(held.popleft())
        if not held:
            del self._held[partition]
            self._released.pop(partition, None)
        return True

    def floors(self) -> Mapping[P, int]:
        """Per partition with anything held, the lowest offset still held."""
        return {partition: held[0] for partition, held in self._held.items()}

    def count(self) -> int:
        """Offsets held and not released, over every partition."""
        return sum(len(h) - len(self._released.get(p, ())) for p, h in self._held.items())

    def drop(self, partitions: Iterable[P]) -> None:
        """Forget `partitions` (revoked: their next owner reads them again)."""
        for partition in partitions:
            self._held.pop(partition, None)
            self._released.pop(partition, None)
