"""`dccgate completion bash|zsh`: the scripts complete what the parser accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from workers.cli import _parser, main
from workers.tools.completion import completion_script, completion_table


def test_the_table_follows_the_parser() -> None:
    table = completion_table(_parser())
    assert {"run", "worker", "admin", "config", "completion", "--version"} <= set(table["dccgate"])
    assert {"router", "alerts", "admin"} <= set(table["dccgate worker"])
    assert {"--exit-margin-ratio", "--exit-hold-s", "--dry-run"} <= set(
        table["dccgate admin traffic set"]
    )
    assert "show" in table["dccgate admin config"]
    assert "check" in table["dccgate config"]
    # Options hidden from --help are not offered (loadtest's refused --token).
    assert "--token" not in table["dccgate loadtest"]


def _bash_complete(script: str, words: list[str]) -> list[str]:
    quoted = " ".join(f"'{w}'" for w in words)
    program = f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _dccgate; "
    program += 'printf "%s\\n" "${COMPREPLY[@]}"'
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    assert done.stderr == ""
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_commands_verbs_and_flags() -> None:
    script = completion_script(_parser(), "bash")
    assert _bash_complete(script, ["dccgate", "wor"]) == ["worker"]
    assert _bash_complete(script, ["dccgate", "admin", "us"]) == ["users"]
    words = ["dccgate", "--log-level", "x", "admin", "traffic", "set", "--exit-h"]
    assert _bash_complete(script, words) == ["--exit-hold-s"]
    assert "router" in _bash_complete(script, ["dccgate", "worker", ""])


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh")
def test_zsh_script_loads_and_completes() -> None:
    script = completion_script(_parser(), "zsh")
    program = f"autoload -U compinit && compinit -u\n{script}\nprint -r -- ${{_comps[dccgate]}}"
    done = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "_dccgate"
    # What it offers after `dccgate admin traffic set` (compadd and _files stubbed).
    stubs = 'compdef() { :; }; compadd() { print -r -- "$@"; }; _files() { :; }'
    call = 'words=(dccgate admin traffic set ""); CURRENT=5; _dccgate'
    done = subprocess.run(
        ["zsh", "-f", "-c", f"{stubs}\n{script}\n{call}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {"--exit-hold-s", "--dry-run", "--capacity"} <= set(done.stdout.split())


def test_the_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#compdef dccgate")
    assert "compdef _dccgate dccgate" in out
    with pytest.raises(SystemExit):
        main(["completion", "fish"])
