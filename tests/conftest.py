"""Shared fixtures: factories, no global state."""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson
import pytest

USER_A = "90-B3-D5-1F-30-01-00-00"
USER_B = "90-B3-D5-1F-30-02-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"

RequestFactory = Callable[..., bytes]


@pytest.fixture
def make_request() -> RequestFactory:
    """Factory for a Service Request's JSON bytes; keyword arguments override fields."""

    def make(
        *,
        user: str = USER_A,
        target: str = DEVICE,
        counter: int = 1,
        role: str = "IS",
        srv: str = "4.1.1",
        cv: int = 1,
        **extra: object,
    ) -> bytes:
        doc: dict[str, object] = {
            "request_id": f"{user}:{target}:{counter}",
            "user_role": role,
            "srv": srv,
            "command_variant": cv,
            "body": {},
        }
        doc.update(extra)
        return orjson.dumps(doc)

    return make


@pytest.fixture
def rng() -> random.Random:
    """A seeded random generator, so failures reproduce."""
    return random.Random(20261121)
