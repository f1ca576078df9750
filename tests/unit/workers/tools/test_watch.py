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
    assert line == '1970-01-01T00:00:01.000Z  2/7  U1  [h=v]  {"a":1,"b":[2]}'
    tombstone = FakeRecord(topic="t", offset=1)
    assert format_record(tombstone) == "1970-01-01T00:00:01.000Z  0/1  -  null (tombstone)"
    not_json = FakeRecord(topic="t", offset=2, key=b"k", value=b"\xff not json")
    assert format_record(not_json) == "1970-01-01T00:00:01.000Z  0/2  k  b'\\xff not json'"


def test_each_line_starts_with_the_record_time_in_iso_utc() -> None:
    rec = FakeRecord(topic="t", offset=3, key=b"k", value=b"1", timestamp=1_796_597_151_979)
    assert format_record(rec) == "2026-12-06T22:45:51.979Z  0/3  k  1"


def test_a_record_without_a_time_shows_a_dash() -> None:
    assert format_record(FakeRecord(topic="t", offset=4, timestamp=-1)).startswith("-  0/4")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--offset", "5"], "--offset needs --partition N"),
        (["--partition", "0", "--offset", "5", "--since", "1h"], "--offset or --since"),
        (["--partition", "0", "--offset", "-1"], "--offset must be 0 or more"),
        (["--partition", "-2"], "--partition must be 0 or more"),
        (["--since", "yesterday"], "--since: 'yesterday' is neither"),
        (["--since", "-5"], "--since must be 0 or more"),
    ],
)
def test_bad_watch_flags_are_refused_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from workers.cli import main

    assert main(["watch", "sr.outbound", "--bootstrap", "127.0.0.1:1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_since_takes_seconds_durations_and_iso_times() -> None:
    import time

    from workers.tools.watch import _since_s

    assert _since_s("90") == 90.0
    assert _since_s("30m") == pytest.approx(1800, abs=2)
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    assert _since_s(hour_ago) == pytest.approx(3600, abs=2)
