"""`--threshold`: the grammar, its error messages, and the checks against a report."""

from __future__ import annotations

import pytest

from workers.tools.loadtest.report_schema import LoadTestReport
from workers.tools.loadtest.results import ResultCollector
from workers.tools.loadtest.thresholds import (
    METRICS,
    ThresholdError,
    evaluate,
    format_results,
    metric_value,
    parse_threshold,
)


@pytest.mark.parametrize(
    ("expression", "metric", "op", "limit"),
    [
        ("p99<500ms", "p99", "<", 500.0),
        ("p99 < 500", "p99", "<", 500.0),
        ("p99.9<=1s", "p99.9", "<=", 1000.0),
        ("e2e_p50 > 0.25s", "e2e_p50", ">", 250.0),
        ("quarantined==0", "quarantined", "==", 0.0),
        ("throttled != 3", "throttled", "!=", 3.0),
        ("error_rate<0.01", "error_rate", "<", 0.01),
        ("error_rate<1%", "error_rate", "<", 0.01),
        ("throughput>=900", "throughput", ">=", 900.0),
        ("throughput>=900/s", "throughput", ">=", 900.0),
        ("  max<.5s  ", "max", "<", 500.0),
    ],
)
def test_the_grammar(expression: str, metric: str, op: str, limit: float) -> None:
    t = parse_threshold(expression)
    assert (t.metric, t.op) == (metric, op)
    assert t.limit == pytest.approx(limit)
    assert t.expression == expression.strip()


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "is not METRIC OP NUMBER"),
        ("p99", "is not METRIC OP NUMBER"),
        ("p99<<5", "is not METRIC OP NUMBER"),
        ("p99<5<6", "is not METRIC OP NUMBER"),
        ("p99=<5", "is not METRIC OP NUMBER"),
        ("p99<-5", "is not METRIC OP NUMBER"),
        ("p99<1e9", "is not METRIC OP NUMBER"),
        ("p99<nan", "is not METRIC OP NUMBER"),
        ("p99<inf", "is not METRIC OP NUMBER"),
        ("p99<5 ms extra", "is not METRIC OP NUMBER"),
        ("p99<\uff11\uff12", "is not METRIC OP NUMBER"),  # full-width digits
        ("p99\x00<5", "is not METRIC OP NUMBER"),
        ("p99<" + "9" * 16, "is not METRIC OP NUMBER"),
        ("p99=5", "use == to compare, not ="),
        ("p98<5", "unknown metric 'p98'; did you mean p99"),
        ("latency<5", "unknown metric 'latency'"),
        ("quarantined<5ms", "quarantined does not take 'ms'; a count takes no unit"),
        ("p99<5%", "p99 does not take '%'; a latency takes ms"),
        ("error_rate<5ms", "a rate is a fraction 0..1 or a percentage"),
        ("throughput>5ms", "a throughput is per second"),
        ("p99<" + "1" * 200, "longer than 120 characters"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_threshold(expression)


def test_a_long_expression_is_not_echoed_whole() -> None:
    with pytest.raises(ThresholdError) as info:
        parse_threshold("x" * 10_000)
    assert len(str(info.value)) < 200


def _report() -> LoadTestReport:
    c = ResultCollector(scenario="t", seed=1, scale=1.0, duration_s=10.0)
    for i in range(1, 101):
        c.request_sent(i * 0.05, "U1", "4.1.1")
        outcome = "accepted" if i <= 90 else ("quarantined" if i <= 95 else "rejected")
        c.request_answered(i * 0.05, "U1", "4.1.1", outcome, "X", None, i / 1000)
    c.request_sent(6.0, "U1", "4.1.1")  # never answered
    c.deadlettered(6.0, "bad_json")
    return c.finish(10.0, gateway={})


def test_every_metric_has_a_value_or_none() -> None:
    report = _report()
    for metric in METRICS:
        value = metric_value(metric, report)
        assert value is None or value >= 0, metric
    assert metric_value("p99", report) == pytest.approx(99, rel=0.002)
    assert metric_value("e2e_p99", report) is None  # no device answers
    assert metric_value("quarantined", report) == 5
    assert metric_value("quarantined_rate", report) == pytest.approx(0.05)
    # errors: 1 unanswered + 5 rejected + 1 dead letter, of 101 sent
    assert metric_value("errors", report) == 7
    assert metric_value("error_rate", report) == pytest.approx(7 / 101)
    assert metric_value("throughput", report) == pytest.approx(100 / 10.0)
    assert metric_value("install_failure_rate", report) is None


def test_evaluate_passes_fails_and_fails_without_data() -> None:
    report = _report()
    checks = [
        parse_threshold(e)
        for e in ("p99<500ms", "p99<0.05s", "quarantined==0", "error_rate<10%", "e2e_p99<1s")
    ]
    results = evaluate(checks, report)
    assert [r.passed for r in results] == [True, False, False, True, False]
    assert results[0].shown == "99.0 ms"
    assert results[3].shown == "6.93%"
    assert results[4].actual is None
    assert results[4].shown == "no data"
    text = format_results(results)
    assert text.splitlines()[0] == "thresholds: 2 passed, 3 failed"
    assert "  PASS  p99<500ms       p99 = 99.0 ms" in text
    assert "  FAIL  quarantined==0  quarantined = 5" in text
    assert "  FAIL  e2e_p99<1s      e2e_p99 = no data" in text
    assert format_results([]) == ""
