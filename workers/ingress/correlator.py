"""Matching the router's answers on `dcc.user.responses` to the requests waiting for them.

One follower per ingress process reads `dcc.user.responses` from the time it started and
resolves the future registered under the answer's RequestID: a dict of futures, not a
consumer per request. Every ingress process reads every answer (the answers are keyed by
User, and a User's requests may reach any ingress behind a load balancer); an answer no
one here waits for is skipped at the cost of one dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from broker.consumer import Record
from broker.follower import TopicFollower
from broker.schemas import UserResponse
from broker.settings import KafkaSettings

__all__ = ["AlreadyWaitingError", "AnswerWaiter"]

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder(UserResponse).decode


class AlreadyWaitingError(Exception):
    """A request with this RequestID is already waiting for its answer in this process."""


class AnswerWaiter:
    """Futures by RequestID, resolved by the answers read from `topic`."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._waiting: dict[str, asyncio.Future[UserResponse]] = {}
        self._follower = TopicFollower(
            settings,
            topic,
            self._on_records,
            name="ingress-answers",
            from_ms=int(time.time() * 1000) - 1000,
        )
        self.answers_read = 0
        self.undecodable = 0

    @property
    def problem(self) -> str | None:
        """Why answers cannot be read now, or None."""
        return self._follower.problem

    @property
    def waiting(self) -> int:
        """Requests waiting for an answer now."""
        return len(self._waiting)

    async def start(self) -> None:
        """Start following the answers."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following; requests still waiting get no answer (their wait ends)."""
        await self._follower.stop()
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    def expect(self, request_id: str) -> asyncio.Future[UserResponse]:
        """Register before publishing; raises AlreadyWaitingError for a RequestID already
        waiting here (its answer could not be told apart)."""
        if request_id in self._waiting:
            raise AlreadyWaitingError(request_id)
        future: asyncio.Future[UserResponse] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        """Stop waiting for `request_id` (answered, timed out, or never published)."""
        self._waiting.pop(request_id, None)

    def _on_records(self, records: list[Record]) -> None:
        waiting = self._waiting
        for record in records:
            self.answers_read += 1
            if not waiting or record.value is None:
                continue
            try:
                answer = _decode(record.value)
            except msgspec.DecodeError:
                self.undecodable += 1
                continue
            future = waiting.pop(answer.request_id, None)
            if future is not None and not future.done():
                future.set_result(answer)
