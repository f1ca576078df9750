"""`dccgate admin forecasts` and `dccgate admin report sr-variance` over a fake transport."""

from __future__ import annotations

import json

import pytest

from tests.unit.workers.tools.test_admin_cli import FakeApi, run
from workers.admin.report import report_csv, variance_report
from workers.tools.admin_cli import AdminCliError
from workers.tools.admin_cli.cmd_forecasts import parse_count
from workers.tools.admin_cli.cmd_report import render_report

USER = "90-B3-D5-1F-30-01-00-00"
OTHER = "90-B3-D5-1F-30-02-00-00"
PATH = f"/v1/forecasts/{USER}/2027-01"
CURRENT = {"user_id": USER, "month": "2027-01", "total": 15, "version": 3,
           "counts": {"4.1.1": 10, "7.2": 5}, "note": "winter"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("4.1.1=120000", ("4.1.1", 120000)),
        ("7.2=1_000", ("7.2", 1000)),
        (" 7.2 = 5,000", ("7.2", 5000)),
    ],
)
def test_counts_parse(text: str, parsed: tuple[str, int]) -> None:
    assert parse_count(text) == parsed


@pytest.mark.parametrize("text", ["4.1.1", "=5", "4.1.1=-5", "4.1.1=1.5", "4.1.1=", "4.1.1=٣"])
def test_bad_counts_are_usage_errors(text: str) -> None:
    with pytest.raises(AdminCliError) as caught:
        parse_count(text)
    assert caught.value.exit_code == 2


def test_set_merges_counts_and_keeps_the_note() -> None:
    api = FakeApi({("GET", PATH): (200, CURRENT), ("PUT", PATH): (200, CURRENT)})
    ran = run(["forecasts", "set", USER.lower(), "2027-01", "--count", "4.1.1=20",
               "--count", "11.3=7", "--remove", "7.2"], api)  # fmt: skip
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [
        {"counts": {"4.1.1": 20, "11.3": 7}, "note": "winter", "version": 3}
    ]


def test_set_replace_starts_from_nothing_and_a_new_forecast_is_version_0() -> None:
    api = FakeApi({("PUT", PATH): (200, CURRENT)})
    ran = run(["forecasts", "set", USER, "2027-01", "--count", "4.1.1=20", "--replace"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [{"counts": {"4.1.1": 20}, "version": 0}]


def test_set_needs_something_to_change() -> None:
    ran = run(["forecasts", "set", USER, "2027-01"])
    assert ran.code == 2
    assert "--count" in ran.err


def test_get_and_list_are_tables() -> None:
    listing = {"items": [CURRENT, {**CURRENT, "user_id": OTHER, "total": 9, "version": 1}]}
    api = FakeApi({("GET", PATH): (200, CURRENT),
                   ("GET", "/v1/forecasts?month=2027-01"): (200, listing)})  # fmt: skip
    ran = run(["forecasts", "get", USER, "2027-01"], api)
    assert "TOTAL    15" in ran.out
    assert "4.1.1  10" in ran.out
    ran = run(["forecasts", "list", "--month", "2027-01"], api)
    lines = ran.out.splitlines()
    assert lines[0].split() == ["USER", "ID", "MONTH", "TOTAL", "SRVS", "VERSION"]
    assert lines[2].split() == [OTHER, "2027-01", "9", "2", "1"]


def test_delete_sends_the_version_as_if_match() -> None:
    api = FakeApi({("DELETE", PATH): (200, {"deleted": f"forecasts/{USER}/2027-01"})})
    ran = run(["forecasts", "delete", USER, "2027-01", "--version", "4"], api)
    assert ran.code == 0, ran.err
    assert api.sent[-1].headers["If-Match"] == "4"


REPORT = variance_report(
    "2027-01",
    {USER: {"4.1.1": {"accepted": 1600}}, OTHER: {"7.2": {"rejected": 3}}},
    {USER: {"4.1.1": 1000}},
    complete=True,
)


def test_the_report_is_a_readable_table_with_the_flagged_users() -> None:
    api = FakeApi({("GET", "/v1/reports/sr-variance?month=2027-01"): (200, REPORT)})
    ran = run(["report", "sr-variance", "--month", "2027-01"], api)
    assert ran.code == 0, ran.err
    assert "2027-01: complete" in ran.out
    rows = [line.split() for line in ran.out.splitlines()]
    assert [USER, "4.1.1", "1000", "1600", "1600", "0", "0", "0", "+600", "160%",
            "exceptional_demand"] in rows  # fmt: skip
    assert [OTHER, "TOTAL", "-", "3", "0", "3", "0", "0", "-", "-", "no_forecast"] in rows
    assert f"Users sending without a forecast: {OTHER}" in ran.out
    assert f"Users above 150% of forecast: {USER}" in ran.out
    only = render_report(REPORT, users=[OTHER])
    assert USER not in only.split("Users sending")[0]


def test_the_report_as_json_and_csv() -> None:
    class CsvApi(FakeApi):
        def __call__(self, method, url, *, headers, body, timeout_s):  # type: ignore[no-untyped-def]
            if "format=csv" in url:
                self.sent.append(None)  # type: ignore[arg-type]
                assert headers["Accept"] == "text/csv"
                return 200, report_csv(REPORT).encode()
            return super().__call__(method, url, headers=headers, body=body, timeout_s=timeout_s)

    api = CsvApi({("GET", "/v1/reports/sr-variance?month=2027-01"): (200, REPORT)})
    ran = run(["report", "sr-variance", "--month", "2027-01", "--json"], api)
    assert json.loads(ran.out)["month"] == "2027-01"
    ran = run(["report", "sr-variance", "--month", "2027-01", "--csv"], api)
    assert ran.out.splitlines()[0].startswith("month,user_id,srv,forecast,actual")
    ran = run(["report", "sr-variance", "--month", "2027-01", "--csv", "--json"], api)
    assert ran.code == 2


def test_traffic_set_turns_allocations_from_forecasts_on_and_off() -> None:
    current = {"capacity_per_s": 1200, "operating_threshold_per_s": 1000, "version": 2}
    api = FakeApi({("GET", "/v1/traffic"): (200, current), ("PUT", "/v1/traffic"): (200, current)})
    ran = run(["traffic", "set", "--from-forecasts", "--forecast-headroom-ratio", "2"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies()[-1]["allocations_from_forecasts"] == {"headroom_ratio": 2.0}
    on = {**current, "allocations_from_forecasts": {"peak_hour_share": 0.004}}
    api = FakeApi({("GET", "/v1/traffic"): (200, on), ("PUT", "/v1/traffic"): (200, current)})
    ran = run(["traffic", "set", "--no-from-forecasts"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies()[-1]["allocations_from_forecasts"] is None
    ran = run(["traffic", "set", "--no-from-forecasts", "--from-forecasts"], api)
    assert ran.code == 2
