"""Errors of the response deliverer (STYLE rule 8: one root, `*Error` names)."""

from __future__ import annotations

__all__ = ["DeliverError", "DeliverySettingsError"]


class DeliverError(Exception):
    """Root of the deliverer's errors."""

    retriable = False


class DeliverySettingsError(DeliverError, ValueError):
    """The deliverer cannot start with these settings (e.g. an unreadable CA file); the
    message names the setting and the fix."""
