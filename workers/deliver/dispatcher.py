"""Per-User delivery queues, each worked by its own task, in order.

One User's answers are POSTed one at a time, oldest first: an answer is tried until it is
delivered or given up on (`policy`) before the next of that User is tried, so a User sees
its answers in the order they were decided. Users do not wait for each other: each User
with queued answers has its own task, so a slow or dead endpoint delays only its own User.

Finished answers (delivered, given up on, or no longer pushable because the User's
response_url was removed) are collected for the processor, which releases their input
offsets and writes the dead letters (`harvest`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from broker.consumer import Record, TopicPartition
from workers.deliver.metrics import DeliverMetrics
from workers.deliver.policy import RetryPolicy, give_up_now, retry_delay_s
from workers.deliver.sender import Failure
from workers.runtime.deadletter import processing_error

__all__ = ["Dispatcher", "Finished", "Outcome", "Pending", "Poster"]

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "deadlettered", "unpushable"]


class Poster(Protocol):
    """What sends one document (`workers.deliver.sender.Sender`)."""

    async def post(self, url: str, document: bytes) -> Failure | None: ...


@dataclass(slots=True)
class Pending:
    """One answer waiting for delivery."""

    record: Record
    """The input record (kept for its dead letter)."""
    tp: TopicPartition
    user_id: str
    response_id: str
    document: bytes
    at_ms: int
    """When the answer was decided (epoch ms): the delivery lag counts from here."""
    queued_s: float
    """When it was queued (monotonic s): the dead-letter deadline counts from here."""
    attempts: int = 0
    last_failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """An answer the dispatcher is done with."""

    pending: Pending
    outcome: Outcome
    reason: str
    """Why it was given up on (dead letter), or empty."""


class _UserQueue:
    __slots__ = ("failing", "items", "task")

    def __init__(self) -> None:
        self.items: deque[Pending] = deque()
        self.task: asyncio.Task[None] | None = None
        self.failing = False


class Dispatcher:
    """The per-User queues and their tasks.

    Parameters:
        poster: sends documents.
        policy: retries and the dead-letter deadline.
        url_for: the User's current response_url, or None (asked before each attempt, so
            a changed URL applies to the next attempt).
        metrics: the deliverer's metrics.
        max_per_user: answers one User's queue holds before `any_full()` says so.
        rand / clock_s / sleep: injectable for tests (uniform [0, 1), monotonic seconds,
            asyncio.sleep).
    """

    def __init__(
        self,
        *,
        poster: Poster,
        policy: RetryPolicy,
        url_for: Callable[[str], str | None],
        metrics: DeliverMetrics,
        max_per_user: int,
        rand: Callable[[], float] = random.random,
        clock_s: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._poster = poster
        self._policy = policy
        self._url_for = url_for
        self._metrics = metrics
        self.max_per_user = max_per_user
        self._rand = rand
        self._clock_s = clock_s
        self._sleep = sleep
        self._queues: dict[str, _UserQueue] = {}
        self._finished: list[Finished] = []
        self._queued = 0
        self._full = 0
        self._closed = False
        metrics.watch_queues(self._view)

    # --- the processor's side (synchronous, inside the event loop) ---

    def submit(self, pending: Pending) -> None:
        """Queue `pending` behind the User's earlier answers; start the User's task."""
        if self._closed:
            raise RuntimeError("the dispatcher is closed")
        queue = self._queues.get(pending.user_id)
        if queue is None:
            queue = self._queues[pending.user_id] = _UserQueue()
        queue.items.append(pending)
        self._queued += 1
        if len(queue.items) == self.max_per_user:
            self._full += 1
        if queue.task is None or queue.task.done():
            queue.task = asyncio.create_task(
                self._work(pending.user_id, queue), name=f"deliver:{pending.user_id}"
            )

    def harvest(self) -> list[Finished]:
        """The answers finished since the last call, in the order they finished."""
        done, self._finished = self._finished, []
        return done

    def any_full(self) -> bool:
        """True while some User's queue holds `max_per_user` answers or more."""
        return self._full > 0

    @property
    def queued(self) -> int:
        """Answers queued over every User (not yet finished)."""
        return self._queued

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget every answer read from `partitions` (revoked: their next owner reads them
        again), stopping the tasks of their Users; return how many were dropped."""
        gone = frozenset(partitions)
        dropped = 0
        for queue in self._queues.values():
            if not any(p.tp in gone for p in queue.items):
                continue
            kept = deque(p for p in queue.items if p.tp not in gone)
            removed = len(queue.items) - len(kept)
            # A User's answers all come from one partition, so `kept` is normally empty;
            # the order of what is kept is unchanged either way.
            if queue.task is not None and removed:
                queue.task.cancel()
                queue.task = None
            self._set_items(queue, kept)
            dropped += removed
            if kept:
                queue.task = asyncio.create_task(
                    self._work(kept[0].user_id, queue), name=f"deliver:{kept[0].user_id}"
                )
        self._finished = [f for f in self._finished if f.pending.tp not in gone]
        return dropped

    async def close(self) -> None:
        """Stop every task (an attempt in flight is abandoned; its answer stays
        uncommitted, so it is delivered again after the restart)."""
        self._closed = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _set_items(self, queue: _UserQueue, items: deque[Pending]) -> None:
        was_full = len(queue.items) >= self.max_per_user
        self._queued += len(items) - len(queue.items)
        queue.items = items
        if was_full and len(items) < self.max_per_user:
            self._full -= 1
        elif not was_full and len(items) >= self.max_per_user:
            self._full += 1

    def _view(self) -> Iterator[tuple[str, int, int | None]]:
        for user, queue in self._queues.items():
            items = queue.items
            yield user, len(items), items[0].at_ms if items else None

    # --- one task per User with queued answers ---

    def _finish(self, queue: _UserQueue, outcome: Outcome, reason: str) -> None:
        was_full = len(queue.items) >= self.max_per_user
        pending = queue.items.popleft()
        self._queued -= 1
        if was_full and len(queue.items) < self.max_per_user:
            self._full -= 1
        self._finished.append(Finished(pending, outcome, reason))
        metrics = self._metrics
        if outcome == "delivered":
            metrics.delivered(pending.user_id, time.time() - pending.at_ms / 1000)
        elif outcome == "deadlettered":
            metrics.deadlettered(pending.user_id)
        else:
            metrics.skipped("no_response_url")

    async def _work(self, user: str, queue: _UserQueue) -> None:
        while queue.items:
            try:
                await self._step(user, queue)
            except Exception as exc:  # nothing may stop a User's deliveries for good
                log.exception("delivery to User %s raised; its answer is dead-lettered", user)
                if queue.items:
                    self._finish(queue, "deadlettered", processing_error("deliver", exc))

    async def _step(self, user: str, queue: _UserQueue) -> None:
        """Finish the head of the queue, or make one attempt at it and wait to retry."""
        policy = self._policy
        if queue.items:
            head = queue.items[0]
            queued_for = self._clock_s() - head.queued_s
            url = self._url_for(user)
            if url is None:
                # The User removed its response_url while this waited: nothing to push to.
                self._finish(queue, "unpushable", "")
                return
            if give_up_now(policy, queued_for_s=queued_for, endpoint_failing=queue.failing):
                self._finish(queue, "deadlettered", _give_up_reason(head, policy, queued_for))
                return
            head.attempts += 1
            self._metrics.attempted(user)
            failure = await self._poster.post(url, head.document)
            if failure is None:
                queue.failing = False
                self._finish(queue, "delivered", "")
                return
            was_failing, queue.failing = queue.failing, True
            head.last_failure = failure
            self._metrics.failed(user, failure.kind)
            queued_for = self._clock_s() - head.queued_s
            delay = retry_delay_s(
                policy, attempts=head.attempts, queued_for_s=queued_for, rand=self._rand()
            )
            if delay is None:
                self._finish(queue, "deadlettered", _give_up_reason(head, policy, queued_for))
                return
            # One warning when an endpoint starts failing, not one per attempt.
            log.log(
                logging.DEBUG if was_failing else logging.WARNING,
                "delivery of %s to User %s failed (attempt %d, %s: %s); retrying in %.2f s",
                head.response_id,
                user,
                head.attempts,
                failure.kind,
                failure.text,
                delay,
            )
            await self._sleep(delay)


def _give_up_reason(pending: Pending, policy: RetryPolicy, queued_for_s: float) -> str:
    last = pending.last_failure
    tail = (
        f"last failure: {last.kind}: {last.text}"
        if last is not None
        else "not attempted: the endpoint's previous delivery had failed"
    )
    return (
        f"undeliverable: {pending.attempts} attempt(s) in {queued_for_s:.1f} s, past "
        f"DCCGATE_DELIVER_DEADLINE_S={policy.deadline_s:g}; {tail}"
    )
