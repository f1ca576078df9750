"""Validation messages that say what would have been right.

msgspec names a bad enum value and where it is ("Invalid enum value 'west' - at `key` in
`$.regions`"), not the values allowed there. `describe` adds them, found by walking the
type the document was decoded into along the error's path, so an operator who typed a
region, a rule kind or a role wrong reads the choices in the same line.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from typing import Any

import msgspec
from msgspec import inspect as mi

__all__ = ["describe"]

_ENUM = re.compile(
    r"^Invalid enum value (?P<value>.+) - at (?P<key>`key` in )?`(?P<path>\$[^`]*)`$"
)
_STEP = re.compile(r"\.([^.\[]+)|\[(\.\.\.|\d+)\]")


def describe(exc: msgspec.ValidationError, root: Any) -> str:
    """`exc`'s message, with the allowed values when it is about an enum value of `root`
    (the type the document was decoded into); the message alone otherwise."""
    message = str(exc)
    match = _ENUM.match(message)
    if match is None:
        return message
    steps = _steps(match["path"][1:])
    if steps is None:
        return message
    choices: set[object] = set()
    for found in _walk(mi.type_info(root), steps):
        if not match["key"]:
            choices |= _literals(found)
        elif isinstance(found, mi.DictType):
            choices |= _literals(found.key_type)
    if not choices:
        return message
    return f"{message}; expected one of: {', '.join(sorted(map(str, choices)))}"


def _steps(path: str) -> list[tuple[str, str]] | None:
    steps: list[tuple[str, str]] = []
    position = 0
    for step in _STEP.finditer(path):
        if step.start() != position:
            return None
        steps.append((step[1] or "", step[2] or ""))
        position = step.end()
    return steps if position == len(path) else None


def _walk(info: mi.Type, steps: list[tuple[str, str]]) -> Iterator[mi.Type]:
    """The types at the end of `steps` from `info` (several through a union)."""
    if isinstance(info, mi.Metadata):
        yield from _walk(info.type, steps)
        return
    if isinstance(info, mi.UnionType):
        for member in info.types:
            yield from _walk(member, steps)
        return
    if not steps:
        yield info
        return
    (name, index), rest = steps[0], steps[1:]
    if name:
        for field in getattr(info, "fields", ()):
            if field.encode_name == name:
                yield from _walk(field.type, rest)
    elif index == "...":
        if isinstance(info, mi.DictType):
            yield from _walk(info.value_type, rest)
    elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        yield from _walk(info.item_type, rest)
    elif isinstance(info, mi.TupleType) and int(index) < len(info.item_types):
        yield from _walk(info.item_types[int(index)], rest)


def _literals(info: mi.Type) -> set[object]:
    if isinstance(info, mi.Metadata):
        return _literals(info.type)
    if isinstance(info, mi.LiteralType):
        return set(info.values)
    if isinstance(info, mi.EnumType) and issubclass(info.cls, enum.Enum):
        return {member.value for member in info.cls}
    if isinstance(info, mi.UnionType):
        return set().union(*(_literals(member) for member in info.types))
    return set()
