"""The quarantine state machine (SEC G6 (c), Appendix AA): pending -> released | deleted |
expired, each decision final.

```
            release(id, principal)      -> released   (the caller processes the request:
 pending ── delete(id, principal)       -> deleted     Q4; counts it via record_released)
            expire_due(now): too old    -> expired    (the caller answers it as deleted, Q5,
                                                       with the expiry reason)
```

Every change is an event (`Quarantined`, `Released`, `Deleted`, `Expired`). A command
validates, applies its event and returns it; the caller publishes the event to the
quarantine log (one ordered log per User: the quarantine topic keyed by User ID) and, after
a restart, rebuilds the book by `apply`ing the log in order. `apply` is the tolerant
replay path: the first decision in the log wins, and a repeated or late event is ignored
(it returns False), so an at-least-once log replays to the same state.

Bounded: a pending request expires after `pending_max_s`; a decided one is forgotten
`retention_s` after its decision (`prune`). Keep `pending_max_s` below the retention of the
topic that holds the quarantined request's bytes (30 days for `dcc.sr.quarantine`), or a
release would find nothing to process. Appendix AA leaves decisions to the User, by file,
human-paced (DOMAIN.md 5.3): expect minutes to days, hence the defaults (14 and 30 days).

Who may decide (the User for its own requests, or a DCC operator) is checked by the admin
API; `principal` is recorded for the audit trail.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterable
from typing import Literal

import msgspec

from adt.decision import Breach, BreachKind
from adt.errors import AlreadyDecidedError, DuplicateEntryError, UnknownEntryError

__all__ = [
    "DEFAULT_PENDING_MAX_S",
    "DEFAULT_RETENTION_S",
    "BulkResult",
    "Deleted",
    "Expired",
    "QuarantineBook",
    "QuarantineEntry",
    "QuarantineEvent",
    "QuarantineState",
    "Quarantined",
    "Released",
]

DEFAULT_PENDING_MAX_S = 14 * 86_400.0
DEFAULT_RETENTION_S = 30 * 86_400.0

QuarantineState = Literal["pending", "released", "deleted", "expired"]


class QuarantineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One quarantined request and what became of it.

    id: the quarantined request's id (its DUIS request_id). at_s: when quarantined.
    decided_at_s, decided_by: when and by whom it left `pending` (by is None for expiry).
    note: the deletion or expiry reason.
    """

    id: str
    user_id: str
    srv: str
    kind: BreachKind
    rule: str
    reason: str
    at_s: float
    state: QuarantineState = "pending"
    decided_at_s: float | None = None
    decided_by: str | None = None
    note: str = ""


class Quarantined(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="quarantined"):
    """A request entered quarantine."""

    id: str
    user_id: str
    srv: str
    kind: BreachKind
    rule: str
    reason: str
    at_s: float


class Released(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="released"):
    """A quarantined request was released for processing by `by`.

    user_id, srv: whose request and which SRV, so the router that owns the User counts the
    released request in its ADT windows (`AdtEngine.record_released`); None in logs written
    before they were added.
    """

    id: str
    by: str
    at_s: float
    user_id: str | None = None
    srv: str | None = None


class Deleted(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="deleted"):
    """A quarantined request was deleted by `by`."""

    id: str
    by: str
    at_s: float
    note: str = ""


class Expired(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="expired"):
    """A quarantined request waited longer than allowed; the User is told it was deleted."""

    id: str
    at_s: float
    note: str


QuarantineEvent = Quarantined | Released | Deleted | Expired
"""The quarantine log's records; msgspec decodes the union by its `event` tag."""


class BulkResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a bulk release or delete did: the events to publish, and the ids refused."""

    events: tuple[Released | Deleted, ...]
    refused: tuple[tuple[str, str], ...]  # (id, why)


def _duration(seconds: float) -> str:
    for unit_s, unit in ((86_400, "days"), (3_600, "h"), (60, "min")):
        if seconds >= unit_s and seconds % unit_s == 0:
            return f"{seconds / unit_s:g} {unit}"
    return f"{seconds:g} s"


def _describe(entry: QuarantineEntry) -> str:
    by = f" by {entry.decided_by}" if entry.decided_by else ""
    at = entry.decided_at_s
    when = "" if at is None else f" at {_iso(at)}"
    return f"{entry.state}{by}{when}"


def _iso(epoch_s: float) -> str:
    """`epoch_s` as UTC ISO 8601 to the second, as people read it in an error message."""
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class QuarantineBook:
    """The quarantined requests of one quarantine-log partition.

    pending_max_s: a pending request older than this expires, default 14 days.
    retention_s: a decided request is forgotten this long after its decision, default
    30 days (audit lookups and repeated commands are answered until then).
    """

    __slots__ = (
        "_decided_heap",
        "_entries",
        "_pending_heap",
        "_pending_max_s",
        "_pending_n",
        "_retention_s",
    )

    def __init__(
        self,
        *,
        pending_max_s: float = DEFAULT_PENDING_MAX_S,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        if not pending_max_s > 0 or not retention_s >= 0:
            raise ValueError(
                f"pending_max_s must be > 0 and retention_s >= 0 (seconds), got "
                f"pending_max_s={pending_max_s} retention_s={retention_s}"
            )
        self._pending_max_s = pending_max_s
        self._retention_s = retention_s
        self._entries: dict[str, QuarantineEntry] = {}
        # (at_s, id): the next to expire first; lazy: decided ids are skipped when popped.
        self._pending_heap: list[tuple[float, str]] = []
        # (decided_at_s, id): the next to forget first.
        self._decided_heap: list[tuple[float, str]] = []
        self._pending_n = 0

    def __len__(self) -> int:
        """Entries held, pending and decided."""
        return len(self._entries)

    def get(self, entry_id: str) -> QuarantineEntry | None:
        """The entry with this id, or None."""
        return self._entries.get(entry_id)

    @property
    def pending_max_s(self) -> float:
        """How long a request may stay pending before it expires, seconds."""
        return self._pending_max_s

    @property
    def pending_count(self) -> int:
        """Requests pending a decision (kept up to date by `apply`: no scan)."""
        return self._pending_n

    def oldest_pending_at_s(self) -> float | None:
        """When the oldest pending request was quarantined (epoch s), or None if none is.

        Amortised O(log n): decided ids at the top of the lazy pending heap are dropped.
        """
        heap = self._pending_heap
        while heap:
            at_s, entry_id = heap[0]
            entry = self._entries.get(entry_id)
            if entry is not None and entry.state == "pending" and entry.at_s == at_s:
                return at_s
            heapq.heappop(heap)
        return None

    # --- commands -------------------------------------------------------------------------

    def quarantine(
        self, entry_id: str, user_id: str, srv: str, breach: Breach, now_s: float
    ) -> Quarantined:
        """Put a request in quarantine for `breach`; raise DuplicateEntryError if it is in."""
        held = self._entries.get(entry_id)
        if held is not None:
            raise DuplicateEntryError(
                f"request {entry_id} is already in quarantine ({held.state}, since "
                f"{held.at_s} s); a request id is quarantined once"
            )
        event = Quarantined(
            id=entry_id,
            user_id=user_id,
            srv=srv,
            kind=breach.kind,
            rule=breach.rule,
            reason=breach.reason,
            at_s=now_s,
        )
        self.apply(event)
        return event

    def release(self, entry_id: str, principal: str, now_s: float) -> Released:
        """Release a pending request for processing; raise if unknown or already decided."""
        entry = self._pending(entry_id, "release")
        event = Released(
            id=entry_id, by=principal, at_s=now_s, user_id=entry.user_id, srv=entry.srv
        )
        self.apply(event)
        return event

    def delete(self, entry_id: str, principal: str, now_s: float, note: str = "") -> Deleted:
        """Delete a pending request; raise if unknown or already decided."""
        self._pending(entry_id, "delete")
        event = Deleted(id=entry_id, by=principal, at_s=now_s, note=note)
        self.apply(event)
        return event

    def expire_due(self, now_s: float) -> list[Expired]:
        """Expire every pending request quarantined at or before now_s - pending_max_s."""
        heap = self._pending_heap
        cutoff = now_s - self._pending_max_s
        out: list[Expired] = []
        while heap and heap[0][0] <= cutoff:
            at_s, entry_id = heapq.heappop(heap)
            entry = self._entries.get(entry_id)
            if entry is None or entry.state != "pending" or entry.at_s != at_s:
                continue
            event = self._expired(entry_id, now_s)
            self.apply(event)
            out.append(event)
        return out

    def due(self, now_s: float) -> list[Expired]:
        """The expiries `expire_due(now_s)` would apply, oldest first, without applying
        any: a caller that must tell the User first applies each once that is done."""
        cutoff = now_s - self._pending_max_s
        out: list[Expired] = []
        for at_s, entry_id in sorted(self._pending_heap):
            if at_s > cutoff:
                break
            entry = self._entries.get(entry_id)
            if entry is not None and entry.state == "pending" and entry.at_s == at_s:
                out.append(self._expired(entry_id, now_s))
        return out

    def _expired(self, entry_id: str, now_s: float) -> Expired:
        return Expired(
            id=entry_id,
            at_s=now_s,
            note=(
                f"expired: no release or delete decision within "
                f"{_duration(self._pending_max_s)} of quarantine; deleted"
            ),
        )

    def release_many(self, ids: Iterable[str], principal: str, now_s: float) -> BulkResult:
        """Release each pending id (e.g. from `select`); the others are refused, with why."""
        events: list[Released | Deleted] = []
        refused: list[tuple[str, str]] = []
        for entry_id in ids:
            try:
                events.append(self.release(entry_id, principal, now_s))
            except (UnknownEntryError, AlreadyDecidedError) as exc:
                refused.append((entry_id, str(exc)))
        return BulkResult(events=tuple(events), refused=tuple(refused))

    def delete_many(
        self, ids: Iterable[str], principal: str, now_s: float, note: str = ""
    ) -> BulkResult:
        """Delete each pending id; the others are refused, with why."""
        events: list[Released | Deleted] = []
        refused: list[tuple[str, str]] = []
        for entry_id in ids:
            try:
                events.append(self.delete(entry_id, principal, now_s, note))
            except (UnknownEntryError, AlreadyDecidedError) as exc:
                refused.append((entry_id, str(exc)))
        return BulkResult(events=tuple(events), refused=tuple(refused))

    def _pending(self, entry_id: str, action: str) -> QuarantineEntry:
        entry = self._entries.get(entry_id)
        if entry is None:
            raise UnknownEntryError(
                f"cannot {action} request {entry_id}: it is not in quarantine (never "
                f"quarantined, or decided more than {_duration(self._retention_s)} ago and "
                "forgotten)"
            )
        if entry.state != "pending":
            raise AlreadyDecidedError(
                f"cannot {action} request {entry_id}: it was already {_describe(entry)}; a "
                "quarantine decision is final",
                state=entry.state,
            )
        return entry

    # --- the log --------------------------------------------------------------------------

    def apply(self, event: QuarantineEvent) -> bool:
        """Apply one event of the log, in log order; False when it changes nothing.

        A `Quarantined` for an id already held, a decision for an unknown id (forgotten, or
        never quarantined) or for an entry already decided are ignored: the first decision
        in the log wins.
        """
        entries = self._entries
        if isinstance(event, Quarantined):
            if event.id in entries:
                return False
            entries[event.id] = QuarantineEntry(
                id=event.id,
                user_id=event.user_id,
                srv=event.srv,
                kind=event.kind,
                rule=event.rule,
                reason=event.reason,
                at_s=event.at_s,
            )
            heapq.heappush(self._pending_heap, (event.at_s, event.id))
            self._pending_n += 1
            return True
        entry = entries.get(event.id)
        if entry is None or entry.state != "pending":
            return False
        if isinstance(event, Released):
            decided = msgspec.structs.replace(
                entry, state="released", decided_at_s=event.at_s, decided_by=event.by
            )
        elif isinstance(event, Deleted):
            decided = msgspec.structs.replace(
                entry,
                state="deleted",
                decided_at_s=event.at_s,
                decided_by=event.by,
                note=event.note,
            )
        else:
            decided = msgspec.structs.replace(
                entry, state="expired", decided_at_s=event.at_s, note=event.note
            )
        entries[event.id] = decided
        self._pending_n -= 1
        heapq.heappush(self._decided_heap, (event.at_s, event.id))
        return True

    def prune(self, now_s: float) -> int:
        """Forget the entries decided at or before now_s - retention_s; return how many."""
        heap = self._decided_heap
        cutoff = now_s - self._retention_s
        dropped = 0
        while heap and heap[0][0] <= cutoff:
            decided_at_s, entry_id = heapq.heappop(heap)
            entry = self._entries.get(entry_id)
            if entry is not None and entry.decided_at_s == decided_at_s:
                del self._entries[entry_id]
                dropped += 1
        return dropped

    # --- queries --------------------------------------------------------------------------

    def select(
        self,
        *,
        state: QuarantineState | None = "pending",
        user_id: str | None = None,
        rule: str | None = None,
        kind: BreachKind | None = None,
        from_s: float | None = None,
        until_s: float | None = None,
    ) -> list[QuarantineEntry]:
        """Entries matching every filter given, oldest quarantine first.

        state: default "pending"; None for any. from_s <= at_s < until_s, epoch seconds.
        A linear scan: for the admin API's bulk decisions, not the hot path.
        """
        out = [
            e
            for e in self._entries.values()
            if (state is None or e.state == state)
            and (user_id is None or e.user_id == user_id)
            and (rule is None or e.rule == rule)
            and (kind is None or e.kind == kind)
            and (from_s is None or e.at_s >= from_s)
            and (until_s is None or e.at_s < until_s)
        ]
        out.sort(key=lambda e: e.at_s)
        return out

    def counts(self) -> dict[QuarantineState, int]:
        """How many entries are in each state (for metrics)."""
        counts: dict[QuarantineState, int] = {
            "pending": 0,
            "released": 0,
            "deleted": 0,
            "expired": 0,
        }
        for e in self._entries.values():
            counts[e.state] += 1
        return counts
