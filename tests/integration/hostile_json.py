"""Writing hostile JSON, and knowing what it must get: a writer that can say anything
(repeated keys, invalid UTF-8, numbers no float holds, any escaping), the catalogue of bad
shapes of issue 12, and `expected_kind`, a slow reference for the dead-letter kind a record's
bytes must get (written here, not taken from the guard). Used by tests/integration/hostile.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TypeAlias

# --- a JSON writer that can write anything -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Raw:
    """JSON text written as is: a number no Python float holds, invalid UTF-8, a lone
    surrogate escape, a NaN literal, deep nesting... (valid JSON or not, on purpose)."""

    text: bytes


@dataclass(slots=True)
class Obj:
    """A JSON object written member by member, in order: keys may repeat (or be `Raw`)."""

    pairs: list[tuple[str | Raw, Json]]

    def keys(self) -> list[str | Raw]:
        return [k for k, _ in self.pairs]

    def get(self, key: str) -> Json | None:
        for k, v in self.pairs:
            if k == key:
                return v
        return None

    def set(self, key: str | Raw, value: Json) -> None:
        """Replace the first member named `key`, or add one at the end."""
        for i, (k, _) in enumerate(self.pairs):
            if k == key:
                self.pairs[i] = (key, value)
                return
        self.pairs.append((key, value))

    def drop(self, key: str) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k != key]


Json: TypeAlias = bool | int | float | str | Raw | Obj | list["Json"] | dict[str, "Json"] | None

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                  "\b": "\\b", "\f": "\\f"}  # fmt: skip
_RANDOM_ESCAPE_MAX_CHARS = 4096


@dataclass(slots=True)
class Style:
    """How a record is written: `escape_p` of its characters as `\\uXXXX` escapes (upper or
    lower case hex), and odd but valid whitespace."""

    rng: random.Random | None = None
    escape_p: float = 0.0
    spaces: bool = False


def dumps(value: Json, style: Style | None = None) -> bytes:
    """`value` as JSON bytes, `Raw` parts and repeated keys included."""
    out: list[bytes] = []
    _write(value, out, style or Style())
    return b"".join(out)


def _write(value: Json, out: list[bytes], style: Style) -> None:
    if isinstance(value, Raw):
        out.append(value.text)
    elif isinstance(value, str):
        out.append(_string(value, style))
    elif value is None or isinstance(value, bool):
        out.append(b"null" if value is None else b"true" if value else b"false")
    elif isinstance(value, int):
        out.append(str(value).encode())
    elif isinstance(value, float):
        out.append(json.dumps(value).encode())
    elif isinstance(value, list):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(_sep(b",", style))
            _write(item, out, style)
        out.append(b"]")
    else:
        pairs = value.pairs if isinstance(value, Obj) else list(value.items())
        out.append(b"{")
        for i, (k, v) in enumerate(pairs):
            if i:
                out.append(_sep(b",", style))
            _write(k, out, style)
            out.append(_sep(b":", style))
            _write(v, out, style)
        out.append(b"}")


def _sep(sep: bytes, style: Style) -> bytes:
    if style.spaces and style.rng is not None:
        return style.rng.choice((b" ", b"\n", b"\t", b"\r\n ", b"")) + sep + b" "
    return sep


def _string(text: str, style: Style) -> bytes:
    rng = style.rng
    if rng is None or not style.escape_p or len(text) > _RANDOM_ESCAPE_MAX_CHARS:
        return json.dumps(text, ensure_ascii=False).encode()
    parts = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES and rng.random() < 0.7:
            parts.append(_SHORT_ESCAPES[ch])
        elif code < 0x20 or ch in _SHORT_ESCAPES or rng.random() < style.escape_p:
            parts.append(_unicode_escape(code, upper=rng.random() < 0.5))
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts).encode()


def _unicode_escape(code: int, *, upper: bool) -> str:
    if code > 0xFFFF:  # astral: a surrogate pair
        code -= 0x10000
        units: tuple[int, ...] = (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
    else:
        units = (code,)
    fmt = "\\u{:04X}" if upper else "\\u{:04x}"
    return "".join(fmt.format(u) for u in units)


# --- the catalogue of bad shapes -----------------------------------------------------------

INVALID_UTF8: tuple[bytes, ...] = (
    b'"I\xffS"',  # the user_role of issue 12
    b'"\xff"',
    b'"\xc0\x80"',  # an overlong NUL
    b'"\xed\xa0\x80"',  # an encoded surrogate (CESU-8)
    b'"\xe2\x82"',  # a truncated sequence
    b'"\xf4\x90\x80\x80"',  # above U+10FFFF
    b'"ok\x80"',  # a lone continuation byte
    b'"\xfe\xfe\xff\xff"',
)
"""JSON strings holding bytes that are not UTF-8 (each a complete JSON token)."""

LONE_SURROGATES: tuple[bytes, ...] = (
    b'"\\ud800"',
    b'"\\uDC00"',
    b'"a\\ud800b"',
    b'"\\ud800\\u0041"',
    b'"\\udfff\\ud800"',
    b'"\\ud83d"',
)
"""JSON strings with a `\\uD800`-`\\uDFFF` escape that is not half of a pair."""

FINE_ESCAPES: tuple[tuple[bytes, str], ...] = (
    (b'"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair: one character
    (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then the text ud800
    (b'"\\u0000"', "\x00"),
    (b'"\\u001f\\u007f"', "\x1f\x7f"),
    (b'"\\u2028\\u2029\\ufeff"', "\u2028\u2029\ufeff"),
    (b'"\\/"', "/"),
)
"""Escapes that look like trouble and are valid JSON, with the text they decode to."""

RAW_CONTROL: tuple[bytes, ...] = (b'"a\x00b"', b'"\x01"', b'"tab\there"', b'"line\nbreak"')
"""Strings holding raw control characters: not JSON."""

DIGITS_401 = b"9" * 401
DIGITS_5000 = b"1" + b"0" * 4999

EXTREME_NUMBERS: tuple[bytes, ...] = (
    b"1e400",
    b"-1e400",
    b"1e-400",
    DIGITS_401,
    b"-" + DIGITS_401,
    DIGITS_5000,
    b"-" + DIGITS_5000,
    b"1" + b"0" * 400 + b".0",
    b"-0",
    b"-0.0",
    b"0e0",
    b"1.7976931348623157e308",
    b"1.7976931348623159e308",  # rounds past the largest float
    b"4.9e-324",
    b"1e99999999999999999999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1E+2",
    b"123.456e-7",
)
"""Valid JSON numbers that no float (or no int64) holds, and zeros of every sign."""

NOT_NUMBERS: tuple[bytes, ...] = (
    b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"01", b"+1", b".5", b"1.", b"0x10",
    b"1e", b"--1",
)  # fmt: skip
"""Number-like tokens that are not JSON."""

NUMBER_STRINGS: tuple[str, ...] = ("NaN", "Infinity", "-Infinity", "-0", "1e400", "0x1F", "")

CONTROL_TEXT: tuple[str, ...] = (
    "\x00", "a\x00b", "\x00" * 3, "\x1f", "\x07\x08", "\x7f", "\u2028", "\ufeff", "\U0001f600",
    "\u0000IS", "IS\x00",
)  # fmt: skip
"""Valid text with NUL, control and other odd characters (written as escapes)."""

FORGED_HEADERS: tuple[tuple[str, bytes | None], ...] = (
    ("dccgate-dlq-offset", b"999999"),
    ("dccgate-dlq-topic", b"dcc.sr.inbound"),
    ("dccgate-dlq-partition", b"0"),
    ("dccgate-dlq-kind", b"invalid_json"),
    ("dccgate-dlq-reason", b"forged"),
    ("DCCGATE-Storm-Copy", b"final"),
    ("dccgate-storm-boundary-ms", b"1"),
    ("dccgate-verified", b"true"),
    ("Dccgate-Load", b"1"),
)
"""Headers that claim to be the gateway's own: dropped from every output."""

ODD_HEADERS: tuple[tuple[str, bytes | None], ...] = (
    ("", b"empty name"),
    ("x-null", None),
    ("x-empty", b""),
    ("x-binary", b"\xff\xfe\x00\x01"),
    ("x-big", b"h" * 10_000),
    ("ключ", "значение".encode()),
    ("x-dup", b"1"),
    ("x-dup", b"2"),
    ("dccgate", b"no dash: not the prefix"),
    ("dcctool-send-id", b"7"),
)
"""Headers a sender may set: passed on as they are."""

SEQ_HEADER = "dcctest-seq"
"""The generator's own header: the record's index in the run (most records carry it)."""


def nested(depth: int, *, kind: str = "array", inner: bytes = b"1") -> bytes:
    """Arrays (or objects, or both in turn) nested `depth` levels deep around `inner`."""
    if kind == "array":
        return b"[" * depth + inner + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + inner + b"}" * depth
    opens = b"".join(b'[{"b":' if i % 2 else b"[" for i in range(depth))
    closes = b"".join(b"}]" if i % 2 else b"]" for i in reversed(range(depth)))
    return opens + inner + closes


# --- what a record must get, found independently of the gateway ---------------------------------

_GUARD_DEPTH = 32


def _depth_exceeds(data: bytes, limit: int) -> bool:
    """Arrays and objects nest deeper than `limit` (a byte at a time, outside strings)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Duplicate
    return dict(pairs)


def _refuse(_: str) -> object:
    raise ValueError("NaN and Infinity are not JSON")


def _has_lone_surrogate(value: object) -> bool:
    # json.loads joins the halves of a pair into one character and keeps a lone half as is:
    # text holding one cannot be encoded as UTF-8.
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def expected_kind(value: bytes | None) -> str | None:
    """The dead-letter kind `value` must get whatever else happens, or None when that
    depends on more than its bytes' hygiene: a tombstone is `invalid_json`; otherwise the
    first of invalid UTF-8, nesting deeper than 32, a lone surrogate escape and a
    duplicate key (in that order, as `broker.wire_guard.json_problem` checks them),
    each found here by a slow reference (Python's strict decoder, a byte walk, `json`)."""
    if value is None:
        return "invalid_json"
    if len(value) > 262_144:  # broker.wire_guard.MAX_RECORD_BYTES, written out on purpose
        return "too_large"
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return "invalid_utf8"
    if _depth_exceeds(value, _GUARD_DEPTH):
        return "too_deep"
    if b"\\u" in value:
        try:
            # Keeps lone surrogates, takes NaN, and every member of an object: a repeated
            # key's first value counts too.
            loose = json.loads(text, object_pairs_hook=list)
        except (ValueError, RecursionError):
            return None
        if _has_lone_surrogate(loose):
            return "lone_surrogate"
    try:
        json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse)
    except _Duplicate:
        return "duplicate_key"
    except (ValueError, RecursionError):
        return None
    return None
