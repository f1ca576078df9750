"""Validation messages name the values that would have been right."""

from __future__ import annotations

import enum
from typing import Literal

import msgspec
import pytest

from workers.config.explain import describe
from workers.config.model import RegionalCapacity


def _message(raw: bytes, root: object) -> str:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(raw, type=root)
    return describe(caught.value, root)


def test_a_bad_region_lists_the_three_regions() -> None:
    message = _message(b'{"regions": {"west": {"rate_per_s": 1, "burst": 1}}}', RegionalCapacity)
    assert message.startswith("Invalid enum value 'west' - at `key` in `$.regions`")
    assert message.endswith("expected one of: central, north, south")
    message = _message(
        b'{"regions": {"north": {"rate_per_s": 1, "burst": 1}}, "unknown_region": "x"}',
        RegionalCapacity,
    )
    assert message.endswith("expected one of: central, north, south")


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(msgspec.Struct):
    kind: Literal["a", "b"] | None = None
    colour: Colour = Colour.RED


class Outer(msgspec.Struct):
    items: dict[str, list[Inner]]
    pair: tuple[int, Literal["x", "y"]] = (0, "x")


def test_the_path_is_followed_through_dicts_lists_tuples_unions_and_enums() -> None:
    assert _message(b'{"items": {"k": [{"kind": "c"}]}}', Outer).endswith(
        "at `$.items[...][0].kind`; expected one of: a, b"
    )
    assert _message(b'{"items": {"k": [{}, {"colour": "green"}]}}', Outer).endswith(
        "expected one of: blue, red"
    )
    assert _message(b'{"items": {}, "pair": [1, "z"]}', Outer).endswith("expected one of: x, y")


def test_other_messages_are_left_alone() -> None:
    assert _message(b'{"items": 3}', Outer) == "Expected `object`, got `int` - at `$.items`"
