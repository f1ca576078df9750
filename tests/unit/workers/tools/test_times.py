"""Times typed at the command line (durations, ISO 8601) and printed (ISO 8601 UTC)."""

from __future__ import annotations

import pytest

from workers.tools.times import TimeError, iso_ms, iso_s, parse_duration_s, parse_when_s

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172_800), ("1w", 604_800),
     ("1h30m", 5400), ("1.5h", 5400), (" 2D ", 172_800)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds
    assert parse_when_s(text, NOW) == NOW - seconds


@pytest.mark.parametrize(
    ("text", "epoch_s"),
    [
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T08:00Z", NOW),
        ("2027-01-15T09:00:00+01:00", NOW),
        ("2027-01-15T08:00:00", NOW),  # no offset: UTC
        ("2027-01-15", NOW - 8 * 3600),
        ("2027-01-15T08:00:00.500z", NOW + 0.5),
    ],
)
def test_iso_times(text: str, epoch_s: float) -> None:
    assert parse_when_s(text, 0) == epoch_s


@pytest.mark.parametrize(
    "text", ["", "1", "h", "1x", "-1h", "1h-", "yesterday", "2027-13-01", "9" * 100, "1e9h"]
)
def test_anything_else_is_refused_with_the_forms_accepted(text: str) -> None:
    with pytest.raises(TimeError, match=r"duration|ISO 8601|give a time"):
        parse_when_s(text, NOW)


def test_printed_times_are_iso_utc_with_milliseconds() -> None:
    assert iso_ms(1_800_000_000_250) == "2027-01-15T08:00:00.250Z"
    assert iso_s(NOW + 0.25) == "2027-01-15T08:00:00.250Z"
    assert iso_ms(None) == "-"
