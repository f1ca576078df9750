"""workers.alerts.metrics.CounterChildren: the same samples as `.labels(...).inc(n)` each time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from workers.alerts.metrics import CounterChildren

_labels = st.tuples(
    st.sampled_from(["north", "south", "unknown"]), st.sampled_from(["8F35", "other"])
)


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(st.lists(st.tuples(_labels, st.integers(0, 10**6)), max_size=8), max_size=5)
)
def test_counter_children_count_as_labels_inc_does(
    batches: list[list[tuple[tuple[str, str], int]]],
) -> None:
    cached_registry, plain_registry = CollectorRegistry(), CollectorRegistry()
    labels = ["region", "alert_code"]
    cached = Counter("dccgate_t", "t", labels, registry=cached_registry)
    plain = Counter("dccgate_t", "t", labels, registry=plain_registry)
    children = CounterChildren(cached)
    for counts in batches:
        children.add(counts)
        for (region, code), n in counts:
            plain.labels(region, code).inc(n)

    def samples(registry: CollectorRegistry) -> list[tuple[str, list[tuple[str, str]], float]]:
        return sorted(
            (s.name, sorted(s.labels.items()), s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        )

    assert samples(cached_registry) == samples(plain_registry)
