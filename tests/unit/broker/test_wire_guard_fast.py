"""broker.wire_guard's fast path (a record that is its own canonical msgspec encoding) answers
exactly what the guard answered before it, reason for reason.

The reference is the previous implementation kept verbatim (wire_guard_before.py); the
independent recursive-descent reference of test_wire_guard.py holds both to the JSON rules.
The documents here are the ones the fast path is for: compact, as msgspec and orjson write
them, with duplicate keys, escaped spellings of a key, repeated strings, numbers out of
range, lone surrogates and invalid UTF-8 mixed in.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broker import wire_guard
from broker.wire_guard import MAX_DEPTH_LIMIT, json_problem
from tests.unit.broker import wire_guard_before
from tests.unit.broker.test_wire_guard import (
    check_against_reference,
    json_documents,
    mutated_documents,
)

_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(data: bytes, max_depth: int = 32) -> None:
    got = json_problem(data, max_depth=max_depth)
    assert got == wire_guard_before.json_problem(data, max_depth=max_depth), data
    check_against_reference(data, max_depth)  # and the independent parser agrees


# Trees whose objects are lists of pairs, so a key may repeat; rendered compactly as msgspec
# writes JSON (keys and strings escaped only where JSON requires), or with one key spelled
# with a \u escape: a document the canonical check must not take for clean.
_keys = st.sampled_from(["srv", "a", "b", "", "\u00e9", "\U0001f600", 'q"', "b\\s", "\n"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | _keys
)
_trees = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda items: ("array", items))
        | st.lists(st.tuples(_keys, inner), max_size=4).map(lambda pairs: ("object", pairs))
    ),
    max_leaves=20,
)
_encode = msgspec.json.Encoder().encode


def _compact(tree: Any, escape_key: bool) -> bytes:
    if isinstance(tree, tuple) and tree[0] == "array":
        return b"[" + b",".join(_compact(item, escape_key) for item in tree[1]) + b"]"
    if isinstance(tree, tuple) and tree[0] == "object":
        members = []
        for key, value in tree[1]:
            spelled = _encode(key)
            if escape_key and key == "a":
                spelled = b'"\\u0061"'  # the same key, spelled otherwise
            members.append(spelled + b":" + _compact(value, escape_key))
        return b"{" + b",".join(members) + b"}"
    return _encode(tree)


@st.composite
def compact_documents(draw: st.DrawFn) -> bytes:
    return _compact(draw(_trees), draw(st.booleans()))


def _plain(tree: Any) -> Any:
    """The tree as Python values (the last of a repeated key wins): canonical when encoded."""
    if isinstance(tree, tuple) and tree[0] == "array":
        return [_plain(item) for item in tree[1]]
    if isinstance(tree, tuple) and tree[0] == "object":
        return {key: _plain(value) for key, value in tree[1]}
    return tree


@st.composite
def canonical_documents(draw: st.DrawFn) -> bytes:
    value = _plain(draw(_trees))
    if draw(st.booleans()):
        try:
            return orjson.dumps(value)
        except TypeError:  # an integer beyond 64 bits: orjson refuses it, msgspec does not
            pass
    return _encode(value)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Service Requests as producers write them, with a body and sometimes an xml field."""
    doc: dict[str, Any] = {
        "request_id": "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:"
        + str(draw(st.integers(0, 2**64))),
        "user_role": draw(st.sampled_from(["IS", "ES", "XX", ""])),
        "srv": draw(st.sampled_from(["4.1.1", "2.2", "11.3", "srv"])),
        "command_variant": draw(st.integers(-1, 9)),
        "body": _plain(draw(_trees.filter(lambda t: isinstance(t, tuple) and t[0] == "object"))),
    }
    if draw(st.booleans()):
        doc["xml"] = '<sr:Request a="1">\n' + draw(st.text(max_size=8)) + "</sr:Request>"
    if draw(st.booleans()):
        doc["region"] = draw(st.sampled_from(["north", "south", "central"]))
    data = _encode(doc)
    # Sometimes a member twice, the second time with another value (last key wins in msgspec).
    if draw(st.booleans()):
        dup = draw(st.sampled_from([b'"srv":"7.2"', b'"body":{}', b'"command_variant":1']))
        data = data[:-1] + b"," + dup + b"}"
    return data


_hazards = st.sampled_from(
    [b"\xff", b"\xc3", b"\\ud800", b"NaN", b"1e400", b"9" * 4400, b" ", b"\\u0061", b"[" * 40]
)


@st.composite
def spoiled(draw: st.DrawFn) -> bytes:
    """A compact document with one hazard written into it somewhere."""
    data = bytearray(draw(compact_documents() | requests()))
    at = draw(st.integers(min_value=0, max_value=len(data)))
    data[at:at] = draw(_hazards)
    return bytes(data)


@_settings
@given(compact_documents())
@example(b'{"a":1,"a":1}')
@example(b'{"a":1,"\\u0061":1}')
@example(b'{"a":{"b":1,"b":1}}')
@example(b'[{"x":"y"},{"x":"y","x":"y"}]')
@example(b'{"k":"v","k2":"v"}')
def test_compact_documents(data: bytes) -> None:
    _same(data)
    _same(data, max_depth=2)


@_settings
@given(canonical_documents())
def test_canonical_documents(data: bytes) -> None:
    _same(data)


@_settings
@given(requests())
def test_service_requests(data: bytes) -> None:
    _same(data)


@_settings
@given(spoiled() | json_documents() | mutated_documents())
def test_spoiled_and_other_documents(data: bytes) -> None:
    _same(data)
    _same(data, max_depth=3)


@_settings
@given(st.binary(max_size=120), st.integers(min_value=1, max_value=MAX_DEPTH_LIMIT))
def test_arbitrary_bytes(data: bytes, max_depth: int) -> None:
    _same(data, max_depth=max_depth)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":1}',  # compact, exact same member twice
        b'{"a":1,"\\u0061":2}',  # escaped-equal keys
        b'{"x":[1,{"y":2,"y":2}]}',  # deep inside an array
        b'{"n":1e400}',  # out of a float's range: not canonical, not a hazard here
        b'{"n":' + b"9" * 5000 + b"}",  # beyond msgspec's int digits: not canonical either
        b'{"n":-0}',  # decodes as 0: written back otherwise
        b'{"s":"\\ud800"}',  # a lone surrogate: msgspec refuses it, the guard names it
        b'{"s":"\xff"}',  # invalid UTF-8 inside a string
        b'{"s":"\\/"}',  # an escape msgspec would not write
        b'{"n":NaN}',
        b'{"a":1} ',  # trailing space
        b"\xef\xbb\xbf{}",  # a BOM
        json.dumps({"a": 1, "b": [1, 2]}).encode(),  # Python's spacing: not compact
        b"[" * 33 + b"]" * 33,  # too deep: refused before the decoder recurses
    ],
)
def test_edges(data: bytes) -> None:
    _same(data)


def test_the_canonical_check_is_what_passes_a_compact_record() -> None:
    compact = b'{"request_id":"x","body":{"a":"b","c":"b"},"xml":"<a b=\\"1\\"/>"}'
    assert wire_guard._is_canonical(compact)  # repeated values and escapes: still canonical
    assert json_problem(compact) is None
    assert not wire_guard._is_canonical(b'{"a":1,"a":1}')
    assert not wire_guard._is_canonical(b'{"a":1, "b":2}')
    assert not wire_guard._is_canonical(b'{"s":"\\ud800"}')
