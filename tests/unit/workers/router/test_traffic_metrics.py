"""The episode metrics of traffic management (SECMP0067, issue 19)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from throttling import Allocation, SystemView, TrafficManager, TrafficPolicy
from workers.router.traffic import TrafficControl, TrafficMetrics


def test_episode_age_and_durations_are_exported() -> None:
    registry = CollectorRegistry()
    control = TrafficControl("me")
    metrics = TrafficMetrics(registry, control)
    assert registry.get_sample_value("dccgate_traffic_episode_age_seconds") == 0.0
    policy = TrafficPolicy(
        capacity_per_s=1000.0,
        operating_threshold_per_s=800.0,
        default_allocation=Allocation(rate_per_s=10.0, burst=5),
        exit_hold_s=0.0,
    )
    control.manager = TrafficManager(policy, peer_id="me")
    now = time.time()
    control.manager.update_view(SystemView(at_s=now - 90.0, admitted_per_s=900.0))
    age = registry.get_sample_value("dccgate_traffic_episode_age_seconds")
    assert age is not None
    assert 90.0 <= age < 100.0
    control.manager.update_view(SystemView(at_s=now - 87.0, admitted_per_s=0.0))  # 3 s
    control.manager.update_view(SystemView(at_s=now - 80.0, admitted_per_s=900.0))
    control.manager.update_view(SystemView(at_s=now - 40.0, admitted_per_s=0.0))  # 40 s
    name = "dccgate_traffic_episode_duration_seconds"
    assert registry.get_sample_value(f"{name}_count") == 2
    assert registry.get_sample_value(f"{name}_sum") == 43.0
    assert registry.get_sample_value(f"{name}_bucket", {"le": "5.0"}) == 1
    assert registry.get_sample_value(f"{name}_bucket", {"le": "60.0"}) == 2
    assert registry.get_sample_value(f"{name}_bucket", {"le": "+Inf"}) == 2
    assert registry.get_sample_value("dccgate_traffic_episode_age_seconds") == 0.0
    # Counted once: a second scrape sees the same histogram.
    assert registry.get_sample_value(f"{name}_count") == 2
    assert metrics.throttled is not None
