"""`dccgate admin`: the configuration in force (sources, `config show`), `--dry-run`, times
given as durations or ISO, traffic's hysteresis flags, and the token's variable name."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from tests.unit.workers.tools.test_admin_cli import USER, FakeApi, run
from workers.config import tokens

DEFAULT_TRAFFIC = {
    "version": 0,
    "source": "default",
    "note": "traffic management is off: nothing is throttled (PUT /v1/traffic turns it on)",
}
STORM = {
    "default": {"window_s": 600, "max_alerts": 10, "period_s": 600},
    "per_code": {},
    "version": 0,
    "source": "default",
    "note": "the built-in storm policy",
}


def test_a_default_item_shows_its_source_and_note_not_empty_fields() -> None:
    api = FakeApi({("GET", "/v1/traffic"): (200, DEFAULT_TRAFFIC)})
    ran = run(["traffic", "get"], api)
    assert ran.code == 0
    assert ran.out == (f"SOURCE  built-in default (never set)\nNOTE    {DEFAULT_TRAFFIC['note']}\n")
    api = FakeApi({("GET", "/v1/alerts/storm-policy"): (200, STORM)})
    ran = run(["storm-policy", "get"], api)
    assert "(default)   600       10          600" in ran.out
    assert ran.out.endswith("NOTE    the built-in storm policy\n")


def test_set_merges_into_the_value_in_force_without_its_envelope() -> None:
    stored = {"capacity_per_s": 100, "operating_threshold_per_s": 80, "version": 3}
    api = FakeApi(
        {
            ("GET", "/v1/traffic"): (200, {**stored, "source": "file"}),
            ("PUT", "/v1/traffic"): (200, {**stored, "exit_hold_s": 5, "version": 4}),
        }
    )
    ran = run(["traffic", "set", "--exit-margin-ratio", "0.1", "--exit-hold-s", "5"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [
        {
            "capacity_per_s": 100,
            "operating_threshold_per_s": 80,
            "exit_margin_ratio": 0.1,
            "exit_hold_s": 5.0,
            "version": 3,
        }
    ]
    # From a default: the default's fields are the start, version 0 creates it.
    api = FakeApi({("GET", "/v1/traffic"): (200, DEFAULT_TRAFFIC)})
    run(["traffic", "set", "--capacity", "10", "--threshold", "5"], api)
    assert api.put_bodies() == [
        {"capacity_per_s": 10.0, "operating_threshold_per_s": 5.0, "version": 0}
    ]


def test_dry_run_asks_the_api_and_prints_the_changes() -> None:
    answer = {
        "dry_run": True,
        "key": "traffic",
        "would_write": True,
        "changes": {"capacity_per_s": {"from": None, "to": 10.0}},
        "version": 0,
        "version_after": 1,
        "source": "default",
    }
    api = FakeApi(
        {
            ("GET", "/v1/traffic"): (200, DEFAULT_TRAFFIC),
            ("PUT", "/v1/traffic?dry_run=true"): (200, answer),
        }
    )
    ran = run(["traffic", "set", "--capacity", "10", "--threshold", "5", "--dry-run"], api)
    assert ran.code == 0, ran.err
    assert [s.url.split("8080")[1] for s in api.sent if s.method == "PUT"] == [
        "/v1/traffic?dry_run=true"
    ]
    assert ran.out.splitlines() == [
        "dry run: traffic would go from version 0 (default) to 1; nothing was written",
        "FIELD           NOW  WOULD BE",
        "capacity_per_s  -    10",
    ]
    same = {**answer, "would_write": False, "changes": {}, "version_after": 0}
    api = FakeApi({("PUT", "/v1/alerts/storm-policy?dry_run=true"): (200, same)})
    ran = run(["storm-policy", "set", "--file", "-", "--dry-run"], api, stdin="{}")
    assert ran.out == "dry run: traffic would not change (stays at version 0)\n"


def test_bulk_quarantine_dry_run_lists_what_would_be_decided() -> None:
    query = urllib.parse.urlencode({"user_id": USER, "state": "pending", "limit": 1000})
    items = [{"id": f"{USER}:00-DB-12-34-56-78-90-A0:1", "state": "pending", "at_s": 1.5}]
    api = FakeApi({("GET", f"/v1/quarantine?{query}"): (200, {"items": items, "more": False})})
    ran = run(["quarantine", "release", "--user", USER, "--dry-run"], api)
    assert ran.code == 0, ran.err
    assert [s.method for s in api.sent] == ["GET"]
    assert ran.out.startswith("dry run: would release 1 pending request(s); nothing was decided")
    assert "1970-01-01T00:00:01.500Z" in ran.out
    ran = run(["quarantine", "delete", f"{USER}:00-DB-12-34-56-78-90-A0:1", "--dry-run"])
    assert ran.code == 2
    assert "--dry-run is for bulk decisions" in ran.err


def test_times_are_asked_as_durations_or_iso() -> None:
    api = FakeApi()
    before_ms = (time.time() - 3600) * 1000
    run(["audit", "--since", "1h", "--until", "2026-01-31T09:00:00Z"], api)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(api.sent[0].url).query)
    assert abs(int(query["since_ms"][0]) - before_ms) < 5000
    assert query["until_ms"] == ["1769850000000"]
    ran = run(["audit", "--since", "1h", "--since-ms", "5"])
    assert (ran.code, "not both" in ran.err) == (2, True)
    ran = run(["audit", "--since", "soon"])
    assert (ran.code, "--since:" in ran.err) == (2, True)
    api = FakeApi()
    run(["quarantine", "list", "--from", "2026-01-31T10:00+01:00", "--to", "1d"], api)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(api.sent[0].url).query)
    assert query["from"] == ["2026-01-31T09:00:00.000Z"]
    assert query["to"][0].endswith("Z")


def test_config_show_prints_every_item_with_its_source() -> None:
    items = [
        {
            "key": "alerts.mp102",
            "kind": "alerts.mp102",
            "user_id": None,
            "path": "/v1/alerts/mp102",
            "source": "default",
            "version": 0,
            "by": None,
            "at_ms": None,
            "note": "the MP102 rule is off",
            "value": {"enabled": False, "outage_codes": ["AD1"]},
        },
        {
            "key": "traffic",
            "kind": "traffic",
            "user_id": None,
            "path": "/v1/traffic",
            "source": "api",
            "version": 2,
            "by": "operator:bootstrap",
            "at_ms": 1_769_850_000_000,
            "note": None,
            "value": {"capacity_per_s": 100},
        },
    ]
    api = FakeApi({("GET", "/v1/config"): (200, {"offset": 4, "items": items})})
    ran = run(["config", "show"], api)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines() == [
        "KEY           SOURCE   VERSION  SET BY              SET AT (UTC)",
        "alerts.mp102  default  0        -                   -",
        "traffic       api      2        operator:bootstrap  2026-01-31T09:00:00.000Z",
        "",
        "alerts.mp102  (default, version 0)",
        "  the MP102 rule is off",
        "  enabled       no",
        "  outage_codes  AD1",
        "",
        "traffic  (api, version 2)",
        "  capacity_per_s  100",
    ]
    ran = run(["config", "show", "--key", "traffic", "--json"], api)
    assert '"key": "traffic"' in ran.out
    assert "alerts.mp102" not in ran.out


def test_the_old_token_variable_still_works_with_a_warning() -> None:
    tokens._warned.clear()
    api = FakeApi({("GET", "/v1/users"): (200, {"users": {}})})
    ran = run(["users", "list"], api, env={"DCCGATE_ADMIN_TOKEN": "op-secret"})
    assert ran.code == 0
    assert api.sent[0].headers["Authorization"] == "Bearer op-secret"
    ran = run(["users", "list"], api, env={})
    assert ran.code == 2
    assert "set DCCGATE_TOKEN" in ran.err


@pytest.mark.parametrize("argv", [["loadtest", "storm", "--token", "dcg_secret"]])
def test_no_secret_on_the_command_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from workers.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "export DCCGATE_TOKEN, or give --token-file F" in err
    assert "dcg_secret" not in err


def test_every_admin_command_answers_json() -> None:
    """Each leaf takes --json, or (get/put/post/delete PATH) prints JSON always."""
    from workers.cli import _parser
    from workers.tools.completion import completion_table

    table = completion_table(_parser())
    leaves = [
        node
        for node, words in table.items()
        if node.startswith("dccgate admin ")
        and not any(w in table for w in (f"{node} {x}" for x in words))
    ]
    raw = {"dccgate admin get", "dccgate admin put", "dccgate admin post", "dccgate admin delete"}
    assert len(leaves) > 25
    assert [n for n in leaves if n not in raw and "--json" not in table[n]] == []


def test_a_single_decision_prints_its_times_in_iso_utc() -> None:
    rid = f"{USER}:00-DB-12-34-56-78-90-A0:1"
    answer = {"id": rid, "state": "released", "at_s": 1_796_597_151.979, "decided_at_ms": 5}
    api = FakeApi({("POST", f"/v1/quarantine/{rid}/release"): (200, answer)})
    ran = run(["quarantine", "release", rid], api)
    assert ran.code == 0, ran.err
    assert "AT (UTC)          2026-12-06T22:45:51.979Z" in ran.out
    assert "DECIDED AT (UTC)  1970-01-01T00:00:00.005Z" in ran.out
    assert "1796597151" not in ran.out
