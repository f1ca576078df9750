"""Input hygiene at decode time: the JSON hazards a record is refused for before any decoder.

`json_problem(data)` looks at a record's raw bytes and answers None (nothing found) or a
short reason whose prefix up to the colon is one of `REASON_CODES`:

- `invalid_utf8: byte 0xff at offset 37`: the bytes are not UTF-8 (RFC 3629, Python's strict
  decoder: no overlong forms, no encoded surrogates such as ED A0 80, nothing above U+10FFFF).
- `too_deep: nesting deeper than 32 levels at offset 1045`: arrays and objects nest deeper
  than `max_depth`; the offset is that of the bracket one level too deep. Depth is counted
  the way a JSON lexer sees the bytes: a backslash escapes the byte after it, an unescaped
  `"` opens or closes a string, and outside strings `[` and `{` open a level, `]` and `}`
  close one. (Outside strings a backslash is not JSON at all; it is skipped with the next
  byte so that the count is defined, and a decoder stops there anyway.)
- `lone_surrogate: \\ud800 at offset 12`: a `\\uD800`-`\\uDFFF` escape that is not one half
  of a high-low pair. Such a string is not Unicode text, and parsers disagree on it
  (Python's json keeps the lone surrogate, msgspec and orjson refuse the record, others
  substitute U+FFFD), so the bytes would not mean one thing to every reader.
- `duplicate_key: "srv" twice in one object`: an object holds the same key twice. Keys are
  compared after unescaping: `"srv"` and `"\\u0073rv"` are the same key. The key is shown
  JSON-escaped (ASCII only), cut after 40 characters.
- `not_json: Expecting ',' delimiter at offset 80`: only from the exact duplicate check, the
  one step that parses; see below.

None does not certify the syntax: malformed text is usually left to the decoder, which
refuses it with its own error (`not_json` appears only when the exact duplicate-key check
had to parse the text). What None does guarantee, for any bytes: they are UTF-8; no
decoder that fails at the first syntax error recurses deeper than `max_depth`; and when
they are JSON, they hold no lone surrogate and no object with a duplicate key, so every
JSON parser, first-key-wins or last-key-wins, reads the same values. The checks run in the
order of the list above and the first hazard found is reported.

Cost, in the order it is paid (measured by tests/bench/bench_wire_guard.py):

1. One strict `bytes.decode` (an ASCII record: a check word at a time and a copy); steps
   2 and 3 run on the text where they can (`in` on a str is a C loop with no call).
2. Depth: `count("{") + count("[") <= max_depth` bounds the depth (brackets inside
   strings only add to the count; no `[` at all spares its count).
   Otherwise: escapes blanked by one regex substitution,
   strings cut out with `split(b'"')`, the brackets left kept; adjacent pairs `[]` removed
   level by level with `bytes.replace` proves a balanced record shallow enough (a legit
   body with many arrays and objects: a few passes); if that fails, the exact depth with
   itertools in C (about 0.1 µs per closing bracket), and the offset by chunked counts.
   Nothing here is a Python loop per byte or per bracket.
3. The canonical form (most records: msgspec, orjson and the ingress write compact JSON):
   msgspec decodes the bytes and encodes the result back; equal to the bytes, they are
   the encoding of Python values, so JSON and UTF-8, with no lone surrogate, and since
   one text has one parse, each object's keys are the keys of one dict, each once
   (however spelled: an escaped key comes back unescaped and is not equal). Escapes and
   repeated values are no obstacle here. A record in another spelling (spaces, `\\u`
   escapes, `1E5`) pays this step in vain, about a microsecond for a few hundred bytes.
4. Duplicates, fast: without a backslash in the record, every string is exactly a
   `split('"')` field at an odd index; if all strings (keys and values) are distinct, no
   object can hold a key twice. Next, up to 64 strings, the keys alone (the strings
   followed by `:`).
5. Exact: lone surrogates by one regex, then `json.loads` with an `object_pairs_hook` that
   compares each object's keys. It recurses, but only after step 2 has bounded the depth
   (`max_depth` may not exceed `MAX_DEPTH_LIMIT`); numbers are not converted (no int
   conversion limit, no overflow), NaN and Infinity are `not_json`.

What msgspec 0.22 does by itself with such records (measured on CPython 3.11; the reason
this guard runs before it):

- Invalid UTF-8 in a string it decodes (a `str` field, a key, `Any`) raises
  `UnicodeDecodeError`, which is not a `msgspec.DecodeError`. In a `msgspec.Raw` field, in
  an unknown (skipped) field, in a key of either, it is accepted silently and the bytes
  are passed on: `msgspec.json.encode` writes a Raw holding 0xFF out again as is.
- Nesting: every decode, skipped and Raw fields included, recurses, and around 1,000
  levels (Python's recursion limit less the caller's stack) raises `RecursionError`.
- Duplicate keys: the last one wins, silently, in a Struct (`{"srv":"7.2","srv":"4.1.1"}`
  decodes as 4.1.1; so does `"\\u0073rv"`), in a Raw field (the last value is kept) and in
  a dict; duplicates inside a Raw or an unknown field are not looked at.
- Lone surrogate escapes are refused everywhere, Raw and skipped fields included
  (`DecodeError`: "invalid utf-16 surrogate pair", or "Input data was truncated").
- Numbers: `1e400`, `-1e400` or `1` followed by 400 zeros and `.0` raise
  `msgspec.ValidationError` "Number out of range" (never `inf`); integers are decoded to
  Python ints up to 4,300 digits (an integer of 401 digits is an `int` beyond a float's
  range) and refused above ("Integer value out of range"), in `Any` and in `int` fields
  alike. In Raw and skipped fields numbers are not converted, so any size passes. `1e-400`
  decodes as 0.0, `-0` as 0 and `-0.0` as -0.0.
- `NaN`, `Infinity`, `-Infinity` literals: refused ("invalid character"), in Raw and
  skipped fields too. So are control characters in strings, bad escapes and a BOM.
- Big integers encode fine (`msgspec.json.encode(10**300)`), but a `str` holding a lone
  surrogate does not (`UnicodeEncodeError`), hence the ASCII-only key in the reasons here.

Pure: no I/O, no asyncio; safe to call from any thread.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, compress, count, repeat
from operator import gt, sub
from typing import Any, Final

import msgspec

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_DEPTH_LIMIT",
    "MAX_RECORD_BYTES",
    "REASON_CODES",
    "json_problem",
    "reason_code",
    "record_problem",
    "size_problem",
]

DEFAULT_MAX_DEPTH: Final = 32
"""Nesting allowed by default: a Service Request is 2 levels (record, body) plus the body's."""
MAX_RECORD_BYTES: Final = 262_144
"""The largest record value a worker decides (256 KiB; a DUIS request or an alert is a few
KB). Bigger ones are dead-lettered as `too_large` before anything else looks at them: what a
worker writes from a record (a dead letter, a quarantine entry, a storm snapshot that holds
an alert and its copy) must stay below Apache Kafka's 1 MB `message.max.bytes`, and the
guard's own cost grows with the size."""


def record_problem(data: bytes) -> tuple[str, str] | None:
    """(dead-letter kind, reason) for a record value refused before any decoder sees it: too
    large, else the first hazard `json_problem` finds; None when it may be decoded."""
    problem = size_problem(data) if len(data) > MAX_RECORD_BYTES else json_problem(data)
    return None if problem is None else (reason_code(problem), problem)


def size_problem(data: bytes, *, max_bytes: int = MAX_RECORD_BYTES) -> str | None:
    """`too_large: ...` when `data` is longer than `max_bytes`, else None."""
    if len(data) <= max_bytes:
        return None
    return f"too_large: {len(data)} bytes, more than the {max_bytes} a record may have"


MAX_DEPTH_LIMIT: Final = 256
"""The largest `max_depth` accepted: the exact duplicate check and the decoders after this
guard recurse once per level, and Python's recursion limit (1,000) must stay far away."""
REASON_CODES: Final = frozenset(
    {"too_large", "invalid_utf8", "too_deep", "lone_surrogate", "duplicate_key", "not_json"}
)
"""The reason codes, bounded: fit for a metric label or a dead-letter kind."""

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
_JSON_WS = " \t\n\r"
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


_decode_any = msgspec.json.Decoder().decode
_encode_any = msgspec.json.Encoder().encode


def reason_code(reason: str) -> str:
    """The code of a `json_problem` reason: the text before the first colon."""
    return reason.partition(":")[0]


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
    # Steps 1 to 3 on the decoded text: an ASCII record decodes by a copy, and on a str
    # `in` is a C loop with no method call (on bytes it goes through the buffer protocol),
    # which is most of what these steps cost on a record of a few hundred bytes.
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return f"invalid_utf8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
    escaped = "\\" in text
    opens = text.count("{")
    if "[" in text:  # most requests have no array: skip a counting pass
        opens += text.count("[")
    if opens > max_depth:
        # Escapes blanked (length kept), so that the quotes left are the strings' own.
        shape = (_ESCAPE.sub(b"__", data) if escaped else data).split(b'"')
        offset = _too_deep_at(shape, max_depth)
        if offset is not None:
            return f"too_deep: nesting deeper than {max_depth} levels at offset {offset}"
    # The proof for a record as msgspec and orjson write it (compact; most records): it is
    # its own canonical form. Escapes or repeated strings do not stand in its way.
    if _is_canonical(data):
        return None
    if not escaped:
        # No escapes: the strings are exactly the odd fields between quotes (a str and its
        # UTF-8 bytes are equal exactly when the other is).
        parts = text.split('"')
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
                if after[:1] == ":" or after.lstrip(ws)[:1] == ":"
            ]
            if len(set(keys)) == len(keys):
                return None
    return _exact_problem(data, text, escaped)


def _is_canonical(data: bytes) -> bool:
    """True when msgspec decodes `data` and encodes the result back to exactly `data`.

    Then `data` has none of the hazards after the depth: it is the encoding of Python
    values, so it is JSON and UTF-8 (the encoder writes nothing else); its objects are
    dicts, each key once, and one text has one parse, so no object of `data` holds a key
    twice however it is spelled (an escaped key is written back unescaped: not equal);
    the decoder refuses lone surrogates, NaN and Infinity, and numbers out of range.
    Call it only once the depth is known to be within `MAX_DEPTH_LIMIT` (the decoder
    recurses once per level). tests/unit/broker/test_wire_guard_fast.py checks it
    against the reference parser.
    """
    try:
        return _encode_any(_decode_any(data)) == data
    except (msgspec.MsgspecError, ValueError):  # ValueError: UnicodeDecodeError among them
        return False


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


def _exact_problem(data: bytes, text: str, escaped: bool) -> str | None:
    if escaped and b"\\u" in data:
        for match in _SURROGATE.finditer(data):
            if match.start(1) >= 0:
                at = match.start(1) - 2
                return f"lone_surrogate: {data[at : at + 6].decode()} at offset {at}"
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
