"""The inline HDR recording is exactly HdrHistogram's: same slots, same percentiles."""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given
from hypothesis import strategies as st

from workers.tools.loadtest.latency import (
    HIGHEST_US,
    LatencyHistogram,
    SparseLatencyHistogram,
    hdr_index,
)


@pytest.mark.parametrize("figures", [2, 3])
@given(value=st.integers(min_value=0, max_value=HIGHEST_US))
def test_index_is_hdrhistograms(figures: int, value: int) -> None:
    reference = HdrHistogram(1, HIGHEST_US, figures)
    assert hdr_index(value, figures) == reference.get_counts_array_index(value)


def _values(seed: int, n: int) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.lognormvariate(-5.0, 1.0) for _ in range(n)]


def test_dense_histogram_matches_hdrhistogram_fed_directly() -> None:
    values = _values(7, 20_000)
    ours = LatencyHistogram()
    reference = HdrHistogram(1, HIGHEST_US, 3)
    for value in values:
        ours.record_s(value)
        reference.record_value(int(value * 1_000_000))
    percentiles = [50.0, 90.0, 99.0, 99.9]
    assert ours.to_hdr().get_percentile_to_value_dict(
        percentiles
    ) == reference.get_percentile_to_value_dict(percentiles)
    assert ours.count == 20_000
    assert ours.max_us == max(int(v * 1_000_000) for v in values)


@pytest.mark.parametrize("n", [1, 2, 3, 99, 1000])
def test_sparse_percentiles_match_hdrhistogram(n: int) -> None:
    sparse = SparseLatencyHistogram()
    for value in _values(n, n):
        sparse.record_s(value)
    reference = sparse.to_hdr()
    wanted = (50.0, 90.0, 99.0, 100.0)
    assert sparse.percentiles_us(wanted) == [reference.get_value_at_percentile(p) for p in wanted]


def test_out_of_range_values_are_clamped_not_lost() -> None:
    dense = LatencyHistogram()
    dense.record_s(-0.5)  # a clock step backwards on the runner
    dense.record_s(7200.0)
    assert dense.count == 2
    assert dense.clamped == 1
    assert dense.max_us == HIGHEST_US
    assert dense.to_hdr().get_total_count() == 2


def test_empty_sparse_histogram_has_zero_percentiles() -> None:
    assert SparseLatencyHistogram().percentiles_us((50.0, 99.0)) == [0, 0]


def test_histograms_merge_to_the_counts_of_one() -> None:
    points = (1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)
    for cls in (LatencyHistogram, SparseLatencyHistogram):
        whole, a, b = cls(), cls(), cls()
        for n in range(1, 5000):
            latency_s = (n * 7919 % 5003) / 1000
            whole.record_s(latency_s)
            (a if n % 3 else b).record_s(latency_s)
        a.merge(b)  # type: ignore[arg-type]
        assert a.count == whole.count
        merged, one = a.to_hdr(), whole.to_hdr()
        assert [merged.get_value_at_percentile(p) for p in points] == [
            one.get_value_at_percentile(p) for p in points
        ]
    with pytest.raises(ValueError, match="significant figures"):
        LatencyHistogram(3).merge(LatencyHistogram(2))


def test_recording_in_two_sparse_histograms_at_once_is_recording_in_each() -> None:
    rnd = random.Random(5)
    values = [rnd.lognormvariate(-3, 1.5) for _ in range(5000)] + [-1.0, 9999.0]
    first, second, alone = (SparseLatencyHistogram() for _ in range(3))
    second.record_s(0.25)  # the second may hold counts already
    for value in values:
        first.record_s_also(second, value)
        alone.record_s(value)
    assert first.count == alone.count == len(values)
    assert second.count == len(values) + 1
    percentiles = (50.0, 90.0, 99.0, 99.9, 100.0)
    assert first.percentiles_us(percentiles) == alone.percentiles_us(percentiles)
    alone.record_s(0.25)
    assert second.percentiles_us(percentiles) == alone.percentiles_us(percentiles)
