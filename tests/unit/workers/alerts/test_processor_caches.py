"""workers.alerts.processor's per-alert shortcuts against the straightforward way: the per-code
answers (`_code_info`), the per-recipient-list routes (`_routes`) and the hot loop's inline
fan-out and counts."""

from __future__ import annotations

from collections import Counter
from typing import cast

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from broker.producer import partition_for_key
from tests.unit.records import written
from tests.unit.workers.alerts.helpers import TOPICS, run_batch
from throttling import (
    CorrelationPolicy,
    RegionalPolicy,
    RegionCapacity,
    StormParams,
    StormPolicy,
    normalize_alert_code,
)
from workers.alerts import KNOWN_ALERT_CODES, AlertMetrics, AlertProcessor
from workers.alerts.processor import _CODE_CACHE_CHARS, _CODE_CACHE_MAX, _ROUTE_CACHE_MAX
from workers.runtime.metrics import CommonMetrics


def _processor() -> AlertProcessor:
    return AlertProcessor(
        topics=TOPICS, metrics=AlertMetrics(CommonMetrics(CollectorRegistry(), version="t"))
    )


# Codes as devices send them: known ones in every spelling, unknown ones, junk.
_BASE_CODES = ["8F35", "8F36", "8F1F", "8F3F", "8F75", "AD1", "N24", "8F43", "ZZ9"]
_spelled = st.builds(
    lambda code, form: form.format(code=code, low=code.lower()),
    st.sampled_from(_BASE_CODES),
    st.sampled_from(["{code}", "{low}", "0x{code}", "0X{low}", " {code} ", "{code}\n"]),
)
_codes = st.one_of(_spelled, st.text(max_size=6), st.text(min_size=33, max_size=40))
_code_sets = st.lists(_spelled, max_size=4)


def _expected(
    code: str,
    exclusions: list[str],
    high_priority: list[str],
    mp102: tuple[list[str], list[str]] | None,
) -> tuple[str, bool, bool, str]:
    """What the per-code answers are by definition (docs/alerts.md)."""
    canonical = normalize_alert_code(code)
    excluded = {normalize_alert_code(c) for c in exclusions}
    priority = excluded | {normalize_alert_code(c) for c in high_priority}
    if mp102 is None:  # the rule off, with its default codes
        outage, restore = CorrelationPolicy().outage_codes, CorrelationPolicy().restore_codes
    else:
        outage, restore = frozenset(mp102[0]), frozenset(mp102[1])
    label = canonical if canonical in KNOWN_ALERT_CODES | priority else "other"
    in_rule = canonical in {normalize_alert_code(c) for c in (*outage, *restore)}
    return label, canonical in priority, in_rule, canonical


_change = st.one_of(
    st.tuples(st.just("exclusions"), _code_sets),
    st.tuples(st.just("high_priority"), _code_sets),
    st.tuples(st.just("mp102"), st.none() | st.tuples(_code_sets, _code_sets)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(_change, st.lists(_codes, min_size=1, max_size=8)), min_size=1, max_size=6
    )
)
def test_code_answers_are_the_definition_before_and_after_every_change(
    steps: list[tuple[tuple[str, object], list[str]]],
) -> None:
    # One change at a time, then look-ups: a cache a change forgets to empty shows.
    processor = _processor()
    exclusions: list[str] = []
    high_priority: list[str] = []
    mp102: tuple[list[str], list[str]] | None = None
    for (what, drawn), codes in steps:
        if what == "exclusions":
            exclusions = cast(list[str], drawn)
            processor.set_exclusions(exclusions)
        elif what == "high_priority":
            high_priority = cast(list[str], drawn)
            processor.set_capacity(
                RegionalPolicy(
                    regions={"north": RegionCapacity(rate_per_s=10, burst=10)},
                    high_priority_codes=frozenset(high_priority),
                )
            )
        elif drawn is None:
            mp102 = None
            processor.set_mp102(CorrelationPolicy())
        else:
            outage_codes, restore_codes = cast(tuple[list[str], list[str]], drawn)
            # A code may not be both (CorrelationPolicy refuses it): the outage set wins.
            outage = {normalize_alert_code(c) for c in outage_codes}
            mp102 = (
                outage_codes,
                [c for c in restore_codes if normalize_alert_code(c) not in outage],
            )
            processor.set_mp102(
                CorrelationPolicy(
                    enabled=True,
                    outage_codes=frozenset(mp102[0]),
                    restore_codes=frozenset(mp102[1]),
                )
            )
        for code in codes * 2:  # the second time from the cache
            assert processor._code_info(code) == _expected(code, exclusions, high_priority, mp102)


def test_the_code_cache_is_bounded_in_number_and_length() -> None:
    processor = _processor()
    long_code = "8" * (_CODE_CACHE_CHARS + 1)
    assert processor._code_info(long_code)[0] == "other"
    assert long_code not in processor._codes
    for n in range(_CODE_CACHE_MAX + 100):
        processor._code_info(f"C{n}")
    assert len(processor._codes) == _CODE_CACHE_MAX
    # Past the bound each code is still answered, just not kept.
    assert processor._code_info("8f35") == ("8F35", False, True, "8F35")


_recipient = st.one_of(
    st.sampled_from(["", "90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-02-00-00", "A", "é"]),
    st.text(max_size=8),
    st.text(min_size=200, max_size=300),
)


@settings(max_examples=300, deadline=None)
@given(
    lists=st.lists(st.lists(_recipient, max_size=5), min_size=1, max_size=6),
    partitions=st.lists(st.integers(1, 12), min_size=1, max_size=3),
)
def test_routes_are_each_distinct_recipient_at_its_murmur2_partition(
    lists: list[list[str]], partitions: list[int]
) -> None:
    processor = _processor()
    for n_parts in partitions:  # the partition count may change between batches
        for recipients in lists * 2:  # the second time from the cache
            expected = []
            for recipient in dict.fromkeys(recipients):
                if recipient:
                    key = recipient.encode()
                    expected.append((key, partition_for_key(key, n_parts)))
            assert list(processor._routes(tuple(recipients), n_parts)) == expected


def test_the_route_cache_is_bounded_in_number_and_size() -> None:
    processor = _processor()
    big = ("x" * 300,)
    processor._routes(big, 3)
    assert big not in processor._route_cache(3)
    for n in range(_ROUTE_CACHE_MAX + 50):
        processor._routes((f"U{n}",), 3)
    assert len(processor._route_cache(3)) == _ROUTE_CACHE_MAX
    processor._routes(("U1",), 4)
    assert len(processor._route_cache(4)) == 1  # a new partition count starts afresh


_alert = st.fixed_dictionaries(
    {
        "device_id": st.sampled_from(["00-DB-00-00-00-00-00-01", "00-db-00-00-00-00-00-02"]),
        "alert_code": _spelled,
        # Within the schema's bound (broker.schemas.MAX_RECIPIENT_CHARS); longer ones are
        # invalid_schema dead letters (test_processor.py).
        "recipients": st.lists(
            st.one_of(_recipient.filter(lambda r: len(r) <= 64), st.text(min_size=40, max_size=64)),
            max_size=4,
        ),
        "region": st.sampled_from(["north", "central", "south", None]),
        "raised_at_ms": st.integers(0, 10**13),
    }
)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(_alert, max_size=12), min_size=1, max_size=4))
def test_the_hot_loop_writes_and_counts_as_the_straightforward_fan_out(
    batches: list[list[dict[str, object]]],
) -> None:
    # Few alerts per (device, code) under the default storm policy (10 a window): each is
    # forwarded, so every alert with a recipient must go to each distinct non-empty one,
    # keyed and partitioned by it, and be counted received and forwarded under its labels.
    processor = _processor()
    # No storm whatever the draw repeats: every alert takes the forwarding path.
    processor.guard.set_policy(
        StormPolicy(default=StormParams(window_s=1, max_alerts=1_000_000, period_s=1))
    )
    for docs in batches:
        values = [msgspec.json.encode(doc) for doc in docs]
        out, report = run_batch(processor, values)
        expected_records = []
        received: Counter[tuple[str, str]] = Counter()
        forwarded: Counter[tuple[str, str]] = Counter()
        dead = 0
        for doc, value in zip(docs, values, strict=True):
            code = normalize_alert_code(str(doc["alert_code"]))
            labels = (
                str(doc["region"] or "unknown"),
                code if code in KNOWN_ALERT_CODES else "other",
            )
            received[labels] += 1
            recipients = [r for r in dict.fromkeys(doc["recipients"]) if r]  # type: ignore[call-overload]
            if not recipients:
                dead += 1
                continue
            for recipient in recipients:
                key = recipient.encode()
                expected_records.append((partition_for_key(key, 3), key, value))
            forwarded[labels] += len(recipients)
        got = [(w.partition, w.key, w.value) for w in written(out, TOPICS.alerts_outbound)]
        assert sorted(got) == sorted(expected_records)
        assert report.received == dict(received)
        assert report.forwarded == {k: v for k, v in forwarded.items() if v}
        assert report.deadlettered == ({"no_recipients": dead} if dead else {})
