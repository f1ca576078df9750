"""Property-based run of the admin API from its own /openapi.json (schemathesis): whatever
the inputs, no 500. Runs against a real `dccgate run` with the embedded broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from broker.embedded import free_port
from tests.integration.helpers import wait_healthy

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

pytestmark = [
    pytest.mark.slow,
    pytest.mark.embedded_only(
        reason="a `dccgate run` with its own embedded broker, whatever --broker says; the "
        "admin API's answers do not depend on the broker, so run once (about 50 s)"
    ),
    # About 50 s alone; every route added adds examples, and a loaded machine doubles it.
    pytest.mark.timeout(300),
]

TOKEN = "fuzz-operator-token-at-least-32-characters"


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kafka_port, http_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("fuzz") / "gateway.log"
    env = {**os.environ, "DCCGATE_TOKEN": TOKEN, "DCCGATE_LOG_LEVEL": "WARNING"}
    config = Path(__file__).resolve().parents[2] / "docs" / "examples" / "dccgate.toml"
    with log.open("wb") as out:
        ports = ["--kafka-port", str(kafka_port), "--http-port", str(http_port)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run", *ports, "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_healthy(http_port, proc, log)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)


@pytest.fixture(scope="module")
def api_schema(gateway_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: OpenApiCase) -> None:
    # As the operator (everything allowed) and without a token (every route must refuse).
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error]
    )
    response = case.call()
    assert response.status_code < 500
