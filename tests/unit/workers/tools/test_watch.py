from __future__ import annotations

from typing import NamedTuple

import pytest

from broker.topics import Topics
from workers.tools.watch import WatchError, format_record, resolve_topic


class Rec(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@pytest.mark.parametrize("name", ["dcc.sr.outbound", "sr.outbound", "sr_outbound"])
def test_topic_names_resolve_with_the_prefix(name: str) -> None:
    assert resolve_topic(name, Topics.with_prefix("p.")) == "p.dcc.sr.outbound"


def test_an_unknown_topic_lists_the_choices() -> None:
    with pytest.raises(WatchError, match=r"unknown topic 'sr\.nowhere'.*alerts\.outbound"):
        resolve_topic("sr.nowhere", Topics.with_prefix(""))


def test_records_print_on_one_line_whatever_they_hold() -> None:
    line = format_record(Rec(2, 7, b"U1", b'{"a": 1,\n "b": [2]}', (("h", b"v"),)))
    assert line == '2/7  U1  [h=v]  {"a":1,"b":[2]}'
    assert format_record(Rec(0, 1, None, None)) == "0/1  -  null (tombstone)"
    assert format_record(Rec(0, 2, b"k", b"\xff not json")) == "0/2  k  b'\\xff not json'"
