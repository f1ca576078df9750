"""The metric names deploy/'s dashboards and alert rules use, and the names a metrics page
exports, both reduced to their family names so they can be compared."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
_SERIES_SUFFIX = re.compile(r"_(bucket|sum|count|total|created|info)$")


def family(name: str) -> str:
    """`dccgate_x_total` / `dccgate_x_bucket` -> `dccgate_x`."""
    return _SERIES_SUFFIX.sub("", name)


def metrics_used_by_deploy() -> set[str]:
    """Every `dccgate_*` family a Grafana dashboard or a Prometheus rule file names."""
    used: set[str] = set()
    for path in [*DEPLOY.rglob("*.json"), *DEPLOY.rglob("*.rules.yml")]:
        used |= set(re.findall(r"dccgate_[a-z0-9_]+", path.read_text()))
    return {family(m) for m in used}


def families_exported(page: str) -> set[str]:
    """The families a Prometheus text page declares (`# TYPE name kind`), samples or not."""
    return {family(m) for m in re.findall(r"^# TYPE (dccgate_[a-z0-9_]+) ", page, re.M)}
