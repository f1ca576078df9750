"""tests/bench/bench_alerts.py runs and measures the path it names (a smoke test: the figures
themselves are never asserted, STYLE.md rule 19)."""

from __future__ import annotations

import pytest

from tests.bench import bench_alerts


@pytest.mark.parametrize("everything", [False, True])
def test_one_run_measures_forwarded_alerts(everything: bool) -> None:
    # run_once raises if anything was dead-lettered or nothing forwarded.
    assert bench_alerts.run_once(1_000, everything=everything, batch_size=300) > 0


def test_the_script_prints_both_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_alerts.main(["--alerts", "600", "--rounds", "1", "--batch", "200"]) == 0
    printed = capsys.readouterr().out
    assert "| plain (default storm policy, changelog on) |" in printed
    assert "| every check on (alerts_all_checks) |" in printed
