"""The configuration as every worker sees it: the last record per key of `dcc.control`.

`ConfigState.apply()` takes records in log order; `snapshot()` returns an immutable view
that services swap in whole, so a rule table is never half-applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from broker.schemas import ControlRecord
from workers.config.model import (
    AdtValues,
    Allocation,
    Exclusions,
    StormPolicy,
    Traffic,
    User,
    kind_of_key,
    validate_item,
)
from workers.config.tokens import TOKEN_KEY_PREFIX, TokenRecord
from workers.duis.certificates import UserCertificates

__all__ = ["ConfigSnapshot", "ConfigState", "Item"]

log = logging.getLogger(__name__)

_decode_record = msgspec.json.Decoder(ControlRecord).decode
_decode_token = msgspec.json.Decoder(TokenRecord).decode


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One configured item: its decoded body and where it came from."""

    key: str
    version: int
    body: Any
    raw: bytes
    by: str
    at_ms: int


class ConfigSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The whole configuration at one point of the control log (read-only)."""

    offset: int
    """Offset of the next record to apply; -1 before anything was read."""
    items: Mapping[str, Item]
    tokens: Mapping[str, TokenRecord]

    def get(self, key: str) -> Item | None:
        """The item at `key`, if configured."""
        return self.items.get(key)

    def _of(self, prefix: str) -> dict[str, Any]:
        start = prefix + "/"
        return {k[len(start) :]: v.body for k, v in self.items.items() if k.startswith(start)}

    @property
    def users(self) -> dict[str, User]:
        """Users by User ID."""
        return self._of("users")

    @property
    def allocations(self) -> dict[str, Allocation]:
        """Allocations by User ID."""
        return self._of("allocations")

    @property
    def certificates(self) -> dict[str, UserCertificates]:
        """Each User's registered certificates by User ID (issue #16)."""
        return self._of("certificates")

    @property
    def adt_users(self) -> dict[str, AdtValues]:
        """Each User's ADT values by User ID."""
        return self._of("adt.users")

    def _single(self, key: str) -> Any:
        item = self.items.get(key)
        return None if item is None else item.body

    @property
    def adt_dcc(self) -> AdtValues | None:
        """The DCC-wide ADT values."""
        value: AdtValues | None = self._single("adt.dcc")
        return value

    @property
    def exclusions(self) -> Exclusions | None:
        """The alert exclusion list."""
        value: Exclusions | None = self._single("alerts.exclusions")
        return value

    @property
    def storm_policy(self) -> StormPolicy | None:
        """The alert-storm parameters."""
        value: StormPolicy | None = self._single("alerts.storm-policy")
        return value

    @property
    def traffic(self) -> Traffic | None:
        """The traffic-management settings."""
        value: Traffic | None = self._single("traffic")
        return value

    def versions(self) -> dict[str, int]:
        """Version of every configured item by key."""
        return {k: v.version for k, v in self.items.items()}


EMPTY = ConfigSnapshot(offset=-1, items=MappingProxyType({}), tokens=MappingProxyType({}))


class ConfigState:
    """Folds `dcc.control` records into the current configuration.

    A record that cannot be decoded, or whose body does not fit its kind (written by a
    newer dccgate, say), is logged and skipped: one bad record never stops a worker, and
    the previous value of its key stays in force.
    """

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._offset = -1
        self.skipped = 0

    def apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """Apply the record at `offset` (key, value as on the topic)."""
        self._offset = offset + 1
        if key is None:
            self._skip(offset, "the record has no key")
            return
        try:
            k = key.decode()
        except UnicodeDecodeError:
            self._skip(offset, "the key is not UTF-8")
            return
        if value is None:  # tombstone: the item is deleted
            self._items.pop(k, None)
            if k.startswith(TOKEN_KEY_PREFIX):
                self._tokens.pop(k[len(TOKEN_KEY_PREFIX) :], None)
            return
        try:
            record = _decode_record(value)
            if record.key != k:
                raise ValueError(f"record key {record.key!r} differs from the Kafka key")
            raw = bytes(record.value)
            if k.startswith(TOKEN_KEY_PREFIX):
                token = _decode_token(raw)
                self._tokens[k[len(TOKEN_KEY_PREFIX) :]] = token
                return
            found = kind_of_key(k)
            if found is None:
                raise ValueError(f"no configuration kind has keys like {k!r}")
            kind, user_id = found
            body = msgspec.json.decode(raw, type=kind.body)
            validate_item(kind, user_id, body)
        except (msgspec.DecodeError, ValueError) as exc:
            self._skip(offset, f"{k}: {exc}")
            return
        self._items[k] = Item(
            key=k, version=record.version, body=body, raw=raw, by=record.by, at_ms=record.at_ms
        )

    def _skip(self, offset: int, why: str) -> None:
        self.skipped += 1
        log.warning("dcc.control offset %d skipped: %s", offset, why)

    def snapshot(self) -> ConfigSnapshot:
        """An immutable copy of the current configuration."""
        return ConfigSnapshot(
            offset=self._offset,
            items=MappingProxyType(dict(self._items)),
            tokens=MappingProxyType(dict(self._tokens)),
        )
