"""The latency benchmark's arithmetic: nearest-rank percentiles and the request index."""

from __future__ import annotations

import math

import pytest

from workers.config.settings import Settings
from workers.tools.latency import _index, _percentile, run_latency


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert _percentile(values, 50.0) == 50.0
    assert _percentile(values, 99.0) == 99.0
    assert _percentile(values, 99.9) == 100.0
    assert _percentile([7.0], 99.9) == 7.0
    assert math.isnan(_percentile([], 50.0))


def test_index_reads_the_replay_counter() -> None:
    assert _index("90-B3-D5-1F-30-00-00-01:00-DB-00-00-00-00-00-01:1700000000042") == 42


@pytest.mark.parametrize(("duration_s", "capacity"), [(1.0, None), (10.0, 0.0), (10.0, -5.0)])
def test_bad_arguments_are_refused_before_anything_runs(
    duration_s: float, capacity: float | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_latency(Settings(), duration_s=duration_s, capacity_per_s=capacity, as_json=False)
    assert code == 2
    assert "dccgate bench --latency" in capsys.readouterr().err
