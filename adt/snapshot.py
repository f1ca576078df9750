"""A User's ADT counters as a record, so they survive a router crash or a rebalance.

After each batch the router writes `encode_snapshot(snapshot)` for each (srv, snapshot) of
`engine.snapshot_changed(user, now_s)` (the windows of one key it counted under) to a
compacted state topic keyed `USER/SRV`, and on partition assignment calls
`engine.restore_user` with the windows of each key's newest snapshot together before it
processes that User's requests: a User cannot pass a threshold by causing a restart. A
snapshot of all of a User's windows (`snapshot_user`, as older routers wrote under the
User ID) restores the same way. Requests counted after the last snapshot written before a
crash are lost from the counts, so a User can exceed a threshold by at most what it sends
in one snapshot interval; snapshot at least once per batch the keys the batch counted
under.

JSON, like every record dccgate writes. Buckets are sparse (non-empty only), so an idle
window costs a few bytes; a busy one is written whole (`WindowSnapshot.counts`, 1, 2 or 4
bytes a bucket), which costs less to write than a pair per bucket.

The router writes these records through `engine.encode_changed` (adt/key_records.py), which
builds `KeyRecord`/`WindowRecord` (the same fields, so the same bytes) straight from the
windows and encodes them with `encode_record`: byte for byte `encode_snapshot` of what
`snapshot_changed` returns, so `decode_snapshot`, and routers of every earlier version,
read them as before.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from adt.errors import SnapshotError

__all__ = [
    "KeyRecord",
    "UserCountersSnapshot",
    "WindowRecord",
    "WindowSnapshot",
    "decode_snapshot",
    "encode_record",
    "encode_snapshot",
]


class WindowSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One counter: srv (or "*"), window length, newest bucket index and its counts.

    head: floor(t * buckets_per_window / window_s) for the last time counted.
    buckets: (bucket index, count) pairs, each index in head - buckets_per_window .. head.
    counts: the same counts for a busy window, written instead of `buckets` when more than
    a few buckets hold counts: every bucket from head - buckets_per_window to head, oldest
    first, as unsigned little-endian integers of 1, 2 or 4 bytes each (the length says
    which; base64 in JSON). Empty otherwise. Added after `buckets`: a reader that predates
    it sees an empty window.
    """

    srv: str
    window_s: Annotated[int, Meta(ge=1)]
    head: int
    buckets: tuple[tuple[int, Annotated[int, Meta(ge=0)]], ...] = ()
    counts: bytes = b""


class UserCountersSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Every count window of one User (its own thresholds; DCC-wide counts are per router).

    taken_at_s: the time given to `snapshot_user`, epoch seconds.
    """

    user_id: str
    buckets_per_window: Annotated[int, Meta(ge=1)]
    taken_at_s: float
    windows: tuple[WindowSnapshot, ...] = ()


class WindowRecord(msgspec.Struct, gc=False):
    """A `WindowSnapshot` as the router writes it: the same fields in the same order, so
    the same bytes, but built positionally and not tracked by the garbage collector (safe:
    strings, ints, bytes and tuples of ints make no reference cycle; the router builds about
    three a request). Write-only: records are read as `UserCountersSnapshot`."""

    srv: str
    window_s: int
    head: int
    buckets: tuple[tuple[int, int], ...] = ()
    counts: bytes = b""


class KeyRecord(msgspec.Struct, gc=False):
    """A `UserCountersSnapshot` of one key's windows as the router writes it (see
    `WindowRecord`): `encode_record` gives the bytes `encode_snapshot` gives for the
    snapshot with the same fields (tests/unit/adt/test_adt_key_records.py checks it)."""

    user_id: str
    buckets_per_window: int
    taken_at_s: float
    windows: list[WindowRecord]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserCountersSnapshot)

encode_record = _encoder.encode
"""`KeyRecord` as JSON bytes, byte for byte `encode_snapshot` of the same snapshot."""


def encode_snapshot(snapshot: UserCountersSnapshot) -> bytes:
    """`snapshot` as JSON bytes."""
    return _encoder.encode(snapshot)


def decode_snapshot(data: bytes) -> UserCountersSnapshot:
    """Decode `encode_snapshot` output; raise SnapshotError if it is not a snapshot."""
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SnapshotError(
            f"not an ADT counter snapshot: {exc}; start this User's counters empty"
        ) from exc
