"""The 11.3 Activate Firmware requests the MP102 rule needs, read from `dcc.sr.outbound`.

The router writes every Service Request it forwards to `dcc.sr.outbound`, keyed by the
RequestID's TARGET (the device ID, as DUIS writes it: upper-case hex octets and hyphens).
That topic has as many partitions as `dcc.alerts.inbound` and both use Kafka's murmur2
partitioner, so the 11.3 requests to a device are in the partition with the number of the
device's alerts, **provided the alert's key is the same device ID, byte for byte**. The feed
therefore follows only the partitions of `dcc.sr.outbound` whose numbers the worker owns on
`dcc.alerts.inbound` (or every partition if the partition counts differ), from `watch_s`
ago, so a restarted worker knows the activations of the last `watch_s` seconds again.

Only the requests that make the device activate are noted: command variant 5, 6 or 7 (the
signed pre-command, sent over the WAN or delivered locally); a CV 4 request goes to the DCC's
Transform service, not to the device. A future-dated activation (`activation_datetime` in
the body, ISO 8601, UTC without a zone as in DUIS) is noted at that time, so the rule's watch
runs from the forward until `watch_s` after the activation.

An 11.3 request names the meter (ESME); the Power Outage Alert AD1 comes from the hub,
whose ID differs. docs/alerts.md says what follows for the rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from prometheus_client import Counter

from broker.consumer import Record
from broker.errors import BrokerError
from broker.follower import TopicFollower
from broker.settings import KafkaSettings

__all__ = ["ACTIVATE_FIRMWARE", "FirmwareFeed"]

log = logging.getLogger(__name__)

ACTIVATE_FIRMWARE = "11.3"
"""The DUIS Service Reference Variant of Activate Firmware."""
_NEEDLE = b'"11.3"'
# The signed pre-command of a critical request: to the device over the WAN (5, 7) or
# delivered locally (6). CV 4 goes to the DCC's Transform service (DOMAIN.md section 2.2).
_TO_DEVICE = frozenset({5, 6, 7})


class _Body(msgspec.Struct):
    activation_datetime: Any = None  # checked below: a wrong type must not hide the request


class _Head(msgspec.Struct):
    """The fields the feed reads of a forwarded Service Request (others are skipped)."""

    request_id: str
    srv: str
    command_variant: int = 0
    body: _Body | None = None


_decode_head = msgspec.json.Decoder(_Head).decode

Note = Callable[[str, float], None]


class FirmwareFeed:
    """Follows `dcc.sr.outbound` for the MP102 rule.

    Parameters:
        kafka: client settings.
        topic: the full name of `dcc.sr.outbound`.
        note: called with (device ID, seconds since the epoch the request was forwarded)
            for every 11.3 request read.
        seen: counts them.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, note: Note, seen: Counter) -> None:
        self._kafka = kafka
        self._topic = topic
        self._note = note
        self._seen = seen
        self._follower: TopicFollower | None = None
        self._start_problem: str | None = None
        self._following: tuple[frozenset[int] | None, int | None] = (frozenset(), None)
        self._lock = asyncio.Lock()

    async def follow(
        self, partitions: Iterable[int] | None, watch_s: int | None, *, wait_s: float = 10.0
    ) -> None:
        """Follow `partitions` (None: all) from `watch_s` seconds ago, and wait up to
        `wait_s` until what was there is read; stop following if `watch_s` is None (the
        rule is off) or there is no partition. Does nothing if that is already so."""
        wanted = (None if partitions is None else frozenset(partitions), watch_s)
        async with self._lock:
            if wanted == self._following:
                return
            await self._stop()
            self._following = wanted
            parts, watch = wanted
            if watch is None or (parts is not None and not parts):
                return
            from_ms = time.time_ns() // 1_000_000 - watch * 1000
            follower = TopicFollower(
                self._kafka,
                self._topic,
                self.on_records,
                name="mp102",
                from_ms=from_ms,
                partitions=parts,
            )
            try:
                await follower.start()
            except BrokerError as exc:
                self._following = (frozenset(), None)
                self._start_problem = f"MP102 rule: cannot follow {self._topic}: {exc}"
                log.error("MP102 rule: cannot follow %s, activations unseen: %s", self._topic, exc)
                return
            self._start_problem = None
            self._follower = follower
            try:
                await follower.wait_caught_up(wait_s)
            except TimeoutError:
                log.warning(
                    "MP102 rule: %s not read up to date within %.0f s; going on while it is",
                    self._topic,
                    wait_s,
                )

    @property
    def problem(self) -> str | None:
        """Why activations go unseen now (the rule is on but the feed cannot follow), or None."""
        if self._start_problem is not None:
            return self._start_problem
        return None if self._follower is None else self._follower.problem

    async def stop(self) -> None:
        """Stop following."""
        async with self._lock:
            await self._stop()
            self._following = (frozenset(), None)

    async def _stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    def on_records(self, records: list[Record]) -> None:
        """Note the 11.3 activations among `records` of `dcc.sr.outbound` (the follower
        hands each fetched batch here; it must not block)."""
        n = 0
        for rec in records:
            value = rec.value
            if value is None or _NEEDLE not in value:
                continue  # cheap: most requests are not 11.3
            try:
                head = _decode_head(value)
            except msgspec.DecodeError:
                continue  # the router forwards only decodable requests; never stop here
            if head.srv != ACTIVATE_FIRMWARE or head.command_variant not in _TO_DEVICE:
                continue
            parts = head.request_id.split(":")
            if len(parts) != 3:
                continue
            at_s = rec.timestamp / 1000
            when = head.body.activation_datetime if head.body is not None else None
            if isinstance(when, str):
                at_s = max(at_s, _epoch_s(when, at_s))
            self._note(parts[1], at_s)
            n += 1
        if n:
            self._seen.inc(n)


def _epoch_s(text: str, default_s: float) -> float:
    """An ISO 8601 date-time in seconds since the epoch (UTC if it has no zone), or
    `default_s` if it cannot be read."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return default_s
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
