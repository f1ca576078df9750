"""Actuals: how many Service Requests each User sent, per month, SRV and outcome, counted
from the router's answers on `dcc.user.responses` (SEC H3.24).

What is counted: each answer whose outcome is a *first decision* on a request: `accepted`,
`rejected`, `throttled` or `quarantined` (docs/contract.md). `released` (Q4) and `deleted`
(Q5) follow a `quarantined` answer for the same request and are not counted again. A request
the User sends again after `throttled` is a new request and counts again: the User sent it.
The month is the UTC month of the answer's `at_ms`; the SRV comes from the answer's
`dccgate-srv` header, and one outside the DUIS catalogue (or missing) counts as `other`.
Only Users registered when the answer is read are counted: an ID that was never a User has
no report, and counting it would let a sender grow the state without bound.

Durability: `ActualsBook` folds answers, and `dirty_records()` turns the counts that changed
into records for the compacted `dcc.state.actuals` (key `<user_id>/<YYYY-MM>`), each carrying
`through`, the next input offset per partition of `dcc.user.responses` that its counts
include. A `checkpoint` record, written only once those are acknowledged, says where to resume
reading. On restart the book is restored from the state topic, the input is read from the
checkpoint on, and an answer at an offset a key's record already includes is skipped: nothing
is counted twice and nothing is missed (docs/forecasts.md, "How actuals survive").

Pure: no I/O; the service (actuals_service.py) does the reading and writing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Annotated, Final

import msgspec
from msgspec import Meta, Struct

from broker.consumer import Record
from broker.schemas import UserResponse
from workers.config.model import MONTH_PATTERN, USER_ID_PATTERN
from workers.config.months import month_of_ms
from workers.runtime.headers import SRV_HEADER

__all__ = [
    "CHECKPOINT_KEY",
    "COUNTED_OUTCOMES",
    "OTHER_SRV",
    "ActualsBook",
    "ActualsRecord",
    "Checkpoint",
    "MonthCounts",
    "total_sent",
]

log = logging.getLogger(__name__)

COUNTED_OUTCOMES: Final = ("accepted", "rejected", "throttled", "quarantined")
"""The outcomes of a first decision on a request: each answer with one counts once."""
OTHER_SRV: Final = "other"
CHECKPOINT_KEY: Final = "checkpoint"
_COUNTED = frozenset(COUNTED_OUTCOMES)
_USER_ID_RE = re.compile(USER_ID_PATTERN)
_MONTH_RE = re.compile(MONTH_PATTERN)
_Offset = Annotated[int, Meta(ge=0)]
_Count = Annotated[int, Meta(ge=0)]

MonthCounts = dict[str, dict[str, int]]
"""SRV -> outcome -> requests."""


class ActualsRecord(Struct, frozen=True, kw_only=True):
    """One User's counts for one month on `dcc.state.actuals` (key `<user_id>/<YYYY-MM>`)."""

    user_id: Annotated[str, Meta(pattern=USER_ID_PATTERN)]
    month: Annotated[str, Meta(pattern=MONTH_PATTERN)]
    counts: dict[Annotated[str, Meta(max_length=16)], dict[str, _Count]]
    through: dict[int, _Offset]
    """Partition of dcc.user.responses -> the next offset: the counts include every answer
    before it."""
    at_ms: _Offset


class Checkpoint(Struct, frozen=True, kw_only=True):
    """Where to resume reading dcc.user.responses (key `checkpoint`): every key's record
    with answers before these offsets is on the topic."""

    through: dict[int, _Offset]
    at_ms: _Offset


_decode_record = msgspec.json.Decoder(ActualsRecord).decode
_decode_checkpoint = msgspec.json.Decoder(Checkpoint).decode
_decode_answer = msgspec.json.Decoder(UserResponse).decode
_encode = msgspec.json.Encoder().encode


def _srv_of(headers: Sequence[tuple[str, bytes]], catalogue: Container[str]) -> str:
    for name, value in headers:
        if name == SRV_HEADER:
            try:
                srv = value.decode()
            except UnicodeDecodeError:
                return OTHER_SRV
            return srv if srv in catalogue else OTHER_SRV
    return OTHER_SRV


class ActualsBook:
    """The counts per (User, month), folded from answers and restored from the state topic.

    catalogue: the SRVs counted by name (others are `other`).
    is_user: whether a User ID is registered now (answers for others are not counted).
    forecast_has: whether (user_id, month, srv) has a forecast in force now; a request
    counted without one adds to `unforecast[user_id]` (default: never counted).
    """

    def __init__(
        self,
        catalogue: Container[str],
        is_user: Callable[[str], bool],
        forecast_has: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._is_user = is_user
        self._forecast_has = forecast_has
        self.unforecast: dict[str, int] = {}
        """User ID -> requests counted (since this process started) that had no forecast
        for their month and SRV when they were counted."""
        self.counts: dict[tuple[str, str], MonthCounts] = {}
        self._included: dict[tuple[str, str], dict[int, int]] = {}
        self.position: dict[int, int] = {}
        """Partition -> the next offset to read (the checkpoint, then what was applied)."""
        self._dirty: set[tuple[str, str]] = set()
        self.restored_records = 0
        self.skipped_state_records = 0
        self.counted = 0
        self.already_counted = 0
        self.ignored: dict[str, int] = {}
        """Answers read but not counted, by reason (later_answer, unregistered, unreadable)."""

    # -- restore ---------------------------------------------------------------------------

    def restore(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of `dcc.state.actuals` (in log order)."""
        try:
            k = (key or b"").decode()
            if value is None:
                return
            if k == CHECKPOINT_KEY:
                self.position = dict(_decode_checkpoint(value).through)
                return
            record = _decode_record(value)
            if k != f"{record.user_id}/{record.month}":
                raise ValueError(f"key {k!r} does not match the record")
        except (UnicodeDecodeError, msgspec.DecodeError, ValueError) as exc:
            self.skipped_state_records += 1
            log.warning("dcc.state.actuals: a record was skipped: %s", exc)
            return
        slot = (record.user_id, record.month)
        self.counts[slot] = {srv: dict(by) for srv, by in record.counts.items()}
        self._included[slot] = dict(record.through)
        self.restored_records += 1

    # -- counting --------------------------------------------------------------------------

    def apply(self, records: Sequence[Record]) -> None:
        """Count the answers in `records` (of dcc.user.responses, in offset order per
        partition) that a key's restored counts do not include yet."""
        for rec in records:
            self.position[rec.partition] = rec.offset + 1
            self._count(rec)

    def _ignore(self, why: str) -> None:
        self.ignored[why] = self.ignored.get(why, 0) + 1

    def _count(self, rec: Record) -> None:
        value = rec.value
        if value is None:
            self._ignore("unreadable")
            return
        try:
            answer = _decode_answer(value)
            month = month_of_ms(answer.at_ms)
        except (msgspec.DecodeError, ValueError, OverflowError, OSError):
            self._ignore("unreadable")
            return
        if answer.outcome not in _COUNTED:
            self._ignore("later_answer")
            return
        user_id = answer.user_id
        if not _USER_ID_RE.fullmatch(user_id) or not self._is_user(user_id):
            self._ignore("unregistered")
            return
        slot = (user_id, month)
        included = self._included.get(slot)
        if included is not None and rec.offset < included.get(rec.partition, 0):
            self.already_counted += 1  # in the restored counts already
            return
        srv = _srv_of(rec.headers, self._catalogue)
        by_outcome = self.counts.setdefault(slot, {}).setdefault(srv, {})
        by_outcome[answer.outcome] = by_outcome.get(answer.outcome, 0) + 1
        self._dirty.add(slot)
        self.counted += 1
        if self._forecast_has is not None and not self._forecast_has(user_id, month, srv):
            self.unforecast[user_id] = self.unforecast.get(user_id, 0) + 1

    # -- persisting ------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """True when some counts changed since the last `dirty_records()`."""
        return bool(self._dirty)

    def dirty_records(self, now_ms: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The state records of the counts changed since the last call, and the checkpoint
        record to write once they are all acknowledged. Call `mark_dirty` with the slots if
        writing fails."""
        through = dict(self.position)
        out = []
        for slot in sorted(self._dirty):
            user_id, month = slot
            record = ActualsRecord(
                user_id=user_id,
                month=month,
                counts=self.counts[slot],
                through=through,
                at_ms=now_ms,
            )
            self._included[slot] = through
            out.append((f"{user_id}/{month}".encode(), _encode(record)))
        self._dirty.clear()
        return out, _encode(Checkpoint(through=through, at_ms=now_ms))

    def mark_dirty(self, keys: Sequence[bytes]) -> None:
        """Write these keys again with the next `dirty_records()` (their write failed)."""
        for key in keys:
            user_id, _, month = key.decode().partition("/")
            self._dirty.add((user_id, month))

    # -- reading ---------------------------------------------------------------------------

    def month(self, month: str) -> dict[str, MonthCounts]:
        """Every User's counts for `month` (YYYY-MM), by User ID (copies)."""
        return {
            user: {srv: dict(by) for srv, by in counts.items()}
            for (user, m), counts in self.counts.items()
            if m == month
        }

    def of(self, user_id: str, month: str) -> MonthCounts:
        """One User's counts for `month` (a copy; empty when it sent nothing)."""
        counts = self.counts.get((user_id, month), {})
        return {srv: dict(by) for srv, by in counts.items()}

    def months(self) -> list[str]:
        """Every month with counts, oldest first."""
        return sorted({m for _, m in self.counts if _MONTH_RE.fullmatch(m)})


def total_sent(counts: Mapping[str, Mapping[str, int]]) -> int:
    """All requests in `counts` (every SRV, every counted outcome)."""
    return sum(n for by in counts.values() for o, n in by.items() if o in _COUNTED)
