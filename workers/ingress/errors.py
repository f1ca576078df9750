"""Errors of the ingress room."""

from __future__ import annotations

__all__ = ["IngressError", "IngressTlsError"]


class IngressError(Exception):
    """Root of the ingress's errors."""


class IngressTlsError(IngressError):
    """The TLS files given cannot be used; the message names the file and the fix."""
