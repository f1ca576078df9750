"""What deploy/README.md says is there, read back from its tables so tests can hold it to the
code: the topic table, the metric table, the alert-rule table and the dashboard rows.

Also what the code declares: the metric names the services register (`declared_metrics`),
found in the source so that a unit test needs no broker.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.deploy_metrics import METRIC_NAME, family

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "deploy" / "README.md"

_ROW = re.compile(r"^\|(.+)\|\s*$")


def _rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in `text` (separator rows left out)."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m and not re.fullmatch(r"[\s|:-]+", m.group(1)):
            rows.append([cell.strip() for cell in m.group(1).split("|")])
    return rows


def _section(text: str, heading: str) -> str:
    """The text under the `## heading` line, up to the next `## ` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def readme() -> str:
    """deploy/README.md."""
    return README.read_text()


def documented_topics(text: str) -> dict[str, tuple[str, str]]:
    """Topic -> (partitions, configs) of the topic table: rows whose first cell is one
    `dcc.*` topic in backticks."""
    found = {}
    for cells in _rows(text):
        m = re.fullmatch(r"`(dcc\.[a-z.]+)`", cells[0])
        if m and len(cells) >= 3:
            found[m.group(1)] = (cells[1], cells[2])
    return found


def documented_metrics(text: str) -> dict[str, str]:
    """Family -> type of the metric tables: rows whose first cell is one metric name in
    backticks and whose second cell is its type."""
    found = {}
    for cells in _rows(text):
        m = re.fullmatch(rf"`({METRIC_NAME})`", cells[0])
        if m and len(cells) >= 2 and cells[1] in {"counter", "gauge", "histogram", "info"}:
            found[family(m.group(1))] = "gauge" if cells[1] == "info" else cells[1]
    return found


def documented_rules(text: str) -> dict[str, tuple[str, str]]:
    """Alert -> (for, severity) of the alert-rule table."""
    found = {}
    for cells in _rows(text):
        m = re.fullmatch(r"`(Dccgate[A-Za-z0-9]+)`", cells[0])
        if m and len(cells) >= 4:
            found[m.group(1)] = (cells[-2], cells[-1])
    return found


def documented_dashboard_rows(text: str) -> list[str]:
    """The row titles the Grafana section lists, as `- **Title**: ...` bullets."""
    return re.findall(r"^- \*\*(.+?)\*\*:", _section(text, "Grafana"), re.M)


def declared_metrics(packages: tuple[str, ...] = ("workers", "broker")) -> set[str]:
    """Patterns (regular expressions) of the `dccgate_*` metric names the code declares:
    every string literal (or f-string, whose `{...}` parts may be anything) that is the
    first argument of a call and looks like a metric name. workers/tools is left out: it
    reads metrics, it declares none."""
    names: set[str] = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            if "tools" in path.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    pattern = re.escape(first.value)
                    literal = first.value
                elif isinstance(first, ast.JoinedStr):
                    texts = [
                        str(v.value) if isinstance(v, ast.Constant) else None for v in first.values
                    ]
                    pattern = "".join("[a-z0-9_]+" if t is None else re.escape(t) for t in texts)
                    literal = "".join("x" if t is None else t for t in texts)
                else:
                    continue
                if re.fullmatch(r"dccgate_[a-z0-9_]*[a-z0-9]", literal):
                    names.add(pattern)
    return names
