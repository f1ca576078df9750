"""Kafka headers a sender may not set: the gateway's own `dccgate-` prefix.

Headers the gateway writes (`dccgate-dlq-*` on dead letters, `dccgate-storm-copy`,
`dccgate-load`, and any that say a request was verified) must mean that the gateway wrote
them. A record that arrives with such a header had it forged by its producer, so every output
that carries a record's headers on drops those first. Other headers pass on untouched, as
docs/contract.md promises; the tools' own headers use the `dcctool-` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["OWN_PREFIX", "SRV_HEADER", "own_headers_dropped", "srv_headers"]

OWN_PREFIX = "dccgate-"
_EMPTY: tuple[tuple[str, bytes], ...] = ()
SRV_HEADER = "dccgate-srv"
"""On each router answer on `dcc.user.responses`: the request's SRV as sent when it is
written like one (at most MAX_SRV_BYTES), which the actuals count per SRV
(docs/forecasts.md)."""
MAX_SRV_BYTES = 16
# An SRV as the catalogue writes them: 4.1.1, 11.3, 6.18.1 (ASCII digits only, not \d).
_SRV_FORM = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){0,3}")


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


def srv_headers(srv: str) -> tuple[tuple[str, bytes], ...]:
    """The `dccgate-srv` header of an answer to a request for `srv`; none when `srv` is not
    written like an SRV (digits and dots, at most MAX_SRV_BYTES): a sender's junk is never
    echoed into a header, and the actuals count such a request as `other`."""
    if len(srv) > MAX_SRV_BYTES or _SRV_FORM.fullmatch(srv) is None:
        return _EMPTY
    return ((SRV_HEADER, srv.encode("ascii")),)
