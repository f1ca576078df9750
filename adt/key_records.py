"""The records of a User's changed keys, written straight from their windows.

After each batch the router writes, for each key the batch counted under, a snapshot of
that key's windows (workers/router/adt_state.py). `AdtEngine.snapshot_changed` builds them
as `UserCountersSnapshot` objects, one `WindowSnapshot` per window, each from
`SlidingWindow.snapshot_compact`, and `encode_snapshot` turns them into bytes: about 0.9
keys a request at a router's rate, three windows each, so that path was the largest single
cost of a router with every check on. `encode_keys` gives the same bytes (byte for byte:
tests/unit/adt/test_adt_key_records.py checks them against that path on random histories)
and leaves the windows as that path leaves them, in one pass over each key's windows:

- a key whose time is still in the newest bucket of every window (`now` below the key's
  `hi`; the usual case within a batch) moves no window on: its held-back requests
  (`pending`) are read as part of the newest bucket, not added first; otherwise the key's
  held-back and logged requests are added and each window moved on to `now` first, as
  `snapshot_compact` would;
- a window whose counts sit in its few newest buckets (every count of a key busy only
  lately: at a router's rate, nearly every window) is written as those (bucket, count)
  pairs, found by reading back from the newest until they hold the window's total, with no
  scan and no call; any other window is written from `SlidingWindow.snapshot_compact`;
- the records are `KeyRecord`/`WindowRecord` (the fields of the snapshot Structs, built
  positionally, untracked by the garbage collector), encoded by msgspec in one call a key.

The fields of the windows are read directly (as `WindowSet` does, in adt.windows): this
loop runs once per changed key, so a method call per window would be a good part of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from adt.counters import KeyCounts
from adt.snapshot import KeyRecord, WindowRecord, encode_record

__all__ = ["encode_keys"]

# Buckets read one by one back from the newest before `snapshot_compact` is asked: as many as
# `SlidingWindow._pairs` reads, and no more than the 8 pairs `snapshot_compact` writes as such.
_RECENT = 4


def encode_keys(
    user_id: str, buckets: int, now_s: float, keys: Iterable[KeyCounts]
) -> list[tuple[str, bytes]]:
    """(srv, record bytes) of each of `keys` (a User's; windows of `buckets` buckets each)
    at `now_s`: for each, `encode_snapshot` of the snapshot `snapshot_changed` gives. Takes
    the keys' `dirty` marks off (the caller clears the list they came from).

    A record may hold no window (every count has left its window): it still replaces the
    key's earlier one.
    """
    x = now_s * buckets  # every window of an engine has its `buckets`
    out: list[tuple[str, bytes]] = []
    for key in keys:
        key.dirty = False
        srv = key.rules[0].srv
        windows: list[WindowRecord] = []
        if 0 <= x < key.hi:
            # Time is in the newest bucket of every window, or before it (each window has
            # its array: a key without one, or with requests logged, has the span (0, 0)):
            # nothing moves on, and the held-back requests belong to every window's newest
            # bucket, so they are read with it rather than added first.
            pending = key.pending
        else:
            key.flush()  # the held-back and logged requests into the windows
            pending = 0
        moved = False
        for w in key.windows:
            counts = w._counts
            if counts is None:
                continue  # no count (never in the span above)
            if x >= w._hi:  # time has left its newest bucket (never in the span above)
                w._advance(counts, int(x) // w._window_s)
                moved = True
            total = w._total + pending
            if not total:
                continue  # every count has left the window: not written
            head = w._head
            slot = w._slot
            count = counts[slot] + pending
            left = total - count
            if not left:  # every count in the newest bucket: its one pair
                windows.append(WindowRecord(srv, w._window_s, head, ((head, count),)))
                continue
            # `SlidingWindow._pairs`' first look, inlined: back from the newest bucket until
            # the buckets seen hold the whole total; they are then the only non-empty ones,
            # at most _RECENT, so `snapshot_compact` would write them as these pairs too.
            found = [(head, count)] if count else []  # the newest bucket may be empty
            for back in range(1, min(_RECENT, w._size)):
                count = counts[slot - back]  # a negative index wraps round the ring
                if count:
                    found.append((head - back, count))
                    left -= count
                    if not left:
                        break
            if not left:
                found.reverse()  # oldest first
                windows.append(WindowRecord(srv, w._window_s, head, tuple(found)))
                continue
            if pending:  # the windows read so far counted them; the rest read them added
                key.flush()
                pending = 0
            head, pairs, compact = w.snapshot_compact(now_s)
            windows.append(WindowRecord(srv, w._window_s, head, pairs, compact))
        if moved:
            key.respan()  # as `snapshot_compact` moving a window on would want
        out.append((srv, encode_record(KeyRecord(user_id, buckets, now_s, windows))))
    return out
