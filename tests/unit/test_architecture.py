"""The layering of docs/how-it-works.md, checked mechanically (STYLE rule 15).

Every import counts: at module level, inside functions, and under `TYPE_CHECKING`, because
an import the type checker follows is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("broker", "throttling", "adt", "workers")
PURE = ("throttling", "adt")
# I/O, the clock, the environment and the event loop stay out of the decision packages.
FORBIDDEN_IN_PURE = {
    "asyncio",
    "aiokafka",
    "aiohttp",
    "prometheus_client",
    "uvloop",
    "os",
    "socket",
    "time",
    "subprocess",
    "threading",
    "urllib",
    "random",
    "broker",
    "workers",
    "confluent_kafka",
}

# Which room may import which (besides itself). A room is a top-level package, or a module
# or sub-package of `workers`. Read it top-down: tools -> cli -> gateway -> router | alerts |
# admin -> config -> duis | runtime -> broker; throttling and adt are pure and import nothing.
ALLOWED: dict[str, set[str]] = {
    "broker": set(),
    "throttling": set(),
    "adt": set(),
    "workers": set(),
    "workers.runtime": {"broker"},
    "workers.duis": {"broker"},
    "workers.config": {"broker", "adt", "throttling", "workers.duis"},
    "workers.router": {
        "broker", "adt", "throttling", "workers.config", "workers.duis", "workers.runtime",
    },
    "workers.alerts": {"broker", "throttling", "workers.config", "workers.runtime"},
    # The certificate registry parses certificates with workers.duis.certificates.
    "workers.admin": {
        "broker", "adt", "throttling", "workers.config", "workers.duis", "workers.runtime",
    },
    # The response deliverer renders answers with workers.duis.response_xml.
    "workers.deliver": {"broker", "workers.config", "workers.duis", "workers.runtime"},
    # The DUIS ingress: reads and verifies signed XML (workers.duis), answers over HTTP.
    "workers.ingress": {"broker", "workers.config", "workers.duis", "workers.runtime"},
    "workers.gateway": {
        "broker", "workers.config", "workers.runtime", "workers.router", "workers.alerts",
        "workers.admin", "workers.deliver", "workers.ingress",
    },
    "workers.cli": {
        "broker", "workers.config", "workers.runtime", "workers.gateway", "workers.tools",
    },
    "workers.tools": {
        "broker", "adt", "throttling", "workers.config", "workers.duis", "workers.runtime",
        "workers.router", "workers.alerts", "workers.gateway",
    },
}  # fmt: skip
KAFKA_CLIENTS = ("aiokafka", "confluent_kafka")
# Kafka clients only where Kafka is the subject: the broker layer, and the tools that measure
# or load it (the benchmark's plain pass-through, the load test's librdkafka producer).
KAFKA_ROOMS = {"broker", "workers.tools"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(path: Path) -> Iterator[str]:
    """Every absolute name `path` imports, wherever the import statement stands: `a.b` for
    `import a.b`; for `from a.b import c`, `a.b.c` when that is a module (a package's
    submodule), else `a.b`."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in MODULES else node.module


def _own_module(name: str) -> str | None:
    """The project module `name` is or lives in, or None for a foreign name."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps = {_own_module(name) for name in _imported_names(path)}
        graph[module] = {d for d in deps if d is not None and d != module}
    return graph


GRAPH = _graph()


def room(module: str) -> str:
    """`broker.producer` -> `broker`; `workers.router.processor` -> `workers.router`."""
    parts = module.split(".")
    return parts[0] if parts[0] != "workers" or len(parts) == 1 else ".".join(parts[:2])


def _top_names(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_names(path)}


@pytest.mark.parametrize("package", PURE)
def test_decision_packages_do_no_io_and_read_no_clock(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_top_names(path) & FORBIDDEN_IN_PURE)
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_only_the_broker_layer_and_tools_talk_to_kafka_clients(client: str) -> None:
    offenders = [
        module
        for module, path in MODULES.items()
        if client in _top_names(path) and room(module) not in KAFKA_ROOMS
    ]
    assert offenders == []


def test_every_room_is_in_the_rule() -> None:
    assert {room(m) for m in MODULES} <= set(ALLOWED)


def test_rooms_import_only_what_the_rule_allows() -> None:
    offenders = sorted(
        f"{module} imports {dep}"
        for module, deps in GRAPH.items()
        for dep in deps
        if room(dep) != room(module) and room(dep) not in ALLOWED[room(module)]
    )
    assert offenders == []


def test_the_data_plane_never_loads_the_admin_process_or_the_tools() -> None:
    """Transitively: importing the router or the alert worker loads no admin or tool code."""
    for start in ("workers.router.service", "workers.alerts.service"):
        seen: set[str] = set()
        todo = [start]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(GRAPH[module])
        assert {room(m) for m in seen} & {"workers.admin", "workers.tools"} == set(), start


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root, deps in graph.items():
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(deps)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
