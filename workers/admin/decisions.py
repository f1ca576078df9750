"""Every answer a request got, kept by the admin process for "why was this decided".

The admin process follows `dcc.user.responses` (every partition, from `max_age_s` ago) and
keeps the answers per `request_id` (`AnswerIndex`, no I/O: time is an argument), bounded:

- at most `max_answers` answers in all (DCCGATE_DECISIONS_MAX_ANSWERS, default 100,000):
  past it, the requests answered least recently are forgotten, all their answers at once;
- answers older than `max_age_s` (DCCGATE_DECISIONS_MAX_AGE_S, default 24 h) are forgotten
  (a request's age is that of its latest answer; the oldest go first);
- at most `PER_REQUEST` answers per request (a request sent again and again, refused each
  time): the first is kept, then the latest; `omitted` counts the others;
- an answer's stored bytes at most `MAX_ANSWER_BYTES` (a longer `reason` is cut), and a
  request_id at most `MAX_REQUEST_ID_CHARS` characters (longer ones are not kept).

The answers are kept as the bytes read (validated as a `UserResponse` first): about 730
bytes each with the index, so 73 MB for the default (tests/bench/bench_decisions.py,
docs/benchmarks.md). The quarantine state
and its history come from the quarantine service's book and the audit trail, which keep
them longer (30 days after a decision; `dcc.audit`), so a request quarantined weeks ago is
still explained after its answers have been forgotten here.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

import msgspec

from broker.consumer import Record
from broker.follower import TopicFollower
from broker.schemas import UserResponse
from broker.settings import KafkaSettings

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_MAX_ANSWERS",
    "MAX_ANSWER_BYTES",
    "MAX_REQUEST_ID_CHARS",
    "PER_REQUEST",
    "AnswerIndex",
    "DecisionLog",
    "Remembered",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_ANSWERS = 100_000
DEFAULT_MAX_AGE_S = 86_400
PER_REQUEST = 32
"""Most answers kept per request: the first, and the latest PER_REQUEST - 1."""
MAX_ANSWER_BYTES = 4096
"""Most bytes kept of one answer; a longer one is kept with its `reason` cut."""
MAX_REQUEST_ID_CHARS = 80
"""A request_id longer than this is not kept (a valid one has at most 67 characters; the
API takes at most 80 in a path)."""
_REASON_CUT_CHARS = 1000

_decode = msgspec.json.Decoder(UserResponse).decode
_encode = msgspec.json.Encoder().encode


class _Answers:
    """One request's answers, oldest first, and when the latest was given (epoch s)."""

    __slots__ = ("last_s", "omitted", "raw")

    def __init__(self, first: bytes, at_s: float) -> None:
        self.raw = [first]
        self.last_s = at_s
        self.omitted = 0


class Remembered(msgspec.Struct, frozen=True, kw_only=True):
    """A request's answers as kept: decoded, oldest first; `omitted` were dropped between
    the first and the rest (more than PER_REQUEST)."""

    answers: list[UserResponse]
    omitted: int = 0


class AnswerIndex:
    """The answers per request_id, bounded by count and age (module docstring).

    max_answers: most answers kept in all, default 100,000. max_age_s: answers older than
    this are forgotten at the next `add` or `prune`, default 86,400 s.
    """

    __slots__ = ("_by_id", "_count", "max_age_s", "max_answers", "refused")

    def __init__(
        self, *, max_answers: int = DEFAULT_MAX_ANSWERS, max_age_s: float = DEFAULT_MAX_AGE_S
    ) -> None:
        if max_answers < 1 or not max_age_s > 0:
            raise ValueError(
                f"max_answers must be >= 1 and max_age_s > 0, got {max_answers}, {max_age_s}"
            )
        self.max_answers = max_answers
        self.max_age_s = max_age_s
        # Order is the order of each request's latest answer: an answered request is moved
        # to the end, so the front holds the least recently answered. An OrderedDict, as a
        # dict whose front is deleted again and again makes finding its first key O(n).
        self._by_id: collections.OrderedDict[str, _Answers] = collections.OrderedDict()
        self._count = 0
        self.refused = 0
        """Records not kept: not a user response, or a request_id too long."""

    def __len__(self) -> int:
        """How many answers are kept."""
        return self._count

    @property
    def requests(self) -> int:
        """How many requests have answers kept."""
        return len(self._by_id)

    @property
    def oldest_s(self) -> float | None:
        """When the least recently answered request kept was last answered (epoch s)."""
        first = next(iter(self._by_id.values()), None)
        return None if first is None else first.last_s

    def add(self, value: bytes, now_s: float) -> bool:
        """Keep the answer `value` (a `UserResponse` as JSON); False if it is not one, or
        its request_id is too long. `now_s`: epoch seconds now (an answer dated later is
        taken as given now, so a skewed clock cannot keep it beyond the age bound)."""
        try:
            answer = _decode(value)
        except msgspec.DecodeError:
            self.refused += 1
            return False
        request_id = answer.request_id
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            self.refused += 1
            return False
        if len(value) > MAX_ANSWER_BYTES:
            value = _shortened(answer)
        at_s = min(answer.at_ms / 1000, now_s)
        entry = self._by_id.get(request_id)
        if entry is None:
            self._by_id[request_id] = _Answers(bytes(value), at_s)
        else:
            self._by_id.move_to_end(request_id)
            entry.raw.append(bytes(value))
            entry.last_s = max(entry.last_s, at_s)
            if len(entry.raw) > PER_REQUEST:
                del entry.raw[1]
                entry.omitted += 1
                self._count -= 1
        self._count += 1
        self.prune(now_s)
        return True

    def prune(self, now_s: float) -> int:
        """Forget the least recently answered requests while more than `max_answers` are
        kept or the front one is older than `max_age_s`; return how many answers went."""
        cutoff = now_s - self.max_age_s
        dropped = 0
        by_id = self._by_id
        while by_id:
            entry = by_id[next(iter(by_id))]
            if self._count <= self.max_answers and entry.last_s >= cutoff:
                break
            by_id.popitem(last=False)
            self._count -= len(entry.raw)
            dropped += len(entry.raw)
        return dropped

    def get(self, request_id: str) -> Remembered | None:
        """The answers kept for `request_id`, oldest first, or None."""
        entry = self._by_id.get(request_id)
        if entry is None:
            return None
        return Remembered(answers=[_decode(raw) for raw in entry.raw], omitted=entry.omitted)


def _shortened(answer: UserResponse) -> bytes:
    """`answer` with its reason cut to a size worth keeping."""
    cut = answer.reason[:_REASON_CUT_CHARS] + " [cut]"
    kept = msgspec.structs.replace(answer, reason=cut)
    if isinstance(kept.observed, str):
        kept = msgspec.structs.replace(kept, observed=kept.observed[:200])
    return _encode(kept)


class DecisionLog:
    """The answers on `topic` (`dcc.user.responses`) per request, kept by an `AnswerIndex`.

    clock: epoch seconds now, default `time.time`; tests inject theirs.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        *,
        max_answers: int = DEFAULT_MAX_ANSWERS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = AnswerIndex(max_answers=max_answers, max_age_s=max_age_s)
        self._settings = settings
        self._topic = topic
        self._clock = clock
        self._follower: TopicFollower | None = None

    async def start(self) -> None:
        """Follow the topic from `max_age_s` ago (in the background: the API answers what
        has been read so far, and says whether it has caught up)."""
        from_ms = int((self._clock() - self.index.max_age_s) * 1000)
        self._follower = TopicFollower(
            self._settings, self._topic, self._apply, name="decisions", from_ms=max(from_ms, 0)
        )
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following."""
        if self._follower is not None:
            await self._follower.stop()

    @property
    def problem(self) -> str | None:
        """Why the topic cannot be followed now, or None."""
        return None if self._follower is None else self._follower.problem

    @property
    def caught_up(self) -> bool:
        """True once every answer present at the start has been read."""
        return self._follower is not None and self._follower.caught_up

    def get(self, request_id: str) -> Remembered | None:
        """The answers kept for `request_id` (forgetting the too old first), or None."""
        self.index.prune(self._clock())
        return self.index.get(request_id)

    def _apply(self, records: list[Record]) -> None:
        now_s = self._clock()
        for rec in records:
            if rec.value is None or not self.index.add(rec.value, now_s):
                log.debug("dcc.user.responses offset %d not kept", rec.offset)
