"""Bounded memory whatever the number of devices (issue: "millions of distinct devices must
not grow memory without limit"): one million distinct devices through a StormGuard.

Memory is measured with tracemalloc: what the guard keeps (key strings, packed windows,
dict slots), the device IDs being made on the fly and dropped by the caller, as a worker
decoding records would. Only memory counts are asserted, never time (STYLE.md rule 19).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from throttling.storm import StormGuard, StormParams, StormPolicy

pytestmark = pytest.mark.slow

DEVICES = 1_000_000
BYTES_PER_KEY = 200
"""The bound docs/alerts.md states per key in a window (measured about 140-150)."""


def _device(n: int) -> str:
    h = f"{n:08X}"  # EUI-64 like 00-DB-00-00-00-0F-42-3F: 23 characters, as on the wire
    return f"00-DB-00-00-{h[0:2]}-{h[2:4]}-{h[4:6]}-{h[6:8]}"


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _guard(max_keys: int) -> StormGuard[None]:
    policy = StormPolicy(default=StormParams(window_s=60, max_alerts=10, period_s=60))
    return StormGuard(policy, max_keys=max_keys)


def _held_bytes(baseline: int) -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - baseline


@pytest.mark.usefixtures("traced")
def test_a_million_devices_within_one_window_stay_under_the_key_cap() -> None:
    cap = 100_000
    guard = _guard(cap)
    baseline = tracemalloc.get_traced_memory()[0]
    decide = guard.decide
    for n in range(cap):
        decide(_device(n), "8F35", None, 1.0)
    per_key = _held_bytes(baseline) / cap
    for n in range(cap, DEVICES):  # all within the window: only the cap can bound them
        decide(_device(n), "8F35", None, 1.0 + n / DEVICES)
    held = _held_bytes(baseline)
    stats = guard.stats()
    print(f"{per_key:.0f} bytes a key; {held / 1e6:.1f} MB held for {stats.tracked_keys} keys")
    assert per_key <= BYTES_PER_KEY
    assert stats.tracked_keys <= cap
    assert stats.evicted_keys >= DEVICES - cap
    # The dict keeps some freed slots until it resizes: allow half as much again.
    assert held <= 1.5 * cap * BYTES_PER_KEY


@pytest.mark.usefixtures("traced")
def test_a_million_devices_over_time_are_bounded_by_expiry() -> None:
    # 1,000 new devices a second, each alerting once, windows of 60 s, flush once a
    # second: about 60,000 keys are held at any time, never a million.
    guard = _guard(1_000_000)
    baseline = tracemalloc.get_traced_memory()[0]
    decide, peak_keys, peak_bytes = guard.decide, 0, 0
    for n in range(DEVICES):
        now_s = n / 1000
        decide(_device(n), "8F35", None, now_s)
        if n % 1000 == 999:
            guard.flush(now_s)
            peak_keys = max(peak_keys, guard.tracked_keys)
        if n % 100_000 == 99_999:
            peak_bytes = max(peak_bytes, _held_bytes(baseline))
    stats = guard.stats()
    print(f"peak {peak_keys} keys, {peak_bytes / 1e6:.1f} MB; expired {stats.expired_keys}")
    assert peak_keys <= 61_000
    assert stats.evicted_keys == 0
    assert stats.expired_keys >= DEVICES - peak_keys
    assert peak_bytes <= 1.5 * 61_000 * BYTES_PER_KEY
