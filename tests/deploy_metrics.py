"""The metric names deploy/'s dashboards and alert rules use, and the names a metrics page
exports, both reduced to their family names so they can be compared.

Names are dccgate's own (`dccgate_*`) and the process and garbage-collector metrics every
dccgate process exports through prometheus_client (`process_*`, `python_gc_*`).
"""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
_SERIES_SUFFIX = re.compile(r"_(bucket|sum|count|total|created|info)$")
METRIC_NAME = r"\b(?:dccgate|process|python_gc)_[a-z0-9_]*[a-z0-9]"


def family(name: str) -> str:
    """`dccgate_x_total` / `dccgate_x_bucket` -> `dccgate_x`."""
    return _SERIES_SUFFIX.sub("", name)


def metrics_used_by_deploy() -> set[str]:
    """Every metric family a Grafana dashboard or a Prometheus rule file names."""
    used: set[str] = set()
    for path in [*DEPLOY.rglob("*.json"), *DEPLOY.rglob("*.rules.yml")]:
        used |= set(re.findall(METRIC_NAME, path.read_text()))
    return {family(m) for m in used}


def family_types(page: str) -> dict[str, str]:
    """Family -> type (`counter`, `gauge`, ...) of each family a Prometheus text page
    declares (`# TYPE name kind`), samples or not."""
    return {
        family(name): kind
        for name, kind in re.findall(rf"^# TYPE ({METRIC_NAME}) (\w+)$", page, re.M)
    }


def families_exported(page: str) -> set[str]:
    """The families a Prometheus text page declares (`# TYPE name kind`), samples or not."""
    return set(family_types(page))
