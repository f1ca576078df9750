from __future__ import annotations

import pytest

from broker.topics import Topics
from tests.unit.records import FakeRecord
from workers.tools.watch import WatchError, format_record, resolve_topic


@pytest.mark.parametrize("name", ["dcc.sr.outbound", "sr.outbound", "sr_outbound"])
def test_topic_names_resolve_with_the_prefix(name: str) -> None:
    assert resolve_topic(name, Topics.with_prefix("p.")) == "p.dcc.sr.outbound"


def test_an_unknown_topic_lists_the_choices() -> None:
    with pytest.raises(WatchError, match=r"unknown topic 'sr\.nowhere'.*alerts\.outbound"):
        resolve_topic("sr.nowhere", Topics.with_prefix(""))


def test_records_print_on_one_line_whatever_they_hold() -> None:
    json = b'{"a": 1,\n "b": [2]}'
    line = format_record(
        FakeRecord(topic="t", partition=2, offset=7, key=b"U1", value=json, headers=[("h", b"v")])
    )
    assert line == '2/7  U1  [h=v]  {"a":1,"b":[2]}'
    tombstone = FakeRecord(topic="t", offset=1)
    assert format_record(tombstone) == "0/1  -  null (tombstone)"
    not_json = FakeRecord(topic="t", offset=2, key=b"k", value=b"\xff not json")
    assert format_record(not_json) == "0/2  k  b'\\xff not json'"
