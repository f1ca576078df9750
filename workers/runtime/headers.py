"""Kafka headers a sender may not set: the gateway's own `dccgate-` prefix.

Headers the gateway writes (`dccgate-dlq-*` on dead letters, `dccgate-storm-copy`,
`dccgate-load`, and any that say a request was verified) must mean that the gateway wrote
them. A record that arrives with such a header had it forged by its producer, so every output
that carries a record's headers on drops those first. Other headers pass on untouched, as
docs/contract.md promises; the tools' own headers use the `dcctool-` prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["OWN_PREFIX", "own_headers_dropped"]

OWN_PREFIX = "dccgate-"
_EMPTY: tuple[tuple[str, bytes], ...] = ()


def own_headers_dropped(
    headers: Sequence[tuple[str, bytes]] | None,
) -> Sequence[tuple[str, bytes]]:
    """`headers` without those named with the gateway's own prefix (case-insensitive).

    The common case, no headers at all, costs one truth test and allocates nothing.
    """
    if not headers:
        return _EMPTY
    for name, _ in headers:
        if name[:8].lower() == OWN_PREFIX:
            return tuple(h for h in headers if h[0][:8].lower() != OWN_PREFIX)
    return headers
