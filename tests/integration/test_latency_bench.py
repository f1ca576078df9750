"""The latency benchmark end to end at a low rate: both pipelines answer every request and
the figures are sane (the benchmark itself asserts nothing)."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.brokers import SessionBroker
from workers.config.settings import Settings
from workers.tools.bench import bench_run
from workers.tools.latency import _one

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pipeline", ["passthrough", "router"])
async def test_one_pipeline_at_a_steady_rate(
    kafka_broker: SessionBroker, settings: Settings, pipeline: str
) -> None:
    settings = msgspec.structs.replace(settings, bootstrap=kafka_broker.bootstrap)
    async with bench_run(settings) as run:
        result = await _one(run, pipeline, 200.0, 3.0)
    assert result.sent == 600
    assert result.lost == 0
    assert result.refused == 0  # the router accepted every request: the full path measured
    # Requests sent after the first second of warm-up, give or take the tick.
    assert 350 <= result.measured <= 450
    assert 0 < result.p50_ms <= result.p99_ms <= result.p99_9_ms < 5_000
