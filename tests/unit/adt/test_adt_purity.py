"""adt/ stays pure (STYLE.md rules 1, 2 and 15): no I/O, no clock, no other dccgate package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import adt

ADT_DIR = Path(adt.__file__).parent
ALLOWED_THIRD_PARTY = {"msgspec"}
FORBIDDEN_STDLIB = {
    "asyncio",
    "os",
    "socket",
    "time",
    "subprocess",
    "threading",
    "selectors",
    "ssl",
    "random",
    "logging",
}
STDLIB_OK = {
    "__future__",
    "array",
    "bisect",
    "collections",
    "dataclasses",
    "datetime",
    "fractions",
    "heapq",
    "itertools",
    "math",
    "operator",
    "re",
    "typing",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(ADT_DIR.glob("*.py")), ids=lambda p: p.name)
def test_adt_imports_only_stdlib_without_io_and_msgspec(path: Path) -> None:
    imported = imported_modules(path) - {"adt"}
    assert not imported & FORBIDDEN_STDLIB, f"{path.name} imports {imported & FORBIDDEN_STDLIB}"
    unexpected = imported - STDLIB_OK - ALLOWED_THIRD_PARTY
    assert not unexpected, f"{path.name} imports {unexpected}; adt/ allows stdlib and msgspec"


def test_datetime_now_is_never_called() -> None:
    for path in ADT_DIR.glob("*.py"):
        text = path.read_text()
        for clock in (".now(", ".utcnow(", ".today(", "time.time"):
            assert clock not in text, f"{path.name} reads the clock ({clock})"


def test_every_public_name_is_exported() -> None:
    for name in adt.__all__:
        assert hasattr(adt, name), name
