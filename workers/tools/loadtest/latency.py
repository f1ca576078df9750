"""Latency recording for the load-test collector: HDR histograms, fast on the hot path.

Values are recorded in whole microseconds into the counts layout of an HdrHistogram
(lowest trackable value 1 µs, highest 1 hour). The index of a value is computed here, inline,
with the same arithmetic as `hdrh.histogram.HdrHistogram` (its `record_value` costs about
1.2 µs a call in pure Python; this costs about a quarter of that, docs/benchmarks.md). At the
end of a run `to_hdr()` copies the counts into a real `HdrHistogram`, which computes the
percentiles and the standard compressed encoding (`HISTFAAA...`, readable by every HdrHistogram
tool) carried in the report.
"""

from __future__ import annotations

import math

from hdrh.histogram import HdrHistogram

__all__ = [
    "HIGHEST_US",
    "LatencyHistogram",
    "SparseLatencyHistogram",
    "hdr_index",
]

HIGHEST_US = 3_600_000_000
"""Latencies above one hour are recorded as one hour (and counted in `clamped`)."""


def _half_count_magnitude(significant_figures: int) -> int:
    # HdrHistogram: sub-bucket count is the power of two holding 2 * 10**figures, halved.
    largest_single_unit = 2 * 10**significant_figures
    return max(math.ceil(math.log2(largest_single_unit)) - 1, 0)


def hdr_index(value_us: int, significant_figures: int) -> int:
    """Index of `value_us` in the counts of an HdrHistogram(1, HIGHEST_US, significant_figures).

    The reference implementation of the inline arithmetic in `record_s`, for tests.
    """
    half_mag = _half_count_magnitude(significant_figures)
    mask = (1 << (half_mag + 1)) - 1
    bucket = (value_us | mask).bit_length() - (half_mag + 1)
    return ((bucket + 1) << half_mag) + (value_us >> bucket) - (1 << half_mag)


class _HdrLayout:
    """The slot arithmetic shared by both histograms (unit magnitude 0: 1 µs)."""

    __slots__ = ("_half_count", "_half_mag", "_mask", "_shift", "count", "significant_figures")

    def __init__(self, significant_figures: int) -> None:
        if not 1 <= significant_figures <= 5:
            raise ValueError(f"significant_figures must be 1 to 5, got {significant_figures}")
        self.significant_figures = significant_figures
        self._half_mag = _half_count_magnitude(significant_figures)
        self._half_count = 1 << self._half_mag
        self._mask = (1 << (self._half_mag + 1)) - 1
        self._shift = self._half_mag + 1
        self.count = 0


class LatencyHistogram(_HdrLayout):
    """Dense HDR counts, for the whole-run histograms (3 significant figures by default).

    Args:
        significant_figures: value resolution, 1 to 5 (3: 0.1 % error; memory
            (buckets + 1) x 2**magnitude x 8 bytes, about 190 KB at 3).
    """

    __slots__ = ("_counts", "clamped", "max_us")

    def __init__(self, significant_figures: int = 3) -> None:
        super().__init__(significant_figures)
        self._counts: list[int] = [0] * (hdr_index(HIGHEST_US, significant_figures) + 1)
        self.max_us = 0
        self.clamped = 0

    def record_s(self, latency_s: float) -> None:
        """Record one latency given in seconds (negative: 0; above one hour: one hour)."""
        value = int(latency_s * 1_000_000.0)
        if value < 0:
            value = 0
        elif value > HIGHEST_US:
            value = HIGHEST_US
            self.clamped += 1
        bucket = (value | self._mask).bit_length() - self._shift
        self._counts[((bucket + 1) << self._half_mag) + (value >> bucket) - self._half_count] += 1
        self.count += 1
        if value > self.max_us:  # noqa: PLR1730 (hot path: a compare costs less than max())
            self.max_us = value

    def merge(self, other: LatencyHistogram) -> None:
        """Add `other`'s counts (same significant figures) to these."""
        if other.significant_figures != self.significant_figures:
            raise ValueError("cannot merge histograms of different significant figures")
        counts = self._counts
        for index, count in other.nonzero():
            counts[index] += count
        self.count += other.count
        self.clamped += other.clamped
        self.max_us = max(self.max_us, other.max_us)

    def nonzero(self) -> list[tuple[int, int]]:
        """(index, count) of every non-empty slot, in index order."""
        return [(i, c) for i, c in enumerate(self._counts) if c]

    def to_hdr(self) -> HdrHistogram:
        """A real HdrHistogram holding exactly the recorded counts."""
        return _build_hdr(self.nonzero(), self.significant_figures)


class SparseLatencyHistogram(_HdrLayout):
    """Sparse HDR counts (a dict of the non-empty slots), for one time bucket.

    Args:
        significant_figures: value resolution (2 by default: 1 % error, enough to draw p50
            and p99 over time, and a few hundred slots at most per bucket).
    """

    __slots__ = ("_counts",)

    def __init__(self, significant_figures: int = 2) -> None:
        super().__init__(significant_figures)
        self._counts: dict[int, int] = {}

    def record_s(self, latency_s: float) -> None:
        """Record one latency given in seconds (clamped to 0 .. one hour)."""
        # The slot arithmetic of LatencyHistogram.record_s, inline: a shared helper would
        # add a call (about 0.1 µs) to every answer the collector sees.
        value = int(latency_s * 1_000_000.0)
        if value < 0:
            value = 0
        elif value > HIGHEST_US:
            value = HIGHEST_US
        bucket = (value | self._mask).bit_length() - self._shift
        index = ((bucket + 1) << self._half_mag) + (value >> bucket) - self._half_count
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1

    def record_s_also(self, other: SparseLatencyHistogram, latency_s: float) -> None:
        """Record one latency here and in `other` (same significant figures): the slot is
        computed once (the collector records each answer per time bucket and per SRV)."""
        value = int(latency_s * 1_000_000.0)
        if value < 0:
            value = 0
        elif value > HIGHEST_US:
            value = HIGHEST_US
        bucket = (value | self._mask).bit_length() - self._shift
        index = ((bucket + 1) << self._half_mag) + (value >> bucket) - self._half_count
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        counts = other._counts
        counts[index] = counts.get(index, 0) + 1
        other.count += 1

    def merge(self, other: SparseLatencyHistogram) -> None:
        """Add `other`'s counts (same significant figures) to these."""
        if other.significant_figures != self.significant_figures:
            raise ValueError("cannot merge histograms of different significant figures")
        counts = self._counts
        for index, count in other._counts.items():
            counts[index] = counts.get(index, 0) + count
        self.count += other.count

    def percentiles_us(self, percentiles: tuple[float, ...]) -> list[int]:
        """Values at `percentiles` (ascending, 0-100), by HdrHistogram's definition.

        The highest value equivalent to the slot where the cumulative count first reaches
        `round(percentile x count / 100)` (at least 1); what `get_value_at_percentile` gives,
        without building the dense histogram (2.7 ms a bucket).
        """
        if not self.count:
            return [0 for _ in percentiles]
        targets = [max(int(p * self.count / 100 + 0.5), 1) for p in percentiles]
        values: list[int] = []
        cumulative = 0
        slots = sorted(self._counts.items())
        position = 0
        for target in targets:
            while cumulative < target and position < len(slots):
                cumulative += slots[position][1]
                position += 1
            values.append(_highest_equivalent(slots[position - 1][0], self._half_mag))
        return values

    def to_hdr(self) -> HdrHistogram:
        """A real HdrHistogram holding exactly the recorded counts."""
        return _build_hdr(sorted(self._counts.items()), self.significant_figures)


def _highest_equivalent(index: int, half_mag: int) -> int:
    # HdrHistogram.get_value_from_index, then get_highest_equivalent_value (unit magnitude 0).
    half_count = 1 << half_mag
    bucket = (index >> half_mag) - 1
    sub_bucket = (index & (half_count - 1)) + half_count
    if bucket < 0:
        sub_bucket -= half_count
        bucket = 0
    return (sub_bucket << bucket) + (1 << bucket) - 1


def _build_hdr(slots: list[tuple[int, int]], significant_figures: int) -> HdrHistogram:
    hist = HdrHistogram(1, HIGHEST_US, significant_figures)
    for index, count in slots:
        # The lowest value of a slot maps back to the same slot, so the copy is exact.
        hist.record_value(hist.get_value_from_index(index), count)
    return hist
