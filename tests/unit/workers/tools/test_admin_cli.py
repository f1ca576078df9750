"""`dccgate admin`: parsing, tables, merge-then-PUT, errors; HTTP is a fake transport."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from workers.cli import _parser, main
from workers.config.settings import ENV_VARS
from workers.tools import admin_cli
from workers.tools.admin_cli import (
    AdminCliError,
    TransportError,
    add_codes,
    api_path,
    cell,
    format_fields,
    format_table,
    iso_ms,
    merge,
    remove_codes,
    run_admin,
)

USER = "90-B3-D5-1F-30-01-00-00"
OTHER = "90-B3-D5-1F-30-02-00-00"
ENV = {"DCCGATE_TOKEN": "op-secret"}


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    """A transport answering from a table of (method, path) -> (status, JSON); it records
    every request, and answers 404 (as the real router does) for anything else."""

    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    fail: TransportError | None = None

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_s: float,
    ) -> tuple[int, bytes]:
        self.sent.append(
            Sent(method, url, dict(headers), None if body is None else json.loads(body))
        )
        if self.fail is not None:
            raise self.fail
        path = url.removeprefix("http://127.0.0.1:8080")
        status, doc = self.answers.get((method, path), (404, {"error": f"no item at {path}"}))
        return status, json.dumps(doc).encode()

    def put_bodies(self) -> list[Any]:
        return [s.body for s in self.sent if s.method == "PUT"]


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run(
    argv: list[str],
    api: FakeApi | None = None,
    *,
    env: Mapping[str, str] = ENV,
    stdin: str = "",
) -> Ran:
    args = _parser().parse_args(["admin", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_admin(
        args,
        environ=env,
        transport=api if api is not None else FakeApi(),
        stdout=out,
        stderr=err,
        stdin=io.StringIO(stdin),
    )
    return Ran(code, out.getvalue(), err.getvalue())


# --- parsing ------------------------------------------------------------------------------

EVERY_COMMAND = [
    ["users", "list"],
    ["users", "get", USER],
    ["users", "set", USER, "--name", "N", "--roles", "IS,GS", "--version", "2"],
    ["users", "delete", USER],
    ["tokens", "issue", USER],
    ["tokens", "list", USER],
    ["tokens", "revoke", USER, "abc"],
    ["tokens", "issue-operator"],
    ["tokens", "list-operators"],
    ["tokens", "revoke-operator", "abc"],
    ["allocations", "get", USER],
    ["allocations", "set", USER, "--rate", "1", "--burst", "2", "--shadow", "--version", "1"],
    ["traffic", "get"],
    ["traffic", "set", "--capacity", "10", "--threshold", "5", "--reserved", "2.2,7.1",
     "--reserved-share", "0.1", "--no-shadow", "--version", "3"],
    ["adt", "get", "dcc"],
    ["adt", "set", USER, "--file", "values.toml"],
    ["exclusions", "get"],
    ["exclusions", "set", "8F3F,8F35"],
    ["exclusions", "add", "8F3F"],
    ["exclusions", "remove", "8F3F"],
    ["storm-policy", "get"],
    ["storm-policy", "set", "--file", "p.json"],
    ["quarantine", "list", "--user", USER],
    ["quarantine", "release", f"{USER}:00-DB-12-34-56-78-90-A0:1"],
    ["quarantine", "delete", f"{USER}:00-DB-12-34-56-78-90-A0:1"],
    ["quarantine", "list", "--rule", "r", "--kind", "user_adt", "--state", "any", "--from",
     "2026-01-31T09:00:00Z", "--to", "2026-02-01T00:00:00Z", "--limit", "5"],
    ["quarantine", "release", "--rule", "r", "--from", "2026-01-31T09:00:00Z", "--limit", "9"],
    ["quarantine", "delete", "--user", USER, "--kind", "data_value"],
    ["audit", "--limit", "5", "--key-prefix", "allocations/", "--since-ms", "1"],
    ["get", "users"],
    ["put", "traffic", "--json", "{}"],
    ["post", "operators/tokens"],
    ["delete", "operators/tokens/abc"],
]  # fmt: skip


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=lambda a: " ".join(a[:2]))
def test_every_command_parses_to_a_handler(argv: list[str]) -> None:
    args = _parser().parse_args(["admin", *argv])
    assert args.command == "admin"
    assert callable(args.admin_handler)


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in parser._actions:
        out.add(action.dest)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                out |= _dests(child)
    return out


def test_no_admin_option_is_read_as_a_setting() -> None:
    # main() passes every parsed flag to build_settings: an admin dest named like a
    # Settings field would silently change the settings (or fail their validation).
    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    admin = commands.choices["admin"]
    assert "admin_url" in _dests(admin)
    clash = _dests(admin) & ({*ENV_VARS, "create_topics", "command"})
    assert clash == set()


def test_options_go_before_or_after_the_sub_command() -> None:
    before = _parser().parse_args(["admin", "--json", "--url", "http://h:1", "users", "list"])
    after = _parser().parse_args(["admin", "users", "list", "--json", "--url", "http://h:1"])
    for args in (before, after):
        assert args.admin_json is True
        assert args.admin_url == "http://h:1"
    plain = _parser().parse_args(["admin", "--timeout", "3", "users", "list"])
    assert plain.admin_json is False
    assert plain.admin_timeout_s == 3.0
    assert plain.admin_token_env == "DCCGATE_TOKEN"


def test_the_token_is_not_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["admin", "--token", "secret", "users", "list"])
    assert exc.value.code == 2
    assert "secret" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ["dcg_abc_SECRETSECRET", "op-secret", "a b"])
def test_a_token_given_as_the_variable_name_is_refused_and_not_echoed(value: str) -> None:
    ran = run(["--token-env", value, "users", "list"], env={value: "x"})
    assert ran.code == 2
    assert "NAME of an environment variable" in ran.err
    assert value not in ran.err


def test_user_ids_are_upper_cased() -> None:
    args = _parser().parse_args(["admin", "users", "get", USER.lower()])
    assert args.user_id == USER


def test_shadow_is_unchanged_unless_given() -> None:
    def parse(*flags: str) -> object:
        return _parser().parse_args(["admin", "allocations", "set", USER, *flags]).shadow

    assert parse() is None
    assert parse("--shadow") is True
    assert parse("--no-shadow") is False


# --- pure helpers -------------------------------------------------------------------------


def test_table_aligns_columns_and_says_when_empty() -> None:
    text = format_table(("USER ID", "NAME"), [("A", "Long name"), ("BBBBBBBBB", None)])
    assert text.splitlines() == [
        "USER ID    NAME",
        "A          Long name",
        "BBBBBBBBB  -",
    ]
    assert format_table(("X",), [], empty="no Users") == "no Users\n"


def test_fields_align_values() -> None:
    assert format_fields([("RATE/S", 200.0), ("SHADOW", False)]) == "RATE/S  200\nSHADOW  no\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (True, "yes"),
        (200.0, "200"),
        (2.5, "2.5"),
        (["IS", "GS"], "IS,GS"),
        ([], "-"),
        ({"a": 1}, '{"a":1}'),
        ("evil\x1b[2Jname\n", "evil\\x1b[2Jname\\n"),
    ],
)
def test_cell(value: object, text: str) -> None:
    assert cell(value) == text


def test_iso_ms_is_utc_with_milliseconds() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_250) == "2023-11-14T22:13:20.250Z"
    assert iso_ms(None) == "-"


def test_merge_keeps_what_is_not_given_and_drops_the_version() -> None:
    current = {"rate_per_s": 1.0, "burst": 2, "shadow": True, "version": 4}
    assert merge(current, {"rate_per_s": 5.0, "burst": None}) == {
        "rate_per_s": 5.0,
        "burst": 2,
        "shadow": True,
    }


def test_code_lists() -> None:
    assert add_codes(["A1", "B2"], ["B2", "C3"]) == ["A1", "B2", "C3"]
    assert remove_codes(["A1", "B2"], ["A1"]) == ["B2"]
    with pytest.raises(AdminCliError, match="not in the exclusion list: Z9"):
        remove_codes(["A1"], ["Z9"])


def test_api_path() -> None:
    assert api_path("users") == "/v1/users"
    assert api_path("/openapi.json") == "/openapi.json"


# --- commands against the fake API --------------------------------------------------------


def test_users_list_is_a_table_sorted_by_user_id() -> None:
    users = {
        OTHER: {"name": "Networks", "roles": ["ED"], "version": 1},
        USER: {"name": "Supply", "roles": ["IS", "GS"], "version": 3},
    }
    api = FakeApi({("GET", "/v1/users"): (200, {"users": users})})
    ran = run(["users", "list"], api)
    assert ran.code == 0
    assert ran.out.splitlines() == [
        "USER ID                  NAME      ROLES  VERSION",
        f"{USER}  Supply    IS,GS  3",
        f"{OTHER}  Networks  ED     1",
    ]
    assert api.sent[0].headers["Authorization"] == "Bearer op-secret"


def test_json_prints_the_answer() -> None:
    doc = {"users": {USER: {"name": "S", "roles": ["IS"], "version": 1}}}
    ran = run(["users", "list", "--json"], FakeApi({("GET", "/v1/users"): (200, doc)}))
    assert json.loads(ran.out) == doc


def test_allocation_set_merges_and_puts_the_version_it_read() -> None:
    path = f"/v1/allocations/{USER}"
    current = {"rate_per_s": 200.0, "burst": 400, "shadow": True, "version": 7}
    saved = {"rate_per_s": 50.0, "burst": 400, "shadow": True, "version": 8}
    api = FakeApi({("GET", path): (200, current), ("PUT", path): (200, saved)})
    ran = run(["allocations", "set", USER, "--rate", "50"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [{"rate_per_s": 50.0, "burst": 400, "shadow": True, "version": 7}]
    assert "RATE/S   50" in ran.out
    assert "VERSION  8" in ran.out


def test_an_explicit_version_is_sent_instead_of_the_one_read() -> None:
    path = f"/v1/allocations/{USER}"
    current = {"rate_per_s": 200.0, "burst": 400, "shadow": False, "version": 7}
    api = FakeApi({("GET", path): (200, current), ("PUT", path): (200, current)})
    run(["allocations", "set", USER, "--burst", "9", "--version", "5"], api)
    assert api.put_bodies()[0]["version"] == 5


def test_a_new_item_is_put_with_version_0_so_it_is_created_only_if_still_absent() -> None:
    path = f"/v1/users/{USER}"
    api = FakeApi({("PUT", path): (200, {"name": "N", "roles": ["IS", "GS"], "version": 1})})
    ran = run(["users", "set", USER, "--name", "N", "--roles", "is,gs"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [{"name": "N", "roles": ["IS", "GS"], "version": 0}]


def test_a_set_that_changes_nothing_writes_nothing() -> None:
    path = f"/v1/allocations/{USER}"
    current = {"rate_per_s": 50.0, "burst": 400, "shadow": False, "version": 3}
    api = FakeApi({("GET", path): (200, current)})
    ran = run(["allocations", "set", USER, "--rate", "50"], api)
    assert ran.code == 0
    assert api.put_bodies() == []
    assert "no change" in ran.err
    assert "VERSION  3" in ran.out


def test_a_set_with_no_field_is_a_usage_error() -> None:
    api = FakeApi()
    ran = run(["allocations", "set", USER], api)
    assert ran.code == 2
    assert "--rate" in ran.err
    assert api.sent == []


def test_a_conflict_shows_the_api_message_and_status() -> None:
    path = f"/v1/allocations/{USER}"
    current = {"rate_per_s": 1.0, "burst": 1, "shadow": False, "version": 2}
    conflict = {"error": "allocations/X was changed by someone else: ..."}
    api = FakeApi({("GET", path): (200, current), ("PUT", path): (409, conflict)})
    ran = run(["allocations", "set", USER, "--burst", "3"], api)
    assert ran.code == 1
    assert "HTTP 409: allocations/X was changed by someone else" in ran.err


TRAFFIC = {
    "capacity_per_s": 5000.0,
    "operating_threshold_per_s": 4000.0,
    "reserved_srvs": ["2.2"],
    "reserved_share": 0.1,
    "shadow": False,
    "default_allocation": {"rate_per_s": 10.0, "burst": 20, "shadow": False},
    "version": 4,
}


def test_traffic_set_merges_the_default_allocation() -> None:
    api = FakeApi({("GET", "/v1/traffic"): (200, TRAFFIC), ("PUT", "/v1/traffic"): (200, TRAFFIC)})
    ran = run(["traffic", "set", "--reserved", "2.2,7.1", "--default-burst", "50"], api)
    assert ran.code == 0, ran.err
    [body] = api.put_bodies()
    assert body["reserved_srvs"] == ["2.2", "7.1"]
    assert body["capacity_per_s"] == 5000.0
    assert body["default_allocation"] == {"rate_per_s": 10.0, "burst": 50, "shadow": False}
    assert body["version"] == 4
    assert "DEFAULT ALLOCATION     10/s, burst 20" in ran.out


def test_traffic_set_can_remove_the_default_allocation_and_reserved_srvs() -> None:
    api = FakeApi({("GET", "/v1/traffic"): (200, TRAFFIC), ("PUT", "/v1/traffic"): (200, TRAFFIC)})
    ran = run(["traffic", "set", "--no-default-allocation", "--reserved", ""], api)
    assert ran.code == 0, ran.err
    [body] = api.put_bodies()
    assert body["default_allocation"] is None
    assert body["reserved_srvs"] == []


def test_traffic_set_refuses_contradicting_flags() -> None:
    ran = run(["traffic", "set", "--no-default-allocation", "--default-rate", "0"])
    assert ran.code == 2
    assert "contradict" in ran.err


def test_exclusions_add_and_remove_put_the_version_read() -> None:
    path = "/v1/alerts/exclusions"
    current = {"alert_codes": ["8F3F", "8F35"], "version": 6}
    api = FakeApi({("GET", path): (200, current), ("PUT", path): (200, current)})
    assert run(["exclusions", "add", "8f36,8F3F"], api).code == 0
    assert run(["exclusions", "remove", "8F3F"], api).code == 0
    assert api.put_bodies() == [
        {"alert_codes": ["8F3F", "8F35", "8F36"], "version": 6},
        {"alert_codes": ["8F35"], "version": 6},
    ]


def test_exclusions_remove_of_an_absent_code_changes_nothing() -> None:
    path = "/v1/alerts/exclusions"
    api = FakeApi({("GET", path): (200, {"alert_codes": ["8F3F"], "version": 1})})
    ran = run(["exclusions", "remove", "0001"], api)
    assert ran.code == 1
    assert "0001" in ran.err
    assert api.put_bodies() == []


def test_tokens_issue_prints_only_the_secret_on_stdout_and_warns() -> None:
    answer = {
        "token": "dcg_abc_SECRET",
        "token_id": "abc",
        "role": "user",
        "user_id": USER,
        "created_at_ms": 0,
        "created_by": "operator:bootstrap",
    }
    api = FakeApi({("POST", f"/v1/users/{USER}/tokens"): (201, answer)})
    ran = run(["tokens", "issue", USER], api)
    assert ran.code == 0
    assert ran.out == "dcg_abc_SECRET\n"
    assert "shown only this once" in ran.err
    assert f"tokens revoke {USER} abc" in ran.err
    assert "SECRET" not in ran.err


def test_tokens_list_table() -> None:
    tokens = [
        {
            "token_id": "abc",
            "role": "user",
            "user_id": USER,
            "created_at_ms": 1_700_000_000_000,
            "created_by": "operator:bootstrap",
        }
    ]
    api = FakeApi({("GET", f"/v1/users/{USER}/tokens"): (200, {"tokens": tokens})})
    lines = run(["tokens", "list", USER], api).out.splitlines()
    assert lines[0].split("  ")[0] == "TOKEN ID"
    assert "2023-11-14T22:13:20.000Z" in lines[1]


def test_users_delete_sends_if_match() -> None:
    api = FakeApi({("DELETE", f"/v1/users/{USER}"): (200, {"deleted": USER})})
    ran = run(["users", "delete", USER, "--version", "3"], api)
    assert ran.code == 0
    assert api.sent[0].headers["If-Match"] == '"3"'
    assert ran.out == f"deleted User {USER}\n"


def test_adt_set_reads_toml(tmp_path: Path) -> None:
    values = tmp_path / "values.toml"
    values.write_text('thresholds = [{ srv = "7.2", window_s = 3600, max = 500 }]\n')
    answer = {
        "thresholds": [{"srv": "7.2", "window_s": 3600, "max": 500, "shadow": False}],
        "value_rules": [],
        "shadow": False,
        "version": 2,
    }
    api = FakeApi({("PUT", f"/v1/adt/users/{USER}"): (200, answer)})
    ran = run(["adt", "set", USER.lower(), "--file", str(values), "--version", "1"], api)
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [
        {"thresholds": [{"srv": "7.2", "window_s": 3600, "max": 500}], "version": 1}
    ]
    assert "7.2  3600      500  no" in ran.out


def test_adt_dcc_and_json_from_stdin() -> None:
    answer = {"thresholds": [], "value_rules": [], "shadow": True, "version": 1}
    api = FakeApi({("PUT", "/v1/adt/dcc"): (200, answer)})
    ran = run(["adt", "set", "DCC", "--file", "-"], api, stdin='{"shadow": true}')
    assert ran.code == 0, ran.err
    assert api.put_bodies() == [{"shadow": True}]
    assert "SCOPE    DCC-wide" in ran.out


def test_an_unreadable_or_invalid_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    assert run(["storm-policy", "set", "--file", str(bad)]).code == 2
    missing = run(["storm-policy", "set", "--file", str(tmp_path / "nope.json")])
    assert missing.code == 2
    assert "cannot read" in missing.err


def test_storm_policy_table_starts_with_the_default() -> None:
    doc = {
        "default": {"window_s": 60, "max_alerts": 10, "period_s": 300},
        "per_code": {"8F1F": {"window_s": 3600, "max_alerts": 2, "period_s": 3600}},
        "version": 1,
    }
    out = run(["storm-policy", "get"], FakeApi({("GET", "/v1/alerts/storm-policy"): (200, doc)}))
    assert out.out.splitlines()[2:] == [
        "ALERT CODE  WINDOW S  MAX ALERTS  PERIOD S",
        "(default)   60        10          300",
        "8F1F        3600      2           3600",
    ]


def test_audit_sends_the_filters_and_shows_utc_times() -> None:
    record = {
        "at_ms": 1_700_000_000_250,
        "by": "operator:bootstrap",
        "action": "put",
        "key": f"allocations/{USER}",
        "version": 2,
        "old": None,
        "new": {},
    }
    query = "/v1/audit?limit=5&key_prefix=allocations%2F&since_ms=7"
    api = FakeApi({("GET", query): (200, {"records": [record]})})
    ran = run(["audit", "--limit", "5", "--key-prefix", "allocations/", "--since-ms", "7"], api)
    assert ran.code == 0, ran.err
    header, row = ran.out.splitlines()
    assert header.split() == ["TIME", "(UTC)", "BY", "ACTION", "KEY", "VERSION"]
    expected = f"2023-11-14T22:13:20.250Z operator:bootstrap put allocations/{USER} 2"
    assert " ".join(row.split()) == expected


def test_quarantine_list_and_release() -> None:
    rid = f"{USER}:00-DB-12-34-56-78-90-A0:1"
    items = [
        {
            "at_s": 0.5,
            "id": rid,
            "user_id": USER,
            "state": "pending",
            "srv": "7.2",
            "rule": "7.2/3600",
            "observed": 4,
            "limit": 3,
            "reason": "...",
        }
    ]
    api = FakeApi(
        {
            ("GET", f"/v1/quarantine?user_id={USER}"): (200, {"items": items}),
            ("POST", f"/v1/quarantine/{rid}/release"): (200, {"released": rid}),
        }
    )
    ran = run(["quarantine", "list", "--user", USER.lower()], api)
    header, row = ran.out.splitlines()
    assert " ".join(header.split()) == "REQUEST ID STATE SRV RULE OBSERVED LIMIT QUARANTINED (UTC)"
    assert row.split() == [rid, "pending", "7.2", "7.2/3600", "4", "3", "1970-01-01T00:00:00.500Z"]
    assert run(["quarantine", "release", rid], api).out == f"RELEASED  {rid}\n"
    empty = FakeApi({("GET", "/v1/quarantine"): (200, {"items": []})})
    assert run(["quarantine", "list"], empty).out == "nothing is quarantined\n"


def test_quarantine_list_filters_go_in_the_query() -> None:
    path = "/v1/quarantine?rule=r&from=2026-01-31T09%3A00%3A00.000Z&state=any&limit=2"
    api = FakeApi({("GET", path): (200, {"items": [], "more": True})})
    argv = ["quarantine", "list", "--rule", "r", "--from", "2026-01-31T09:00:00Z"]
    ran = run([*argv, "--state", "any", "--limit", "2"], api)
    assert ran.code == 0, ran.err
    assert "more requests match" in ran.err


def test_bulk_release_sends_the_filters_and_shows_decided_and_skipped() -> None:
    rid, old = f"{USER}:00-DB-00-00-00-00-00-02:2", f"{USER}:00-DB-00-00-00-00-00-01:1"
    answer = {
        "decision": "release",
        "decided": [{"id": rid, "user_id": USER, "srv": "7.2", "rule": "r", "at_s": 0.25}],
        "skipped": [{"id": old, "state": "deleted", "reason": "already deleted; final"}],
        "more": True,
    }
    api = FakeApi({("POST", "/v1/quarantine/release"): (200, answer)})
    argv = ["quarantine", "release", "--user", USER.lower(), "--rule", "r"]
    ran = run([*argv, "--to", "2026-02-01T00:00:00Z", "--limit", "10"], api)
    assert ran.code == 0, ran.err
    assert api.sent[0].body == {
        "user_id": USER,
        "rule": "r",
        "to": "2026-02-01T00:00:00.000Z",
        "limit": 10,
    }
    lines = ran.out.splitlines()
    assert lines[0] == "released 1, skipped 1"
    assert lines[3].split() == [rid, USER, "7.2", "r", "1970-01-01T00:00:00.250Z"]
    assert lines[-1].split()[:2] == [old, "deleted"]
    assert "run the command again" in ran.err


@pytest.mark.parametrize(
    "argv",
    [
        ["quarantine", "delete"],
        ["quarantine", "delete", f"{USER}:00-DB-00-00-00-00-00-01:1", "--rule", "r"],
        ["quarantine", "release", f"{USER}:00-DB-00-00-00-00-00-01:1", "--limit", "3"],
    ],
)
def test_a_decision_needs_one_id_or_filters(argv: list[str]) -> None:
    api = FakeApi()
    ran = run(argv, api)
    assert ran.code == 2
    assert api.sent == []


def test_generic_get_and_put() -> None:
    api = FakeApi(
        {
            ("GET", "/openapi.json"): (200, {"openapi": "3.1.0"}),
            ("PUT", "/v1/traffic"): (200, {"version": 2}),
        }
    )
    assert json.loads(run(["get", "/openapi.json"], api).out) == {"openapi": "3.1.0"}
    ran = run(["put", "traffic", "--json", '{"capacity_per_s": 1}'], api)
    assert ran.code == 0
    assert api.put_bodies() == [{"capacity_per_s": 1}]
    assert run(["put", "traffic", "--json", "{nope"], api).code == 2


# --- errors -------------------------------------------------------------------------------


def test_an_api_error_goes_to_stderr_with_its_status() -> None:
    api = FakeApi({("GET", f"/v1/allocations/{OTHER}"): (403, {"error": "forbidden: no"})})
    ran = run(["allocations", "get", OTHER], api)
    assert ran.code == 1
    assert ran.out == ""
    assert ran.err == f"dccgate admin: GET /v1/allocations/{OTHER}: HTTP 403: forbidden: no\n"


def test_a_401_names_the_variable_the_token_came_from() -> None:
    api = FakeApi({("GET", "/v1/users"): (401, {"error": "the token is not valid"})})
    ran = run(["users", "list", "--token-env", "MY_TOKEN"], api, env={"MY_TOKEN": "x"})
    assert ran.code == 1
    assert "HTTP 401" in ran.err
    assert "MY_TOKEN" in ran.err


def test_refused_connection_names_the_url_and_dccgate_run() -> None:
    api = FakeApi(fail=TransportError("[Errno 111] Connection refused"))
    ran = run(["users", "list", "--url", "http://127.0.0.1:9"], api)
    assert ran.code == 1
    assert "http://127.0.0.1:9" in ran.err
    assert "dccgate run" in ran.err
    assert "--url" in ran.err


def test_a_timeout_names_the_flag() -> None:
    api = FakeApi(fail=TransportError("timed out", timed_out=True))
    ran = run(["users", "list", "--timeout", "0.5"], api)
    assert ran.code == 1
    assert "within 0.5 s" in ran.err
    assert "--timeout" in ran.err


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["users", "list"], {}, "DCCGATE_TOKEN"),
        (["users", "list"], {"DCCGATE_TOKEN": "  "}, "DCCGATE_TOKEN"),
        (["--token-env", "OPS", "users", "list"], {"DCCGATE_TOKEN": "x"}, "OPS"),
    ],
)
def test_a_missing_token_exits_2_naming_the_variable(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    api = FakeApi()
    ran = run(argv, api, env=env)
    assert ran.code == 2
    assert f"set {named}" in ran.err
    assert api.sent == []


def test_url_from_environment_and_bad_urls() -> None:
    api = FakeApi()
    run(["users", "list"], api, env={**ENV, "DCCGATE_ADMIN_URL": "http://127.0.0.1:9/"})
    assert api.sent[0].url == "http://127.0.0.1:9/v1/users"
    assert run(["users", "list", "--url", "file:///etc/passwd"]).code == 2
    remote = run(["users", "list", "--url", "http://gw.example:8080"], FakeApi())
    assert "plain HTTP" in remote.err


def test_main_dispatches_admin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeApi({("GET", "/v1/users"): (200, {"users": {}})})
    monkeypatch.setattr(admin_cli.entry, "urllib_transport", api)
    monkeypatch.setenv("DCCGATE_TOKEN", "op-secret")
    monkeypatch.delenv("DCCGATE_ADMIN_URL", raising=False)
    assert main(["admin", "users", "list"]) == 0
    assert capsys.readouterr().out == "no Users\n"
