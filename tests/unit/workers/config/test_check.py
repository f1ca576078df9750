"""`dccgate config check FILE`: every problem, each with its line and what would be right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workers.cli import main
from workers.config.check import check_config_file, check_config_text, locate

EXAMPLE = Path(__file__).parents[4] / "docs" / "examples" / "dccgate.toml"

BAD = """\
[users."90-B3-D5-1F-30-01-00-00"]
name = "Example"
roles = ["IS", "XX"]

[traffic]
capacity_per_s = 5000
operating_threshold_per_s = 4000
reserved_share = 3

[alerts.storm-policy]
default = { window_s = 0, max_alerts = 10, period_s = 300 }

[alerts.regional-capacity]
regions = { west = { rate_per_s = 2000, burst = 4000 } }

[bogus]
x = 1
"""


def test_the_example_file_is_good(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_file(EXAMPLE) == []
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == f"{EXAMPLE}: OK\n"


def test_every_problem_is_reported_with_its_line() -> None:
    problems = [(p.line, p.message) for p in check_config_text(BAD)]
    assert [line for line, _ in problems] == [3, 8, 11, 14, 16]
    messages = "\n".join(m for _, m in problems)
    assert "'XX'" in messages
    assert "expected one of: ED, ES, GS" in messages
    assert "Expected `float` < 1.0 - at `$.traffic.reserved_share`" in messages
    assert "`$.alerts.storm-policy.default.window_s`" in messages
    assert "'west'" in messages
    assert "central, north, south" in messages
    assert "unknown key 'bogus'" in messages


def test_the_command_prints_them_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:3: Invalid enum value 'XX'")
    assert out[-1] == f"{path}: 5 problem(s)"
    assert main(["config", "check", "--json", str(path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [p["line"] for p in doc["problems"]] == [3, 8, 11, 14, 16]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[traffic]\ncapacity_per_s = \n", 2, "not valid TOML"),
        ('[traffic]\ncapacity_per_s = 1\ncapacity_per_s = 2\n', 3, "not valid TOML"),
        ("[traffic]\ncapacity_per_s = 10\noperating_threshold_per_s = 20\n", 1,
         "must not exceed capacity_per_s"),
        ('[allocations."nobody"]\nrate_per_s = 1\nburst = 1\n', 1, "is not a User ID"),
        ("[admin]\ntoken_sha256 = \"abc\"\n", None, "64 lower-case hex digits"),
        ("x = " + "[" * 2000 + "]" * 2000 + "\n", None, ""),
    ],
)  # fmt: skip
def test_whole_file_checks_and_hostile_input(
    tmp_path: Path, text: str, line: int | None, words: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    problems = check_config_file(path)
    assert problems, text[:40]
    assert words in problems[0].message
    if line is not None:
        assert problems[0].line == line


def test_a_file_that_is_not_utf8_or_not_there(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"[traffic]\ncapacity_per_s = 1 # \xff\n")
    [problem] = check_config_file(path)
    assert (problem.line, "not UTF-8" in problem.message) == (2, True)
    [problem] = check_config_file(tmp_path / "missing.toml")
    assert "cannot read it" in problem.message


def test_locate_finds_the_deepest_key_written() -> None:
    text = '[adt.users."90-B3-D5-1F-30-01-00-00"]\nthresholds = []\n'
    assert locate(text, "$.adt.users.90-B3-D5-1F-30-01-00-00.thresholds[0].max") == 2
    assert locate(text, "$.adt.dcc") is None
