from __future__ import annotations

from workers.tools.send import SendResult, summary_table


def test_summary_counts_outcomes_per_user_and_code() -> None:
    result = SendResult(
        sent=4,
        answers=[
            {"user_id": "U1", "outcome": "accepted", "response_code": "I99"},
            {"user_id": "U1", "outcome": "throttled", "response_code": "T1"},
            {"user_id": "U1", "outcome": "throttled", "response_code": "T1"},
        ],
        deadlettered=[{"kind": "invalid_json", "reason": "x"}],
    )
    assert summary_table(result).splitlines() == [
        "USER ID  OUTCOME        CODE  COUNT",
        "U1       accepted       I99   1",
        "U1       throttled      T1    2",
        "-        dead-lettered  -     1",
    ]
