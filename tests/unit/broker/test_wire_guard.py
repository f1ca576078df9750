"""broker.wire_guard: the hazards a record is refused for before any decoder sees it.

The property tests hold the guard (fast paths included) to a slow, independent reference:
a byte-at-a-time UTF-8 / depth scan and a recursive-descent JSON parser written here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broker.schemas import ServiceRequest
from broker.wire_guard import (
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_LIMIT,
    MAX_RECORD_BYTES,
    REASON_CODES,
    json_problem,
    reason_code,
    size_problem,
)

REQUEST = (
    b'{"request_id":"90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000","user_role":"IS",'
    b'"srv":"4.1.1","command_variant":1,"body":{"price":1.5,"currency":"GBP"},"region":"south"}'
)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


# --- what passes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,
        b"{}",
        b"[]",
        b'"x"',
        b"1",
        b'{"a":{"a":{"a":1}}}',  # the same key in different objects
        b'[{"price":1},{"price":2}]',
        b'{"k":"v","k2":"v"}',  # values repeat, keys do not
        b'{"name":"Zo\xc3\xab","city":"\xe6\x9d\xb1\xe4\xba\xac"}',  # UTF-8, not ASCII
        b'{"xml":"<a b=\\"1\\">\\u00e9</a>","n":null}',  # escapes, no duplicate
        b'{"s":"\\ud83d\\ude00"}',  # a surrogate pair is one character
        b'{"s":"\\\\ud800"}',  # an escaped backslash, then the text ud800
        b'{"amount":1e400,"big":' + b"9" * 5000 + b"}",  # numbers are the decoder's business
        b'{"x\\n":' + b"9" * 5000 + b"}",  # the same on the exact path (no int conversion)
        b'{"deep":' + nested(DEFAULT_MAX_DEPTH - 1) + b"}",  # exactly 32 levels
    ],
)
def test_acceptable_records_pass(data: bytes) -> None:
    assert json_problem(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":"\\"b\\":1","b":2}',  # a "b": inside a string is not a key
        b'{"note":"srv\\":","srv":"4.1.1"}',
        b'{"a":"b", ":x":1, ":y":2}',  # keys that start with a colon
        b'{"a":"\\"a\\":\\"a\\":"}',
        b'{"a":"x","b":"x","c":"x"}',
        b'{"t":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b'{"t":"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
    ],
)
def test_key_lookalikes_inside_strings_are_not_keys(data: bytes) -> None:
    assert json_problem(data) is None


# --- every reason code --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a":"\xff"}', "invalid_utf8: byte 0xff at offset 6"),
        (b'{"a":"\xc0\xaf"}', "invalid_utf8: byte 0xc0 at offset 6"),  # overlong "/"
        (b'{"a":"\xed\xa0\x80"}', "invalid_utf8: byte 0xed at offset 6"),  # encoded surrogate
        (b'{"a":"\xf4\x90\x80\x80"}', "invalid_utf8: byte 0xf4 at offset 6"),  # > U+10FFFF
        (b'{"a":"\xc3', "invalid_utf8: byte 0xc3 at offset 6"),  # cut in the middle
        (b'{"\xff":1}', "invalid_utf8: byte 0xff at offset 2"),  # in a key
        (b"\xff" + nested(1000), "invalid_utf8: byte 0xff at offset 0"),  # checked first
    ],
)
def test_invalid_utf8(data: bytes, reason: str) -> None:
    assert json_problem(data) == reason


def test_too_deep_names_the_bracket_one_level_too_deep() -> None:
    data = b'{"unknown":' + nested(1000) + b"}"
    # "{" is level 1, the first "[" (offset 11) level 2, so level 33 is at 11 + 31.
    assert json_problem(data) == "too_deep: nesting deeper than 32 levels at offset 42"
    assert json_problem(b'{"a":' + nested(DEFAULT_MAX_DEPTH) + b"}") == (
        "too_deep: nesting deeper than 32 levels at offset 36"
    )


def test_too_deep_counts_brackets_outside_strings_only() -> None:
    many = b"[" * 40
    assert json_problem(b'["' + many + b'",' + nested(3) + b"]") is None
    # An escaped quote does not end the string, so these brackets are still inside it.
    assert json_problem(b'["\\"' + many + b'"]') is None
    # A string ending in an escaped backslash does end, so these brackets count.
    assert json_problem(b'["\\\\",' + many + b"]") == (
        "too_deep: nesting deeper than 32 levels at offset 37"
    )
    # Flat but many: over the bracket count, within the depth.
    assert json_problem(b"[" + b",".join([b"[]"] * 500) + b"]") is None


@pytest.mark.parametrize("max_depth", [1, 2, 5, MAX_DEPTH_LIMIT])
def test_max_depth_is_the_deepest_level_allowed(max_depth: int) -> None:
    assert json_problem(nested(max_depth), max_depth=max_depth) is None
    assert json_problem(nested(max_depth + 1), max_depth=max_depth) == (
        f"too_deep: nesting deeper than {max_depth} levels at offset {max_depth}"
    )


@pytest.mark.parametrize("max_depth", [0, -1, MAX_DEPTH_LIMIT + 1, 10**6])
def test_max_depth_out_of_range_is_refused(max_depth: int) -> None:
    with pytest.raises(ValueError, match="max_depth must be between 1 and 256"):
        json_problem(b"{}", max_depth=max_depth)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"s":"\\ud800"}', "lone_surrogate: \\ud800 at offset 6"),
        (b'{"s":"\\uDC00"}', "lone_surrogate: \\uDC00 at offset 6"),  # a low half alone
        (b'{"s":"\\udc00\\ud800"}', "lone_surrogate: \\udc00 at offset 6"),  # the wrong order
        (b'{"s":"\\ud800\\ud800\\udc00"}', "lone_surrogate: \\ud800 at offset 6"),
        (b'{"s":"\\\\\\ud800"}', "lone_surrogate: \\ud800 at offset 8"),  # \\ then \ud800
        (b'{"\\ud800":1}', "lone_surrogate: \\ud800 at offset 2"),  # in a key
        (b'["\\ud83d\\ude00","\\ud83d"]', "lone_surrogate: \\ud83d at offset 17"),
    ],
)
def test_lone_surrogates(data: bytes, reason: str) -> None:
    assert json_problem(data) == reason


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b'{"srv":"7.2","request_id":"x","srv":"4.1.1"}', '"srv"'),
        (b'{"srv":"7.2","\\u0073rv":"4.1.1"}', '"srv"'),  # the same key, escaped
        (b'{"s\\u0072v":"7.2","sr\\u0076":"4.1.1"}', '"srv"'),  # both escaped differently
        (b'{"\\/":1,"/":2}', '"/"'),
        (b'{"caf\\u00e9":1,"caf\xc3\xa9":2}', '"caf\\u00e9"'),  # escaped vs UTF-8
        (b'{"\\ud83d\\ude00":1,"\xf0\x9f\x98\x80":2}', '"\\ud83d\\ude00"'),  # pair vs UTF-8
        (b'{"body":{"amount":1,"amount":2}}', '"amount"'),
        (b'[1,{"a":{"b":1}},{"a":2,"a":3}]', '"a"'),
        (b'{"a":"b", ":x":1, ":x":2}', '":x"'),  # lookalikes misalign a naive key regex
        (b'{ "srv" : 1 ,\n "srv"\t: 2 }', '"srv"'),  # whitespace around the colon
        (b'{"' + b"k" * 100 + b'":1,"' + b"k" * 100 + b'":2}', '"' + "k" * 40 + '..."'),
    ],
)
def test_duplicate_keys(data: bytes, key: str) -> None:
    assert json_problem(data) == f"duplicate_key: {key} twice in one object"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a\\n":1,}', "not_json: Expecting property name enclosed in double quotes at offset 9"),
        (b'{"a\\n":NaN}', "not_json: NaN, Infinity and -Infinity are not JSON"),
        (b'{"a":1,"a":', "not_json: Expecting value at offset 11"),  # cut after a repeat
        (b'{"\xc3\xa9\\n":1} x', "not_json: Extra data at offset 11"),  # bytes: "é" is 2
    ],
)
def test_not_json_comes_from_the_exact_check_only(data: bytes, reason: str) -> None:
    assert json_problem(data) == reason


def test_malformed_text_is_otherwise_left_to_the_decoder() -> None:
    for data in (b"", b"[NaN]", b'{"a":1}x', b"{", b"]]]"):
        assert json_problem(data) is None
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(data)


def test_reason_codes() -> None:
    codes = {"too_large", "invalid_utf8", "too_deep", "lone_surrogate", "duplicate_key"}
    assert codes | {"not_json"} == REASON_CODES
    assert reason_code('duplicate_key: "a:b" twice in one object') == "duplicate_key"


# --- what msgspec does without the guard (the module docstring's findings, kept true) -----------


class _Record(msgspec.Struct, kw_only=True):
    srv: str
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


def test_msgspec_behaviour_the_guard_is_there_for() -> None:
    decode = msgspec.json.Decoder(_Record).decode
    with pytest.raises(UnicodeDecodeError):  # not a msgspec.DecodeError
        decode(b'{"srv":"\xff"}')
    assert bytes(decode(b'{"srv":"a","body":{"x":"\xff"}}').body) == b'{"x":"\xff"}'
    assert decode(b'{"srv":"a","unknown":"\xff"}').srv == "a"
    with pytest.raises(RecursionError):
        decode(b'{"srv":"a","unknown":' + nested(2000) + b"}")
    assert decode(b'{"srv":"7.2","srv":"4.1.1"}').srv == "4.1.1"  # the last one wins
    assert decode(b'{"srv":"7.2","\\u0073rv":"4.1.1"}').srv == "4.1.1"
    with pytest.raises(msgspec.DecodeError):  # refused even in a Raw field
        decode(b'{"srv":"a","body":{"x":"\\ud800"}}')
    with pytest.raises(msgspec.ValidationError, match="Number out of range"):
        msgspec.json.decode(b"1e400")
    assert msgspec.json.decode(b"1" * 4300) > 10**4299
    with pytest.raises(msgspec.ValidationError, match="Integer value out of range"):
        msgspec.json.decode(b"1" * 4301)
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b"NaN")


# --- properties against a slow reference ---------------------------------------------------------


class _NotJsonError(Exception):
    pass


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r"}
_SIMPLE_ESCAPES["t"] = "\t"
_HEX = set("0123456789abcdefABCDEF")


class _Reference:
    """RFC 8259 by recursive descent; records the first lone surrogate and any duplicate."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.lone_at: int | None = None  # index in text of the first lone surrogate's "\"
        self.duplicate = False

    def document(self) -> None:
        self.value()
        self.ws()
        if self.i != len(self.s):
            raise _NotJsonError

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\n\r":
            self.i += 1

    def value(self) -> None:
        self.ws()
        if self.i >= len(self.s):
            raise _NotJsonError
        c = self.s[self.i]
        if c == "{":
            self.i += 1
            keys: set[str] = set()
            self.ws()
            if self.s.startswith("}", self.i):
                self.i += 1
                return
            while True:
                self.ws()
                if not self.s.startswith('"', self.i):
                    raise _NotJsonError
                key = self.string()
                self.duplicate = self.duplicate or key in keys
                keys.add(key)
                self.ws()
                if not self.s.startswith(":", self.i):
                    raise _NotJsonError
                self.i += 1
                self.value()
                self.ws()
                if self.s.startswith(",", self.i):
                    self.i += 1
                elif self.s.startswith("}", self.i):
                    self.i += 1
                    return
                else:
                    raise _NotJsonError
        elif c == "[":
            self.i += 1
            self.ws()
            if self.s.startswith("]", self.i):
                self.i += 1
                return
            while True:
                self.value()
                self.ws()
                if self.s.startswith(",", self.i):
                    self.i += 1
                elif self.s.startswith("]", self.i):
                    self.i += 1
                    return
                else:
                    raise _NotJsonError
        elif c == '"':
            self.string()
        elif (m := _NUMBER.match(self.s, self.i)) is not None:
            self.i = m.end()
        else:
            for word in ("true", "false", "null"):
                if self.s.startswith(word, self.i):
                    self.i += len(word)
                    return
            raise _NotJsonError

    def unit(self, at: int) -> int | None:
        digits = self.s[at + 2 : at + 6]
        if self.s[at : at + 2] == "\\u" and len(digits) == 4 and set(digits) <= _HEX:
            return int(digits, 16)
        return None

    def string(self) -> str:
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise _NotJsonError
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                e = self.s[self.i + 1 : self.i + 2]
                if e in _SIMPLE_ESCAPES:
                    out.append(_SIMPLE_ESCAPES[e])
                    self.i += 2
                    continue
                cu = self.unit(self.i)
                if cu is None:
                    raise _NotJsonError
                if 0xD800 <= cu <= 0xDBFF:
                    low = self.unit(self.i + 6)
                    if low is not None and 0xDC00 <= low <= 0xDFFF:
                        out.append(chr(0x10000 + ((cu - 0xD800) << 10) + (low - 0xDC00)))
                        self.i += 12
                        continue
                if 0xD800 <= cu <= 0xDFFF and self.lone_at is None:
                    self.lone_at = self.i
                out.append(chr(cu))
                self.i += 6
            elif ord(c) < 0x20:
                raise _NotJsonError
            else:
                out.append(c)
                self.i += 1


def reference(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, int | None] | None:
    """(code, offset) of the first hazard, by the slowest obvious means; None if none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ("invalid_utf8", exc.start)
    depth, in_string, i = 0, False, 0
    while i < len(data):
        c = data[i]
        if c == 0x5C:  # a backslash escapes the next byte
            i += 2
            continue
        if c == 0x22:
            in_string = not in_string
        elif not in_string and c in b"[{":
            depth += 1
            if depth > max_depth:
                return ("too_deep", i)
        elif not in_string and c in b"]}":
            depth -= 1
        i += 1
    parser = _Reference(text)
    try:
        parser.document()
    except _NotJsonError:
        return ("not_json", None)
    if parser.lone_at is not None:
        return ("lone_surrogate", len(text[: parser.lone_at].encode()))
    if parser.duplicate:
        return ("duplicate_key", None)
    return None


def _offset(reason: str) -> int | None:
    found = re.search(r" at offset (\d+)$", reason)
    return int(found.group(1)) if found else None


def check_against_reference(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    got = json_problem(data, max_depth=max_depth)
    want = reference(data, max_depth)
    if got is not None:
        assert reason_code(got) in REASON_CODES, got
    if want is None:
        assert got is None, (data, got)
    elif want[0] == "not_json":
        # Malformed text: the guard may leave it to the decoder, or see a hazard on the way.
        assert got is None or reason_code(got) not in {"invalid_utf8", "too_deep"}, (data, got)
    else:
        assert got is not None, (data, want)
        assert reason_code(got) == want[0], (data, got, want)
        if want[1] is not None:
            assert _offset(got) == want[1], (data, got, want)


# JSON values as trees whose objects are lists of pairs, so keys may repeat; rendered with
# random escaping and spacing, so the same key may be spelled two ways.
_keys = st.sampled_from(["srv", "a", "b", "", ":", '"x":', "caf\u00e9", "\U0001f600", "[{"])
_text = st.text(
    alphabet=st.sampled_from(['"', "\\", ":", ",", "[", "]", "{", "}", "a", "\u00e9", " "]),
    max_size=6,
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
    | _keys
)
_trees = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda items: ("array", items))
        | st.lists(st.tuples(_keys | _text, inner), max_size=4).map(lambda pairs: ("object", pairs))
    ),
    max_leaves=25,
)


def _render_string(text: str, draw_bool: Any) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif draw_bool():
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16(ch)))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _render(tree: Any, draw_bool: Any, space: str) -> str:
    if isinstance(tree, tuple) and tree[0] == "array":
        return "[" + f",{space}".join(_render(item, draw_bool, space) for item in tree[1]) + "]"
    if isinstance(tree, tuple) and tree[0] == "object":
        members = (
            f"{_render_string(key, draw_bool)}{space}:{space}{_render(value, draw_bool, space)}"
            for key, value in tree[1]
        )
        return "{" + f",{space}".join(members) + "}"
    if isinstance(tree, str):
        return _render_string(tree, draw_bool)
    return json.dumps(tree)


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    tree = draw(_trees)
    space = draw(st.sampled_from(["", " ", "\n "]))
    text = _render(tree, lambda: draw(st.booleans()), space)
    return text.encode()


_interesting = st.sampled_from(
    [
        *(b'"', b"\\", b"[", b"]", b"{", b"}", b":", b",", b" ", b"a", b"1", b'"a":', b"NaN"),
        *(b"\\u", b"\\ud800", b"\\udc00", b"\xff", b"\xc3", b"\xe9"),
    ]
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(json_documents()))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(_interesting)
        if action == "insert":
            data[at:at] = piece
        elif action == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=3))]
        else:
            data[at : at + len(piece)] = piece
    return bytes(data)


_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(json_documents())
@example(b'{"a":"b", ":x":1, ":x":2}')
@example(b'{"srv":"7.2","\\u0073rv":"4.1.1"}')
def test_agrees_with_the_reference_on_json(data: bytes) -> None:
    check_against_reference(data)
    check_against_reference(data, max_depth=2)


@_settings
@given(mutated_documents())
def test_agrees_with_the_reference_on_mutated_json(data: bytes) -> None:
    check_against_reference(data)
    check_against_reference(data, max_depth=3)


@_settings
@given(
    st.binary(max_size=200) | st.lists(_interesting, max_size=60).map(b"".join),
    st.integers(min_value=1, max_value=MAX_DEPTH_LIMIT),
)
def test_never_raises_and_agrees_on_arbitrary_bytes(data: bytes, max_depth: int) -> None:
    check_against_reference(data, max_depth=min(max_depth, 8))
    reason = json_problem(data, max_depth=max_depth)
    assert reason is None or reason_code(reason) in REASON_CODES


@_settings
@given(json_documents() | mutated_documents())
def test_after_the_guard_msgspec_raises_only_its_own_errors(data: bytes) -> None:
    if json_problem(data) is not None:
        return
    record = b'{"request_id":"x","user_role":"IS","srv":"1","command_variant":1,"body":%s}'
    for decode in (msgspec.json.decode, msgspec.json.Decoder(ServiceRequest).decode):
        try:
            decode(data)
            decode(record % data)
        except msgspec.DecodeError:
            pass


# --- depth: the definition at its edges, and large records ---------------------------------------


def test_depth_is_opens_minus_closes_so_far() -> None:
    # A stray close lowers the count (a decoder stops at it anyway): 34 levels after 4
    # stray closes reach 30; after 1 they reach 33, at the last open (offset 34).
    assert json_problem(b"]" * 4 + nested(34)) is None
    assert json_problem(b"]" + nested(34)) == (
        "too_deep: nesting deeper than 32 levels at offset 34"
    )
    # Left open (a cut record): the opens still count.
    assert json_problem(b"[" * 40) == "too_deep: nesting deeper than 32 levels at offset 32"
    assert json_problem(b"[" * 32 + b"1," * 10) is None


def test_many_brackets_within_the_depth_pass() -> None:
    towers = b"[" + b",".join([nested(31)] * 300) + b"]"  # 32 levels, 9,300 pairs
    assert json_problem(towers) is None
    assert json_problem(b"[" + towers + b"]") == (
        "too_deep: nesting deeper than 32 levels at offset 32"
    )


@pytest.mark.parametrize("size", [70_000, 300_000])
def test_too_deep_offsets_past_the_first_chunk(size: int) -> None:
    flat = b"[" + b'[],"[",' * (size // 7)
    data = flat + b"[" * 40
    want = reference(data)
    assert want == ("too_deep", len(flat) + 31)
    assert json_problem(data) == f"too_deep: nesting deeper than 32 levels at offset {want[1]}"


def test_a_record_over_the_size_limit_is_too_large() -> None:
    assert size_problem(b"x" * MAX_RECORD_BYTES) is None
    reason = size_problem(b"x" * (MAX_RECORD_BYTES + 1))
    assert reason == (
        f"too_large: {MAX_RECORD_BYTES + 1} bytes, more than the {MAX_RECORD_BYTES} a record "
        "may have"
    )
    assert reason_code(reason) == "too_large"
