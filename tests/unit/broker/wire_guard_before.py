"""broker.wire_guard's `json_problem` as it was before its canonical-form fast path (issue
17), kept verbatim as the reference the faster one is held to (test_wire_guard_fast.py).

Only `json_problem` and what it calls are kept; its docstring and the module's are in
broker/wire_guard.py.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, compress, count, repeat
from operator import gt, sub
from typing import Any, Final

__all__ = ["json_problem"]

DEFAULT_MAX_DEPTH: Final = 32


MAX_DEPTH_LIMIT: Final = 256
"""The largest `max_depth` accepted: the exact duplicate check and the decoders after this
guard recurse once per level, and Python's recursion limit (1,000) must stay far away."""
_SHOWN_KEY_CHARS = 40

# A backslash and the byte after it, anywhere (step 2 blanks them, length kept).
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# Brackets kept as opens "[" and closes "]", everything else deleted (depth shape).
_SHAPE_TABLE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# Every bracket becomes "[", nothing else does (finding the n-th bracket).
_ONE_MARK_TABLE = bytes.maketrans(b"]{}", b"[[[")
# Brackets inside strings blanked, length kept.
_BLANK_TABLE = bytes.maketrans(b"[]{}", b"____")
_JSON_WS = b" \t\n\r"
# Past this many strings the keys-only step costs more than it saves: straight to exact.
_KEYS_ONLY_MAX_STRINGS = 64
_CHUNK = 1 << 16
# A \uXXXX escape that is a surrogate, preceded by an even run of backslashes (so the
# backslash before "u" is not itself escaped): a well-formed pair, or a lone half (group 1).
_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*"
    rb"\\u(?:[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|([dD][89a-fA-F][0-9a-fA-F]{2}))"
)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _ConstantError(Exception):
    pass


def _pairs_hook(pairs: list[tuple[str, Any]]) -> None:
    # Called once per object, innermost first; the object itself is not needed.
    if len(pairs) > 1 and len(dict(pairs)) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)


def _ignore_number(_text: str) -> None:
    # Numbers are not converted: no int-to-str limit (ValueError past 4,300 digits), no
    # overflow, and less work; only the keys matter here.
    return None


def _refuse_constant(_text: str) -> None:
    raise _ConstantError


_scan = json.JSONDecoder(
    object_pairs_hook=_pairs_hook,
    parse_float=_ignore_number,
    parse_int=_ignore_number,
    parse_constant=_refuse_constant,
).decode


def json_problem(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> str | None:
    """The first hazard in `data` as `code: detail`, or None (see the module docstring).

    data: a record's raw bytes, before any decoder sees them. max_depth: the deepest
    nesting of arrays and objects allowed, default 32, at most `MAX_DEPTH_LIMIT` (256).
    Never raises for any bytes; ValueError only for a `max_depth` out of range.
    """
    if not 0 < max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(
            f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}, got {max_depth}: deeper "
            "nesting would let a recursive decoder reach Python's recursion limit"
        )
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError as exc:
            return f"invalid_utf8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
    # find, not `in`: `in` goes through the buffer protocol, twice as slow on 300 bytes.
    escaped = data.find(b"\\") >= 0
    parts: list[bytes] | None = None
    opens = data.count(b"{")
    if data.find(b"[") >= 0:  # most requests have no array: skip a counting pass
        opens += data.count(b"[")
    if opens > max_depth:
        # Escapes blanked (length kept), so that the quotes left are the strings' own.
        parts = (_ESCAPE.sub(b"__", data) if escaped else data).split(b'"')
        offset = _too_deep_at(parts, max_depth)
        if offset is not None:
            return f"too_deep: nesting deeper than {max_depth} levels at offset {offset}"
    if not escaped:
        # No escapes: the strings are exactly the odd fields between quotes.
        if parts is None:
            parts = data.split(b'"')
        strings = parts[1::2]
        if len(set(strings)) == len(strings):
            return None
        if len(strings) <= _KEYS_ONLY_MAX_STRINGS:
            # The keys alone: the strings followed by a colon (one string more than
            # followers when a string is left open: not JSON, the decoder refuses it).
            ws, followers = _JSON_WS, parts[2::2]
            keys = [
                k
                for k, after in zip(strings, followers, strict=False)
                if after[:1] == b":" or after.lstrip(ws)[:1] == b":"
            ]
            if len(set(keys)) == len(keys):
                return None
    return _exact_problem(data, escaped)


def _too_deep_at(parts: list[bytes], max_depth: int) -> int | None:
    """Offset of the first bracket that nests deeper than `max_depth`, or None.

    parts: the record split at its quotes, escapes blanked: even indexes are outside
    strings (a string left open runs to the end). Changed in place when too deep.
    """
    shape = b"".join(parts[::2]).translate(_SHAPE_TABLE, _NOT_BRACKETS)  # "[" and "]" only
    # Proof for the common case, with no per-bracket work: remove the adjacent pairs "[]",
    # innermost first, one level per pass (bytes.replace does not rescan what it joins).
    # No open bracket left after max_depth passes: each one was closed within max_depth
    # levels, and what precedes a top-level pair is closed pairs and stray closes, so no
    # prefix goes deeper.
    rest = shape
    # A run of max_depth + 1 opens cannot be shown shallow this way (and is what a hostile
    # record usually is): straight to the exact depth.
    for _ in range(max_depth if shape.find(b"[" * (max_depth + 1)) < 0 else 0):
        reduced = rest.replace(b"[]", b"")
        if len(reduced) == len(rest):
            break
        rest = reduced
    if b"[" not in rest:
        return None
    # Exact, in C iterators: cut before every close; run i holds the opens between close
    # i-1 and close i, so the depth after its opens is (opens in runs 0..i) - i.
    depths = map(sub, accumulate(map(len, shape.split(b"]"))), count())
    run = next(compress(count(), map(gt, depths, repeat(max_depth))), None)
    if run is None:
        return None
    # Before run i the depth is (opens in runs 0..i-1) - i, so its open number
    # (max_depth - that) is one level too deep: bracket number max_depth + 2i of `shape`.
    parts[1::2] = map(bytes.translate, parts[1::2], repeat(_BLANK_TABLE))
    marks = b'"'.join(parts).translate(_ONE_MARK_TABLE)  # every bracket "[", length kept
    return _nth_mark(marks, max_depth + 2 * run)


def _nth_mark(marks: bytes, nth: int) -> int:
    """Offset of the mark "[" number `nth` (from 0) in `marks`, which has more than nth."""
    start = 0
    while (found := marks.count(b"[", start, start + _CHUNK)) <= nth:
        nth -= found
        start += _CHUNK
    before = marks[start : start + _CHUNK].split(b"[", nth + 1)[: nth + 1]
    return start + sum(map(len, before)) + nth


def _exact_problem(data: bytes, escaped: bool) -> str | None:
    if escaped and b"\\u" in data:
        for match in _SURROGATE.finditer(data):
            if match.start(1) >= 0:
                at = match.start(1) - 2
                return f"lone_surrogate: {data[at : at + 6].decode()} at offset {at}"
    text = data.decode()  # UTF-8 checked in step 1
    try:
        _scan(text)
    except _DuplicateKeyError as exc:
        return f"duplicate_key: {_quoted(exc.key)} twice in one object"
    except _ConstantError:
        return "not_json: NaN, Infinity and -Infinity are not JSON"
    except json.JSONDecodeError as exc:
        at = exc.pos if data.isascii() else len(text[: exc.pos].encode())
        return f"not_json: {exc.msg} at offset {at}"
    except RecursionError:  # only if the caller's own stack is already hundreds deep
        return "too_deep: nesting too deep for the duplicate-key check"
    return None


def _quoted(key: str) -> str:
    if len(key) <= _SHOWN_KEY_CHARS:
        return json.dumps(key)
    return json.dumps(key[:_SHOWN_KEY_CHARS])[:-1] + '..."'
