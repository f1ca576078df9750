"""Errors raised by `adt/`; every message names what was wrong and what to do next."""

from __future__ import annotations

__all__ = [
    "AdtConfigError",
    "AdtError",
    "AlreadyDecidedError",
    "DuplicateEntryError",
    "QuarantineError",
    "SnapshotError",
    "UnknownEntryError",
]


class AdtError(Exception):
    """Root of every error raised by `adt/`."""

    retriable: bool = False


class AdtConfigError(AdtError, ValueError):
    """ADT values (thresholds, value rules, exception windows) are not valid.

    The message names the key (e.g. `thresholds[2].window_s`), what is wrong and what is
    allowed. Nothing was changed: the previous values stay in force.
    """


class SnapshotError(AdtError, ValueError):
    """A counter snapshot cannot be restored (corrupt, or taken with other bucket settings)."""


class QuarantineError(AdtError):
    """A quarantine command was refused; the quarantine state is unchanged."""


class UnknownEntryError(QuarantineError, KeyError):
    """No quarantined request has this id (never quarantined, or forgotten after retention)."""

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message as if it were a key.
        return str(self.args[0]) if self.args else ""


class DuplicateEntryError(QuarantineError):
    """A request with this id is already in quarantine."""


class AlreadyDecidedError(QuarantineError):
    """The quarantined request was already released, deleted or expired.

    state: the current state (`released`, `deleted` or `expired`). A decision is final.
    """

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state
