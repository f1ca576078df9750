"""workers.deliver.policy: backoff with jitter, and when to give up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.deliver.policy import RetryPolicy, backoff_s, give_up_now, retry_delay_s

POLICY = RetryPolicy(deadline_s=60, backoff_initial_s=0.2, backoff_max_s=10)


def test_backoff_doubles_up_to_the_maximum() -> None:
    highs = [backoff_s(POLICY, n, 0.9999999) for n in range(1, 10)]
    assert highs[:6] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4], rel=1e-5)
    assert highs[6:] == pytest.approx([10, 10, 10], rel=1e-5)


def test_jitter_takes_half_to_all_of_the_delay() -> None:
    assert backoff_s(POLICY, 3, 0.0) == pytest.approx(0.4)
    assert backoff_s(POLICY, 3, 0.5) == pytest.approx(0.6)
    assert backoff_s(POLICY, 3, 1.0) == pytest.approx(0.8)


@given(st.integers(-5, 10_000), st.floats(0, 1))
def test_backoff_stays_within_bounds_for_any_attempt(attempt: int, rand: float) -> None:
    delay = backoff_s(POLICY, attempt, rand)
    assert POLICY.backoff_initial_s / 2 <= delay <= POLICY.backoff_max_s


def test_retry_delay_never_runs_past_the_deadline() -> None:
    assert retry_delay_s(POLICY, attempts=20, queued_for_s=55, rand=1.0) == pytest.approx(5)
    assert retry_delay_s(POLICY, attempts=1, queued_for_s=0, rand=0.0) == pytest.approx(0.1)
    assert retry_delay_s(POLICY, attempts=3, queued_for_s=60, rand=0.5) is None
    assert retry_delay_s(POLICY, attempts=3, queued_for_s=61, rand=0.5) is None


def test_given_up_unattempted_only_past_the_deadline_behind_a_failing_endpoint() -> None:
    assert give_up_now(POLICY, queued_for_s=60, endpoint_failing=True)
    assert not give_up_now(POLICY, queued_for_s=59.9, endpoint_failing=True)
    assert not give_up_now(POLICY, queued_for_s=600, endpoint_failing=False)


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="backoff_initial_s <= backoff_max_s"):
        RetryPolicy(deadline_s=1, backoff_initial_s=2, backoff_max_s=1)
    with pytest.raises(ValueError, match="deadline_s > 0"):
        RetryPolicy(deadline_s=0, backoff_initial_s=1, backoff_max_s=1)
