"""The errors `dccgate admin` reports: API refusals, no answer, usage."""

from __future__ import annotations

__all__ = ["AdminCliError", "ApiAnswerError", "TransportError"]


class AdminCliError(Exception):
    """A failure to report on stderr, with the exit code to return (1, or 2 for usage)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiAnswerError(AdminCliError):
    """The API answered with an error status; `message` is its `{"error": ...}` text."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.api_message = message


class TransportError(Exception):
    """No HTTP answer at all: the reason (connection refused, timed out, not HTTP...)."""

    def __init__(self, reason: str, *, timed_out: bool = False, not_http: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.not_http = not_http
