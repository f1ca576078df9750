"""Accepted changes go to `dcc.control` (the change) and `dcc.audit` (the record of it).

Writes from one admin process are serialised, and each is checked against the version
its caller read (optimistic concurrency: `409 Conflict` if the item changed since). The
write returns once this process's own reader has applied it, so a GET right after a PUT
shows the new value. Two admin processes writing the same item at the same instant are not
serialised against each other; the later record wins on every worker alike, and both
changes are in the audit trail. Run one admin process, or accept that.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from broker.producer import BatchProducer
from broker.schemas import AuditRecord, ControlRecord
from broker.topics import Topics
from workers.admin.audit import AuditLog
from workers.config.reader import ControlReader
from workers.config.snapshot import Item
from workers.config.tokens import TOKEN_KEY_PREFIX, TokenRecord

__all__ = ["ControlWriter", "VersionConflictError"]

_encode = msgspec.json.Encoder().encode
_NULL = msgspec.Raw(b"null")


class VersionConflictError(Exception):
    """The item changed since the version the caller read."""

    def __init__(self, key: str, expected: int, current: int | None) -> None:
        now = "it no longer exists" if current is None else f"it is now at version {current}"
        super().__init__(
            f"{key} was changed by someone else: you sent version {expected}, {now}; "
            "GET it again, re-apply your change, and PUT with the new version"
        )
        self.current = current


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ControlWriter:
    """Publishes configuration changes and their audit records."""

    def __init__(
        self, producer: BatchProducer, topics: Topics, reader: ControlReader, audit: AuditLog
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._reader = reader
        self._audit = audit
        self._lock = asyncio.Lock()

    async def put(
        self, key: str, body: msgspec.Struct, *, by: str, expected_version: int | None
    ) -> Item:
        """Set `key` to `body` (if `expected_version` is given, only if it is current)."""
        async with self._lock:
            current = self._reader.snapshot.get(key)
            current_version = None if current is None else current.version
            if expected_version is not None and expected_version != (current_version or 0):
                raise VersionConflictError(key, expected_version, current_version)
            raw = _encode(body)
            record = ControlRecord(
                key=key,
                version=(current_version or 0) + 1,
                value=msgspec.Raw(raw),
                by=by,
                at_ms=_now_ms(),
            )
            _, offset = await self._producer.send_one(
                self._topics.control, key.encode(), _encode(record)
            )
            await self._write_audit(
                AuditRecord(
                    at_ms=record.at_ms,
                    by=by,
                    action="put",
                    key=key,
                    version=record.version,
                    old=_NULL if current is None else msgspec.Raw(current.raw),
                    new=msgspec.Raw(raw),
                )
            )
            await self._reader.wait_applied(offset)
        item = self._reader.snapshot.get(key)
        if item is None:  # deleted by another process in between: report ours
            return Item(
                key=key, version=record.version, body=body, raw=raw, by=by, at_ms=record.at_ms
            )
        return item

    async def delete(self, key: str, *, by: str, expected_version: int | None) -> bool:
        """Delete `key` (a tombstone); False if it did not exist."""
        async with self._lock:
            current = self._reader.snapshot.get(key)
            if current is None:
                return False
            if expected_version is not None and expected_version != current.version:
                raise VersionConflictError(key, expected_version, current.version)
            _, offset = await self._producer.send_one(self._topics.control, key.encode(), None)
            await self._write_audit(
                AuditRecord(
                    at_ms=_now_ms(),
                    by=by,
                    action="delete",
                    key=key,
                    version=current.version,
                    old=msgspec.Raw(current.raw),
                )
            )
            await self._reader.wait_applied(offset)
            return True

    async def issue_token(self, token: TokenRecord) -> None:
        """Store a new token's hash (never the secret)."""
        key = TOKEN_KEY_PREFIX + token.token_id
        record = ControlRecord(
            key=key,
            version=1,
            value=msgspec.Raw(_encode(token)),
            by=token.created_by,
            at_ms=token.created_at_ms,
        )
        async with self._lock:
            _, offset = await self._producer.send_one(
                self._topics.control, key.encode(), _encode(record)
            )
            public = {"token_id": token.token_id, "role": token.role, "user_id": token.user_id}
            await self._write_audit(
                AuditRecord(
                    at_ms=token.created_at_ms,
                    by=token.created_by,
                    action="token.issue",
                    key=key,
                    new=msgspec.Raw(_encode(public)),
                )
            )
            await self._reader.wait_applied(offset)

    async def revoke_token(self, token: TokenRecord, *, by: str) -> None:
        """Revoke a token: it stops working on every process within a second."""
        key = TOKEN_KEY_PREFIX + token.token_id
        async with self._lock:
            _, offset = await self._producer.send_one(self._topics.control, key.encode(), None)
            public = {"token_id": token.token_id, "role": token.role, "user_id": token.user_id}
            await self._write_audit(
                AuditRecord(
                    at_ms=_now_ms(),
                    by=by,
                    action="token.revoke",
                    key=key,
                    old=msgspec.Raw(_encode(public)),
                )
            )
            await self._reader.wait_applied(offset)

    async def record(self, audit: AuditRecord) -> None:
        """Write an audit record of an action that is not a configuration change
        (e.g. a quarantine decision)."""
        async with self._lock:
            await self._write_audit(audit)

    async def record_many(self, audits: list[AuditRecord]) -> None:
        """Write several audit records at once (a bulk quarantine decision): sent together,
        then waited for until the last is readable."""
        if not audits:
            return
        async with self._lock:
            sent = await asyncio.gather(
                *(
                    self._producer.send_one(self._topics.audit, a.key.encode(), _encode(a))
                    for a in audits
                )
            )
            await self._audit.wait_applied(max(offset for _, offset in sent))

    async def _write_audit(self, audit: AuditRecord) -> None:
        _, offset = await self._producer.send_one(
            self._topics.audit, audit.key.encode(), _encode(audit)
        )
        await self._audit.wait_applied(offset)
