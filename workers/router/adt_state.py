"""The router's ADT counters on `dcc.state.router`, so they move with a User's partition.

SEC G6 asks that a User cannot pass a threshold by making a router restart. The counters of
a User live on the router that owns the User's partition of `dcc.sr.inbound`; this module
makes them survive that router:

- **Write.** After deciding a batch, the router snapshots the count windows of every User
  with ADT values of its own that the batch touched (`AdtEngine.snapshot_user`) and adds the
  snapshot to the batch's outputs on `dcc.state.router`, key the User ID, partition = the
  User's input partition (the two topics are co-partitioned). The snapshot is acknowledged
  with the batch's forwards and answers, before its input offsets are committed.
- **Releases.** A request released from quarantine is processed, so it counts: the router
  follows `dcc.sr.quarantine` (from its start time on) and, for a `released` event of a User
  whose partition it owns, counts it at the time it sees it (`AdtEngine.record_released`)
  and snapshots that User with the next batch.
- **Restore.** When partitions are assigned, before their first record is decided, the
  router replays the same partitions of `dcc.state.router` and restores each User's newest
  snapshot (`AdtEngine.restore_user`). On revocation it forgets those Users' counts.

The bound, exactly. Every batch's snapshot is acknowledged before its offsets are committed,
so after a crash the new owner restores counts that include every committed request, and
the requests of the uncommitted batches (at most `max_batches_in_flight` x
`max_poll_records`) are redone on top: they may be counted twice, never zero times. A User
therefore never gains room from a crash; it may lose some (quarantined a little early) for
the rest of the window. DCC-wide counts are not in these snapshots: they are each router's
own, shared on `dcc.load` (workers/router/traffic.py).

On Apache Kafka the topic is compacted, so a restore reads about one snapshot per User. The
embedded broker does not compact: a restore reads every snapshot ever written to the
partitions and keeps the newest per User, which is correct but grows with the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from adt import (
    Released,
    SnapshotError,
    UserCountersSnapshot,
    decode_snapshot,
    encode_snapshot,
)
from broker.consumer import Record, TopicPartition
from broker.producer import OutputBatch, partition_for_key
from broker.replay import replay_partitions
from broker.settings import KafkaSettings
from workers.router.adt import AdtControl

__all__ = ["AdtStateStore"]

log = logging.getLogger(__name__)


class AdtStateStore:
    """Writes and restores the ADT counters of the Users whose partitions this router owns.

    Parameters:
        kafka: client settings (the restore reads with its own short-lived consumer).
        input_topic: `dcc.sr.inbound` (with prefix); only its partitions are restored.
        state_topic: `dcc.state.router` (with prefix).
        adt: the router's engine and configuration.
    """

    def __init__(
        self, kafka: KafkaSettings, input_topic: str, state_topic: str, adt: AdtControl
    ) -> None:
        self._kafka = kafka
        self._input = input_topic
        self.topic = state_topic
        self._adt = adt
        # User -> input partition, for the Users whose counts this router holds.
        self._owned: dict[str, int] = {}
        # Users whose counts changed outside a batch (a release) and want a snapshot.
        self._dirty: dict[str, int] = {}
        # Input partitions this router owns now.
        self.assigned: frozenset[int] = frozenset()
        self.restored_users = 0
        self.restore_errors = 0
        self.releases_counted = 0
        self.snapshots_written = 0

    # --- write ----------------------------------------------------------------------------

    def mark(self, user_id: str, partition: int) -> None:
        """The User's counts changed outside a batch; snapshot it with the next batch."""
        self._dirty[user_id] = partition

    def write(self, out: OutputBatch, touched: dict[str, int], now_s: float) -> int:
        """Add a snapshot of each User in `touched` (User -> input partition) with values
        of its own to `out`; return how many were added."""
        if self._dirty:
            touched = {**self._dirty, **touched}
            self._dirty = {}
        if not touched:
            return 0  # the usual batch without ADT Users: no per-batch lists for the topic
        engine = self._adt.engine
        lists = out.partition_lists(self.topic)
        n = 0
        for user_id, partition in touched.items():
            snapshot = engine.snapshot_user(user_id, now_s)
            if snapshot is None:
                continue
            key = user_id.encode()
            p = partition if partition < len(lists) else partition_for_key(key, len(lists))
            lists[p].append((key, encode_snapshot(snapshot), (), None))
            self._owned[user_id] = partition
            n += 1
        self.snapshots_written += n
        return n

    # --- restore and forget ---------------------------------------------------------------

    async def on_assign(self, partitions: frozenset[TopicPartition]) -> None:
        """Restore the newest snapshot of every User on the assigned input partitions."""
        numbers = sorted(tp.partition for tp in partitions if tp.topic == self._input)
        self.assigned = self.assigned | frozenset(numbers)
        if not numbers:
            return
        newest: dict[str, tuple[int, bytes]] = {}

        def keep(records: list[Record]) -> None:
            for rec in records:
                if rec.key is None or rec.value is None:
                    continue
                newest[rec.key.decode(errors="replace")] = (rec.partition, rec.value)

        read = await replay_partitions(self._kafka, self.topic, numbers, keep, name="adt-state")
        restored = self.restore(newest.items())
        log.info(
            "ADT counters: restored %d Users from %d snapshots on %s partitions %s",
            restored,
            read,
            self.topic,
            numbers,
        )

    def restore(self, snapshots: Iterable[tuple[str, tuple[int, bytes]]]) -> int:
        """Restore (User, (partition, snapshot bytes)) pairs; return how many Users had
        counters restored. A corrupt snapshot is logged and that User starts empty."""
        engine = self._adt.engine
        restored = 0
        for user_id, (partition, value) in snapshots:
            try:
                snapshot: UserCountersSnapshot = decode_snapshot(value)
                if snapshot.user_id != user_id:
                    raise SnapshotError(
                        f"the snapshot under key {user_id} is of User {snapshot.user_id}"
                    )
                if engine.restore_user(snapshot):
                    restored += 1
                    self._owned[user_id] = partition
            except SnapshotError as exc:
                self.restore_errors += 1
                log.error("ADT counters of User %s not restored: %s", user_id, exc)
        self.restored_users += restored
        return restored

    async def on_revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """Forget the counts of the Users on the revoked input partitions (their next
        owner restores them from the snapshots)."""
        gone = {tp.partition for tp in partitions if tp.topic == self._input}
        self.assigned = self.assigned - gone
        for user_id, partition in list(self._owned.items()):
            if partition in gone:
                self._adt.engine.forget_user(user_id)
                del self._owned[user_id]
                self._dirty.pop(user_id, None)

    # --- releases -------------------------------------------------------------------------

    def on_quarantine_log(self, records: list[Record], now_s: float) -> int:
        """Count the released requests among `records` of `dcc.sr.quarantine` whose User is
        on a partition this router owns (the quarantine log is keyed by User ID, like
        `dcc.sr.inbound`); return how many were counted."""
        engine = self._adt.engine
        counted = 0
        for rec in records:
            value = rec.value
            if value is None or _RELEASED not in value or rec.partition not in self.assigned:
                continue
            try:
                event = _decode_released(value)
            except msgspec.DecodeError:
                continue  # not a release (the quarantine service dead-letters nothing here)
            if event.user_id is None or event.srv is None:
                continue  # written before releases carried them
            engine.record_released(event.user_id, event.srv, now_s)
            self.mark(event.user_id, rec.partition)
            counted += 1
        self.releases_counted += counted
        return counted


_RELEASED = b'"event":"released"'
_decode_released = msgspec.json.Decoder(Released).decode
