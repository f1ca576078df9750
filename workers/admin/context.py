"""What an admin API handler may use: the `AdminContext` Protocol, and the quarantine
service's view as the API sees it.

Route modules (`routes_*.py`) depend on this Protocol, not on the app that implements it
(`app.AdminApi`), so the app imports its routes and nothing imports the app back.
"""

from __future__ import annotations

from typing import Any, Protocol

from workers.admin.audit import AuditLog
from workers.admin.quarantine import DecisionKind, Selection
from workers.admin.tokens import Principal
from workers.admin.writer import ControlWriter
from workers.config.reader import ControlReader

__all__ = ["AdminContext", "QuarantineView", "no_quarantine"]


class QuarantineView(Protocol):
    """What the quarantine service offers the API."""

    def list(
        self, user_id: str | None, selection: Selection | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]: ...

    async def decide(
        self, request_id: str, decision: DecisionKind, principal: Principal
    ) -> dict[str, Any] | None: ...

    async def decide_many(
        self, decision: DecisionKind, principal: Principal, selection: Selection, *, limit: int
    ) -> dict[str, Any]: ...


class _NoQuarantine:
    """Until a quarantine service is attached: nothing is quarantined."""

    def list(
        self, user_id: str | None, selection: Selection | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return []

    async def decide(
        self, request_id: str, decision: DecisionKind, principal: Principal
    ) -> dict[str, Any] | None:
        return None

    async def decide_many(
        self, decision: DecisionKind, principal: Principal, selection: Selection, *, limit: int
    ) -> dict[str, Any]:
        return {"decision": decision, "decided": [], "skipped": [], "more": False, "failed": []}


def no_quarantine() -> QuarantineView:
    """A view with nothing in quarantine (an API without a quarantine service)."""
    return _NoQuarantine()


class AdminContext(Protocol):
    """The admin process's state that handlers read and change."""

    @property
    def reader(self) -> ControlReader:
        """The configuration in force, from `dcc.control`."""
        ...

    @property
    def writer(self) -> ControlWriter:
        """Writes accepted changes to `dcc.control` and `dcc.audit`."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit trail, read from `dcc.audit`."""
        ...

    @property
    def quarantine(self) -> QuarantineView:
        """The quarantine service (or a view with nothing in quarantine)."""
        ...
