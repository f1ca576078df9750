"""When to retry a failed delivery and when to give up on it (pure: no I/O, no clock).

Backoff is exponential with "equal jitter": before retry n (n = 1, 2, ...) the deliverer
waits between half and all of `min(max, initial x 2**(n-1))`, so retries spread out (no
thundering herd when an endpoint comes back) yet never shrink towards zero. An answer is
given up on, and dead-lettered, once it has been queued `deadline_s`: after a failed attempt
past the deadline, or, while the User's endpoint is failing, without a further attempt (so
a dead endpoint's backlog drains at once rather than one timeout per answer).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy", "backoff_s", "give_up_now", "retry_delay_s"]

_MAX_EXPONENT = 60
"""2**60 x any positive initial delay is past every allowed maximum: the cap applies."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the deliverer retries.

    Parameters:
        deadline_s: seconds an answer may stay undelivered before it is dead-lettered.
        backoff_initial_s: the longest wait before the first retry (jitter takes 50-100%).
        backoff_max_s: the longest wait between two attempts.
    """

    deadline_s: float
    backoff_initial_s: float
    backoff_max_s: float

    def __post_init__(self) -> None:
        if not (self.deadline_s > 0 and 0 < self.backoff_initial_s <= self.backoff_max_s):
            raise ValueError(
                "RetryPolicy needs deadline_s > 0 and 0 < backoff_initial_s <= backoff_max_s, "
                f"got {self.deadline_s}, {self.backoff_initial_s}, {self.backoff_max_s}"
            )


def backoff_s(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """The wait after failed attempt number `attempt` (1 = the first), given a uniform
    random `rand` in [0, 1): between half and all of the capped exponential delay."""
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    cap = min(policy.backoff_max_s, policy.backoff_initial_s * 2.0**exponent)
    return cap / 2 + cap / 2 * min(max(rand, 0.0), 1.0)


def retry_delay_s(
    policy: RetryPolicy, *, attempts: int, queued_for_s: float, rand: float
) -> float | None:
    """After failed attempt number `attempts` of an answer queued `queued_for_s` ago: the
    wait before the next attempt, or None to give up (the deadline has passed). The wait
    never runs past the deadline, so the last attempt is made at the deadline."""
    remaining = policy.deadline_s - queued_for_s
    if remaining <= 0:
        return None
    return min(backoff_s(policy, attempts, rand), remaining)


def give_up_now(policy: RetryPolicy, *, queued_for_s: float, endpoint_failing: bool) -> bool:
    """Whether an answer at the head of its User's queue is dead-lettered without another
    attempt: only past its deadline while the endpoint's latest attempt failed."""
    return endpoint_failing and queued_for_s >= policy.deadline_s
