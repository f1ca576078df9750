"""Keeps the configuration current from `dcc.control`.

Every worker runs one: the topic (one partition) is read from its first record on every
start; the embedded broker does not compact, so the reader keeps the last value per key
itself (on Apache Kafka compaction only makes the read shorter). After each fetched batch
a new snapshot is published at once, so a change is in force on every worker within a
fetch wait (50-100 ms) of being written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from broker.consumer import Record
from broker.follower import TopicFollower
from broker.settings import KafkaSettings
from workers.config.snapshot import EMPTY, ConfigSnapshot, ConfigState

__all__ = ["ControlReader"]

log = logging.getLogger(__name__)

Listener = Callable[[ConfigSnapshot], None]


class ControlReader:
    """Folds `topic` into a ConfigState; `snapshot` is always the latest applied view.

    Listeners are called with each new snapshot, synchronously in the event loop: they
    swap their tables whole and return.
    """

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._state = ConfigState()
        self.snapshot: ConfigSnapshot = EMPTY
        self._listeners: list[Listener] = []
        self._follower = TopicFollower(settings, topic, self._apply, name="control")
        self.records_applied = 0

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with every new snapshot (and now, with the current one)."""
        self._listeners.append(listener)
        listener(self.snapshot)

    @property
    def caught_up(self) -> bool:
        """True once the configuration written before the start is applied."""
        return self._follower.caught_up

    @property
    def problem(self) -> str | None:
        """Why `dcc.control` cannot be followed now, or None."""
        return self._follower.problem

    async def start(self) -> None:
        """Start following in the background."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following."""
        await self._follower.stop()

    async def wait_caught_up(self, timeout_s: float = 30.0) -> None:
        """Wait until the configuration written before the start is applied."""
        await self._follower.wait_caught_up(timeout_s)

    async def wait_applied(self, offset: int, timeout_s: float = 5.0) -> None:
        """Wait until the record at `offset` is applied (read-your-writes)."""
        await self._follower.wait_offset(0, offset, timeout_s)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            self._state.apply(rec.key, rec.value, rec.offset)
        self.records_applied += len(records)
        self.snapshot = snapshot = self._state.snapshot()
        for listener in self._listeners:
            try:
                listener(snapshot)
            except Exception:
                # A service that cannot take this configuration keeps its previous one.
                log.exception("applying configuration at offset %d failed", snapshot.offset)
