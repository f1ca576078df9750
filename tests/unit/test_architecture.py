"""The layering rules of docs/how-it-works.md, checked mechanically (STYLE rule 15)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ("throttling", "adt")
# I/O, the clock, the environment and the event loop stay out of the decision packages.
FORBIDDEN_IN_PURE = {
    "asyncio", "aiokafka", "aiohttp", "prometheus_client", "uvloop", "os", "socket", "time",
    "subprocess", "threading", "urllib", "random", "broker", "workers", "confluent_kafka",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PURE)
def test_decision_packages_do_no_io_and_read_no_clock(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN_IN_PURE)
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("client", ["aiokafka", "confluent_kafka"])
def test_only_broker_talks_to_kafka_clients(client: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("workers", *PURE)
        for path in (ROOT / package).rglob("*.py")
        if client in _imports(path)
    ]
    assert offenders == []
