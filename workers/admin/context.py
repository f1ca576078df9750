"""What an admin API handler may use: the `AdminContext` Protocol, and the quarantine
service's view as the API sees it.

Route modules (`routes_*.py`) depend on this Protocol, not on the app that implements it
(`app.AdminApi`), so the app imports its routes and nothing imports the app back.
"""

from __future__ import annotations

from typing import Any, Protocol

from workers.admin.audit import AuditLog
from workers.admin.certificate_metrics import CertificateMetrics
from workers.admin.decisions import AnswerIndex, Remembered
from workers.admin.quarantine import DecisionKind, Selection
from workers.admin.tokens import Principal
from workers.admin.writer import ControlWriter
from workers.config.reader import ControlReader

__all__ = [
    "ActualsView",
    "AdminContext",
    "DecisionView",
    "QuarantineView",
    "no_actuals",
    "no_decisions",
    "no_quarantine",
]


class QuarantineView(Protocol):
    """What the quarantine service offers the API."""

    def get(self, request_id: str) -> dict[str, Any] | None: ...

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

    def get(self, request_id: str) -> dict[str, Any] | None:
        return None

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


class DecisionView(Protocol):
    """The answers kept per request (`workers.admin.decisions.DecisionLog`)."""

    @property
    def index(self) -> AnswerIndex:
        """The answers kept, and the bounds they are kept within."""
        ...

    @property
    def caught_up(self) -> bool:
        """True once every answer present at the start has been read."""
        ...

    def get(self, request_id: str) -> Remembered | None: ...


class _NoDecisions:
    """Until a decision log is attached: no answer is kept."""

    def __init__(self) -> None:
        self.index = AnswerIndex()
        self.caught_up = True

    def get(self, request_id: str) -> Remembered | None:
        return None


def no_decisions() -> DecisionView:
    """A view that keeps no answers (an API without a decision log)."""
    return _NoDecisions()


class ActualsView(Protocol):
    """The Service Requests counted per User, month, SRV and outcome
    (`workers.admin.actuals_service.ActualsService`)."""

    @property
    def ready(self) -> bool:
        """True once the counts are restored and caught up with the answers."""
        ...

    def month(self, month: str) -> dict[str, dict[str, dict[str, int]]]:
        """User ID -> SRV -> outcome -> requests, for `month` (YYYY-MM)."""
        ...


class _NoActuals:
    """Until an actuals service is attached: nothing is counted, no report is ready."""

    @property
    def ready(self) -> bool:
        return False

    def month(self, month: str) -> dict[str, dict[str, dict[str, int]]]:
        return {}


def no_actuals() -> ActualsView:
    """A view that counts nothing (an API without an actuals service)."""
    return _NoActuals()


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

    @property
    def decisions(self) -> DecisionView:
        """The answers kept per request, from `dcc.user.responses`."""
        ...

    @property
    def certificate_metrics(self) -> CertificateMetrics:
        """Counters of the certificate registry (key-separation refusals)."""
        ...

    @property
    def actuals(self) -> ActualsView:
        """The Service Requests counted per User and month (or a view that counts none)."""
        ...
