"""The suite's own layout: pytest imports a test module outside a package by its basename,
so two such modules with one name stop the whole run at collection ("import file
mismatch"), but only when both are collected in one session, as `make test` does."""

from __future__ import annotations

import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _in_package(path: Path) -> bool:
    return (path.parent / "__init__.py").exists() and path.parent != ROOT / "tests"


def test_no_two_unpackaged_test_modules_share_a_name() -> None:
    names: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
    for path in (ROOT / "tests").rglob("test_*.py"):
        if "__pycache__" in path.parts or _in_package(path):
            continue
        names[path.name].append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, f"rename one of each (pytest would stop at collection): {clashes}"
