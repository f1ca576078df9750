"""The router's state on `dcc.state.router`, so it moves with a User's partition: the ADT
counters (SEC G6) and the anti-replay memory (DUIS RequestID counters).

SEC G6 asks that a User cannot pass a threshold by making a router restart. The counters of
a User live on the router that owns the User's partition of `dcc.sr.inbound`; this module
makes them survive that router:

- **Write.** After deciding a batch, the router snapshots the count windows of every key
  the batch counted under: a (User, SRV) or a (User, "*") with thresholds of the User's own
  (`AdtEngine.encode_changed`: the bytes `encode_snapshot` gives for each snapshot of
  `snapshot_changed`, built straight from the windows, adt/key_records.py), and adds each
  snapshot to the batch's outputs on
  `dcc.state.router`, key `USER/SRV` (e.g. `90-B3-D5-1F-30-01-00-00/7.2`, or `.../*`),
  partition = the User's input partition (the two topics are co-partitioned). The
  snapshots are acknowledged with the batch's forwards and answers, before its input
  offsets are committed. Per key, not per User: a batch costs what it counted, however many
  keys the User has (a User with windows on 130 keys and one request per batch would
  otherwise have every router write all 130 after every batch).
- **Releases.** A request released from quarantine is processed, so it counts: the router
  follows `dcc.sr.quarantine` (from its start time on) and, for a `released` event of a User
  whose partition it owns, counts it at the time it sees it (`AdtEngine.record_released`)
  and snapshots that User with the next batch.
- **Restore.** When partitions are assigned, before their first record is decided, the
  router replays the same partitions of `dcc.state.router` and restores, per User, the
  newest snapshot of each of its keys (`AdtEngine.restore_user`). On revocation it forgets
  those Users' counts.
- **Older records.** Routers before the per-key records wrote one snapshot per User, key
  the User ID, holding all its windows. They restore as they were written: per SRV, the
  newer of that record and the key's own record (by offset) wins, so an upgrade keeps every
  count. A router of that older version reading the per-key records logs each as "not
  restored" and restores its own per-User records only: after a downgrade, counts are
  those of the last per-User record (a User may gain room; roll forward again, or accept).

The bound, exactly. Every batch's snapshot is acknowledged before its offsets are committed,
so after a crash the new owner restores counts that include every committed request, and
the requests of the uncommitted batches (at most `max_batches_in_flight` x
`max_poll_records`) are redone on top: they may be counted twice, never zero times. A User
therefore never gains room from a crash; it may lose some (quarantined a little early) for
the rest of the window. DCC-wide counts are not in these snapshots: they are each router's
own, shared on `dcc.load` (workers/router/traffic.py).

**Replay memory.** Every request the router accepts or quarantines adds one record, key
`USER:TARGET` (the RequestID's pair), value the COUNTER in ASCII digits, to the same batch on
the User's partition; a User's book that forgets targets (`workers.duis.ReplayBook`) adds a
tombstone per forgotten pair and its floor under key `USER:*`. On assignment the pairs and
floors of the assigned partitions are restored before the first request is decided, so a
captured request is refused after a crash or a rebalance as before it; on revocation the
books of those Users are dropped. The bound is the one above: a crash redoes the uncommitted
batches, whose requests were recorded, so they are refused as replays the second time (the
User gets a second answer, the device no second request).

Keys tell the records apart: an ADT snapshot's key is `USER/SRV` (or the User ID alone,
written by older routers), a replay record's holds a colon. On Apache Kafka the topic is
compacted, so a restore reads about one snapshot per key a User counted under in the last
31 days and one record per remembered pair. The embedded broker does not compact: a restore
reads every record ever written to the partitions and keeps the newest per key, which is
correct but grows with the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from adt import (
    Released,
    SnapshotError,
    UserCountersSnapshot,
    WindowSnapshot,
    decode_snapshot,
)
from broker.consumer import Record, TopicPartition
from broker.follower import partition_counts
from broker.producer import OutputBatch, OutputRecord, partition_for_key
from broker.replay import replay_partitions
from broker.settings import KafkaSettings
from workers.duis import DuisValidator
from workers.router.adt import AdtControl

__all__ = ["FLOOR_SUFFIX", "KEY_SRV_SEPARATOR", "AdtStateStore"]

log = logging.getLogger(__name__)

FLOOR_SUFFIX = ":*"
"""`USER:*` keys a User's replay floor on the state topic."""

KEY_SRV_SEPARATOR = "/"
"""`USER/SRV` keys the snapshot of one key's ADT windows on the state topic."""


class AdtStateStore:
    """Writes and restores the ADT counters of the Users whose partitions this router owns.

    Parameters:
        kafka: client settings (the restore reads with its own short-lived consumer).
        input_topic: `dcc.sr.inbound` (with prefix); only its partitions are restored.
        state_topic: `dcc.state.router` (with prefix).
        adt: the router's engine and configuration.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        input_topic: str,
        state_topic: str,
        adt: AdtControl,
        validator: DuisValidator | None = None,
    ) -> None:
        self._kafka = kafka
        self.validator = validator
        self._input_partitions = 0
        self.restored_pairs = 0
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
        """Add a snapshot of each key counted under since the last write, of the Users in
        `touched` (User -> input partition), to `out`; return how many were added."""
        if self._dirty:
            touched = {**self._dirty, **touched}
            self._dirty = {}
        if not touched:
            return 0  # the usual batch without ADT Users: no per-batch lists for the topic
        engine = self._adt.engine
        lists: list[list[OutputRecord]] | None = None
        n = 0
        for user_id, partition in touched.items():
            changed = engine.encode_changed(user_id, now_s)  # encode_snapshot's bytes
            if not changed:
                continue
            if lists is None:
                lists = out.partition_lists(self.topic)
            p = (
                partition
                if partition < len(lists)
                else partition_for_key(user_id.encode(), len(lists))
            )
            append = lists[p].append
            prefix = user_id + KEY_SRV_SEPARATOR
            for srv, value in changed:
                append(((prefix + srv).encode(), value, (), None))
            self._owned[user_id] = partition
            n += len(changed)
        self.snapshots_written += n
        return n

    def write_replay_evictions(self, out: OutputBatch) -> int:
        """Add tombstones for the pairs Users' replay books forgot, and their new floors;
        return how many records were added."""
        validator = self.validator
        if validator is None or not validator.evicting:
            return 0
        lists = out.partition_lists(self.topic)
        n = 0
        for user_id in validator.evicting:
            book = validator.books.get(user_id)
            if book is None:
                continue
            p = partition_for_key(user_id.encode(), len(lists))
            target = lists[p]
            for gone in book.evicted:
                target.append((f"{user_id}:{gone}".encode(), None, (), None))
            target.append(((user_id + FLOOR_SUFFIX).encode(), b"%d" % book.floor, (), None))
            n += len(book.evicted) + 1
            book.evicted = []
        validator.evicting.clear()
        return n

    # --- restore and forget ---------------------------------------------------------------

    async def on_assign(self, partitions: frozenset[TopicPartition]) -> None:
        """Restore the newest snapshot of every User on the assigned input partitions."""
        numbers = sorted(tp.partition for tp in partitions if tp.topic == self._input)
        self.assigned = self.assigned | frozenset(numbers)
        if not numbers:
            return
        if self.validator is not None and not self._input_partitions:
            counts = await partition_counts(self._kafka, [self._input])
            self._input_partitions = counts[self._input]
        newest: dict[str, tuple[int, int, bytes]] = {}  # ADT key -> (partition, offset, value)

        replay: dict[str, bytes] = {}

        def keep(records: list[Record]) -> None:
            for rec in records:
                if rec.key is None:
                    continue
                key = rec.key.decode(errors="replace")
                if ":" in key:  # a replay pair or floor; a tombstone deletes the pair
                    if rec.value is None:
                        replay.pop(key, None)
                    else:
                        replay[key] = rec.value
                elif rec.value is not None:
                    newest[key] = (rec.partition, rec.offset, rec.value)

        read = await replay_partitions(self._kafka, self.topic, numbers, keep, name="adt-state")
        # Oldest first: per SRV, the newer of a User's record and its key's record wins.
        in_order = sorted(newest.items(), key=lambda item: item[1][:2])
        restored = self.restore((key, (p, value)) for key, (p, _, value) in in_order)
        pairs = self.restore_replay(replay)
        log.info(
            "router state: restored the ADT counters of %d Users and %d replay pairs from %d "
            "records on %s partitions %s",
            restored,
            pairs,
            read,
            self.topic,
            numbers,
        )

    def restore_replay(self, records: dict[str, bytes]) -> int:
        """Restore replay floors and pairs (`USER:*` and `USER:TARGET` -> ASCII COUNTER);
        return how many pairs were restored. A record that is not a COUNTER is logged and
        skipped (that pair starts unknown, above its User's floor)."""
        validator = self.validator
        if validator is None:
            return 0
        floors: list[tuple[str, int]] = []
        pairs: list[tuple[str, str, int]] = []
        for key, value in records.items():
            user_id, _, target = key.partition(":")
            try:
                counter = _counter(value)
            except ValueError:
                self.restore_errors += 1
                log.error("replay record %r is not a COUNTER: %r", key[:80], value[:40])
                continue
            if target == "*":
                floors.append((user_id, counter))
            else:
                pairs.append((user_id, target, counter))
        for user_id, floor in floors:
            book = validator.book(user_id)
            book.floor = max(book.floor, floor)
        for user_id, target, counter in pairs:
            validator.book(user_id).restore(target, counter)
        self.restored_pairs += len(pairs)
        return len(pairs)

    def restore(self, snapshots: Iterable[tuple[str, tuple[int, bytes]]]) -> int:
        """Restore (state key, (partition, snapshot bytes)) items, the oldest first; return
        how many Users had counters restored.

        A key is `USER/SRV` (that key's windows) or a User ID (all its windows, written by
        older routers); per User and SRV, the last item wins. A record that cannot be read,
        or is not of the User its key names, is logged and skipped; a User whose windows
        do not restore (corrupt) is logged and starts empty.
        """
        engine = self._adt.engine
        # User -> (partition, srv -> windows, taken_at_s)
        found: dict[str, tuple[int, dict[str, list[WindowSnapshot]], float]] = {}
        for key, (partition, value) in snapshots:
            user_id, _, srv = key.partition(KEY_SRV_SEPARATOR)
            try:
                snapshot: UserCountersSnapshot = decode_snapshot(value)
                if snapshot.user_id != user_id:
                    raise SnapshotError(
                        f"the snapshot under key {key} is of User {snapshot.user_id}"
                    )
                if snapshot.buckets_per_window != engine.buckets_per_window:
                    raise SnapshotError(
                        f"the snapshot under key {key} has {snapshot.buckets_per_window} "
                        f"buckets per window, this router {engine.buckets_per_window}"
                    )
            except SnapshotError as exc:
                self.restore_errors += 1
                log.error("ADT counters of User %s not restored: %s", user_id, exc)
                continue
            _, by_srv, _ = found.get(user_id, (partition, {}, 0.0))
            if not srv:  # a User's record of all its windows: it replaces every SRV's
                by_srv = {}
                for ws in snapshot.windows:
                    by_srv.setdefault(ws.srv, []).append(ws)
            else:
                by_srv[srv] = [ws for ws in snapshot.windows if ws.srv == srv]
            found[user_id] = (partition, by_srv, snapshot.taken_at_s)
        restored = 0
        for user_id, (partition, by_srv, taken_at_s) in found.items():
            merged = UserCountersSnapshot(
                user_id=user_id,
                buckets_per_window=engine.buckets_per_window,
                taken_at_s=taken_at_s,
                windows=tuple(ws for windows in by_srv.values() for ws in windows),
            )
            try:
                if engine.restore_user(merged):
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
        validator = self.validator
        if validator is not None and gone:
            # The books of the Users on those partitions go with them (the new owner
            # restores them); a User's partition is its key's, as the key is its User ID.
            n = self._input_partitions or max(gone) + 1
            for user_id in list(validator.books):
                if partition_for_key(user_id.encode(), n) in gone:
                    validator.forget_user(user_id)
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


_MAX_COUNTER_BYTES = 20


def _counter(value: bytes) -> int:
    """A COUNTER written as ASCII digits (at most 20, as in a RequestID)."""
    if not 0 < len(value) <= _MAX_COUNTER_BYTES or not value.isdigit():
        raise ValueError("not a COUNTER")
    return int(value)


_RELEASED = b'"event":"released"'
_decode_released = msgspec.json.Decoder(Released).decode
