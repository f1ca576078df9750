"""`dccgate config check FILE`: every problem of a configuration file, each with its line.

`load_config_file` stops at the first problem, which is right for starting a service. A
person fixing a file wants all of them at once: the file is read as TOML (a syntax error
is one problem, with its line), then each section, each User's entry and each item is
checked on its own, so one mistake does not hide the next; once each part is right the
whole file is checked as a service would load it (the checks across items). Each problem
names where it is (`$.alerts.storm-policy.default.window_s`), what was expected (the allowed
values of a choice included, `workers.config.explain`) and the line it is on.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from workers.config.configfile import (
    AdtSection,
    AlertsSection,
    ConfigFile,
    ConfigFileError,
    load_config_file,
)
from workers.config.explain import describe

__all__ = ["Problem", "check_config_file", "check_config_text"]

# Sections checked field by field (the rest are checked whole, as one value).
_SECTIONS: tuple[type[msgspec.Struct], ...] = (ConfigFile, AdtSection, AlertsSection)
_LINE = re.compile(r"line (\d+)")
_AT_PATH = re.compile(r"`\$([^`]*)`")
_HEADER = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(#.*)?$")
_KEY_LINE = re.compile(
    r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="
)
_KEY_PART = re.compile(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)")
_STEP = re.compile(r"\.([^.\[]+)|\[[^\]]*\]")


@dataclass(frozen=True)
class Problem:
    """One problem: the line it is on (None when it is about the whole file) and what is
    wrong, with what would be right."""

    line: int | None
    message: str

    def render(self, name: str) -> str:
        return f"{name}:{self.line}: {self.message}" if self.line else f"{name}: {self.message}"


def _keys(text: str) -> list[str]:
    return [m[1] or m[2] or m[3] for m in _KEY_PART.finditer(text)]


def _line_paths(text: str) -> list[tuple[int, list[str]]]:
    """Each table header's and key's line with its full dotted path."""
    table: list[str] = []
    out: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith(("#",)) and "=" not in line.split("]")[0]:
            table = _keys(header[1])
            out.append((number, table))
            continue
        key = _KEY_LINE.match(line)
        if key:
            out.append((number, table + _keys(key[1])))
    return out


def _path_steps(path: str) -> list[str]:
    """`$.a.b[0].c` as ["a", "b", "c"] (list indexes dropped)."""
    return [m[1] for m in _STEP.finditer(path) if m[1]]


def locate(text: str, path: str) -> int | None:
    """The line of the key or table in `text` closest to the JSON `path` ($.a.b...)."""
    steps = _path_steps(path)
    best: int | None = None
    best_len = 0
    for number, keys in _line_paths(text):
        if keys and len(keys) > best_len and steps[: len(keys)] == keys:
            best, best_len = number, len(keys)
    return best


def _hints(cls: type[msgspec.Struct]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {
        encoded: hints[name]
        for name, encoded in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True)
    }


def _optional_of(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def _check(value: Any, tp: Any, path: str, out: list[tuple[str, str]]) -> None:
    """Append (path, message) for each problem of `value` as a `tp`."""
    inner = _optional_of(tp)
    if inner in _SECTIONS and isinstance(value, dict):
        fields = _hints(inner)
        for key, sub in value.items():
            where = f"{path}.{key}"
            if key not in fields:
                out.append(
                    (where, f"unknown key {key!r} at `{path}`; expected one of: "
                     f"{', '.join(sorted(fields))}")
                )  # fmt: skip
            else:
                _check(sub, fields[key], where, out)
        return
    if typing.get_origin(inner) is dict and isinstance(value, dict):
        _, value_type = typing.get_args(inner)
        if isinstance(value_type, type) and issubclass(value_type, msgspec.Struct):
            for key, sub in value.items():
                _check(sub, value_type, f"{path}.{key}", out)
            return
    try:
        msgspec.convert(value, type=tp)
    except msgspec.ValidationError as exc:
        message = describe(exc, tp)
        at = _AT_PATH.search(message)
        full = path + (at[1] if at else "")
        message = (
            _AT_PATH.sub(lambda m: f"`{path}{m[1]}`", message)
            if at
            else (f"{message} - at `{path}`")
        )
        out.append((full, message))


def check_config_text(text: str) -> list[Problem]:
    """Every problem of a configuration file's `text` (empty: the file is good)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _LINE.search(str(exc))
        return [Problem(int(found[1]) if found else None, f"not valid TOML: {exc}")]
    except RecursionError:
        return [Problem(None, "arrays or tables nested too deeply to read; flatten them")]
    found_problems: list[tuple[str, str]] = []
    _check(doc, ConfigFile, "$", found_problems)
    return [Problem(locate(text, path), message) for path, message in found_problems]


def check_config_file(path: Path) -> list[Problem]:
    """Every problem of the configuration file at `path`: each part on its own, then the
    whole as a service loads it (`load_config_file`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [Problem(None, f"cannot read it: {exc.strerror}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        return [Problem(bad_line, f"not UTF-8 (byte {exc.start}); TOML files are UTF-8 text")]
    problems = check_config_text(text)
    if problems:
        return problems
    try:
        load_config_file(path)
    except ConfigFileError as exc:
        message = str(exc).removeprefix(f"{path}: ").removeprefix(str(path))
        key = re.search(r"^([A-Za-z0-9_.\-/]+): ", message)
        line: int | None = locate(text, "$." + key[1].replace("/", ".")) if key else None
        named = re.match(r"^'([^']+)'", message)
        if line is None and named:  # a User ID that is not one: the line naming it
            line = next(
                (n for n, ks in _line_paths(text) if named[1] in ks),
                None,
            )
        return [Problem(line, message.strip())]
    return []
