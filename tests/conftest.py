"""Shared fixtures: factories, no global state. Also the Hypothesis profiles (below)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

# Hypothesis profiles. "ci" is derandomised: every run draws the same examples, so a red
# build is a bug in the code, not a draw, and it reproduces by running again. "dev" draws
# new examples each run, to find what CI's fixed draw cannot (a failure is replayed from
# .hypothesis/ until fixed; make it an @example). HYPOTHESIS_PROFILE picks one; without it,
# CI=true picks "ci" and anything else "dev". This module is loaded before any test module,
# whose @settings inherit what they do not set from the profile loaded here.
_DEFAULT = settings.get_profile("default")
settings.register_profile(
    "ci",
    _DEFAULT,
    derandomize=True,
    deadline=None,  # shared CI machines are too noisy for a per-example time limit
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", _DEFAULT, print_blob=True)
_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
# Every `dccgate run` the tests start also serves the DUIS ingress (issue #16); on a free
# port, so gateways started side by side (or a developer's own) never fight over 8081.
os.environ.setdefault("DCCGATE_DUIS_PORT", "0")
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _CI else "dev")
try:
    settings.load_profile(_PROFILE)
except InvalidArgument as exc:
    raise pytest.UsageError(
        f"HYPOTHESIS_PROFILE={_PROFILE!r} is not a profile: use ci (derandomised) or dev "
        "(random), or unset it"
    ) from exc


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/integration/conftest.py: pytest reads options only from the
    # conftests it loads first, and a plain `pytest` loads this one, not the integration one.
    parser.addoption(
        "--broker",
        choices=("embedded", "kafka"),
        default="embedded",
        help="the broker of the integration tests: embedded (tansu, the default) or kafka "
        "(a 1-node Apache Kafka started by deploy/kafka/kafka.py; needs java 17+ and mvn)",
    )


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
