"""`dccgate completion bash|zsh`: a shell completion script, made from the parser itself.

The script holds a table from each command path (`admin users set`) to what may follow it
(sub-commands, options, a positional's choices), walked from `dccgate`'s argparse tree, so
it always matches the installed version and needs nothing at completion time (no Python
start per TAB). Install::

    eval "$(.venv/bin/dccgate completion bash)"      # bash, in ~/.bashrc
    eval "$(.venv/bin/dccgate completion zsh)"       # zsh, in ~/.zshrc after compinit
"""

from __future__ import annotations

import argparse
import re

__all__ = ["SHELLS", "completion_script", "completion_table"]

SHELLS = ("bash", "zsh")
_SAFE = re.compile(r"[A-Za-z0-9_.,:/=+-]+")


def completion_table(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each command path (`dccgate`, `dccgate admin users`, ...) and the words that may
    follow it."""
    table: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, node: str) -> None:
        words: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    words.append(name)
                    walk(child, f"{node} {name}")
            elif action.option_strings:
                if action.help != argparse.SUPPRESS:
                    words += [o for o in action.option_strings if o.startswith("--")]
            elif action.choices:
                words += [str(c) for c in action.choices]
        table[node] = [w for w in dict.fromkeys(words) if _SAFE.fullmatch(w)]

    walk(parser, parser.prog)
    return table


def _entries(table: dict[str, list[str]]) -> str:
    return "\n".join(f'    ["{node}"]="{" ".join(words)}"' for node, words in sorted(table.items()))


_BASH = """\
# dccgate completion for bash: eval "$(dccgate completion bash)"
_dccgate() {
  local -A tree=(
%s
  )
  local node=dccgate word i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    [[ $word == -* ]] && continue
    if [[ -n ${tree["$node $word"]+set} ]]; then node="$node $word"; fi
  done
  COMPREPLY=($(compgen -W "${tree[$node]}" -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -o default -F _dccgate dccgate
"""

_ZSH = """\
#compdef dccgate
# dccgate completion for zsh: eval "$(dccgate completion zsh)" (after compinit)
_dccgate() {
  local -A tree
  tree=(
%s
  )
  local node=dccgate word i
  for (( i = 2; i < CURRENT; i++ )); do
    word=${words[i]}
    [[ $word == -* ]] && continue
    if (( ${+tree[$node $word]} )); then node="$node $word"; fi
  done
  compadd -- ${=tree[$node]}
  _files
}
compdef _dccgate dccgate
"""


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of `parser` for `shell` (bash or zsh)."""
    table = completion_table(parser)
    if shell == "bash":
        return _BASH % _entries(table)
    if shell == "zsh":
        zsh_entries = "\n".join(
            f'    "{node}" "{" ".join(words)}"' for node, words in sorted(table.items())
        )
        return _ZSH % zsh_entries
    raise ValueError(f"no completion for {shell!r}; choose one of: {', '.join(SHELLS)}")
